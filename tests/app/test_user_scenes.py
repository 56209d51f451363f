"""The user's own scenes in the app: discovery under --data-root, the background build, framing on open."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.build import build_scenes, next_scene
from app.cli import discover_scenes, parse_args, setup_state
from app.state import AppState
from app.viewer import frame_camera, scene_box
from sas_engine.errors import SASInputError
from sas_engine.io.ply import write_ply


@pytest.fixture
def one_torch_thread():
    """The student's tiny sparse convolutions stall in OpenMP hand-offs on a busy 2-core machine (tests/conftest.py)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def room_points(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small z-up room without a ceiling (floor, two walls, a table top): a scan without frames."""
    g = np.random.default_rng(seed)
    k = n // 4
    floor = np.c_[g.uniform(0, 3, k), g.uniform(0, 2.5, k), g.normal(0, 0.003, k)]
    wall1 = np.c_[g.uniform(0, 3, k), g.normal(2.5, 0.003, k), g.uniform(0, 2.2, k)]
    wall2 = np.c_[g.normal(0, 0.003, k), g.uniform(0, 2.5, k), g.uniform(0, 2.2, k)]
    top = np.c_[g.uniform(1.2, 2.0, n - 3 * k), g.uniform(0.8, 1.4, n - 3 * k), np.full(n - 3 * k, 0.75)]
    pts = np.concatenate([floor, wall1, wall2, top]).astype(np.float32)
    col = np.repeat(np.array([[150] * 3, [220] * 3, [200] * 3, [90] * 3], np.uint8), [k, k, k, n - 3 * k], axis=0)
    return pts, col


def write_room_ply(path, n: int = 2000, seed: int = 0):
    pts, col = room_points(n, seed)
    return write_ply(path, {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2],
                            "red": col[:, 0], "green": col[:, 1], "blue": col[:, 2]})


def make_root(root):
    """One capture of each layout one level down, a ScanNet scan, a bare PLY, and PLYs that are not scenes."""
    plain = root / "kitchen"  # plain folder: color/ + poses/ + intrinsics.txt
    (plain / "color").mkdir(parents=True)
    (plain / "poses").mkdir()
    (plain / "intrinsics.txt").write_text("525 0 319.5\n0 525 239.5\n0 0 1\n")
    (plain / "mesh.ply").write_bytes(b"")  # the capture's own geometry: part of kitchen, not a scene
    ns = root / "office_ns"  # nerfstudio transforms.json
    ns.mkdir()
    (ns / "transforms.json").write_text(json.dumps({"fl_x": 525, "fl_y": 525, "cx": 320, "cy": 240, "w": 640,
                                                    "h": 480, "frames": []}))
    o3d = root / "livingroom_o3d"  # Open3D reconstruction-system folder
    for d in ("image", "depth", "scene"):
        (o3d / d).mkdir(parents=True)
    (o3d / "scene" / "trajectory.log").write_text("0 0 1\n1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    scan = root / "scans" / "scene0001_00"  # ScanNet scan folder with its sibling PLYs
    write_room_ply(scan / "scene0001_00_vh_clean_2.ply", 300)
    write_room_ply(scan / "scene0001_00_vh_clean_2.labels.ply", 300)
    write_room_ply(root / "lidar_scan.ply", 300)  # a bare scan
    for name in ("sas_reconstruction.ply", "mesh.ply", "points.ply", "scene0009_00_vh_clean.ply",
                 "scene0009_00_vh_clean_2.labels.ply"):
        write_room_ply(root / name, 50)
    (root / "notes").mkdir()  # a folder that is no scene
    (root / "notes" / "readme.txt").write_text("not a scene")
    return root


def listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_discovery_finds_every_capture_layout_and_skips_capture_plys(tmp_path):
    root = make_root(tmp_path / "data")
    before = listing(root)
    found = dict(discover_scenes(root, None))
    assert found == {"kitchen": root / "kitchen", "office_ns": root / "office_ns",
                     "livingroom_o3d": root / "livingroom_o3d", "scene0001_00": root / "scans" / "scene0001_00",
                     "lidar_scan": root / "lidar_scan.ply"}
    # the data root itself being a capture: just that capture (its own mesh.ply is not a scene)
    assert discover_scenes(root / "kitchen", None) == [("kitchen", root / "kitchen")]
    assert listing(root) == before  # discovery writes nothing
    with pytest.raises(SASInputError, match="no scenes found"):
        discover_scenes(root / "notes", None)


def test_data_root_without_dataset_opens_what_it_finds(tmp_path):
    root = make_root(tmp_path / "data")
    store = tmp_path / "store"
    state, build = setup_state(parse_args(["--data-root", str(root), "--store", str(store)]))
    assert state.scene_ids() == ["kitchen", "lidar_scan", "livingroom_o3d", "office_ns", "scene0001_00"]
    assert callable(build)  # processed in the background once the page is up
    state, build = setup_state(parse_args(["--data-root", str(root), "--store", str(store),
                                                          "--no-build"]))
    assert build is None and len(state.scene_ids()) == 5  # shown with whatever the store has
    missing = tmp_path / "typo"
    with pytest.raises(SASInputError, match="data root not found"):
        setup_state(parse_args(["--data-root", str(missing), "--store", str(store)]))
    assert not missing.exists()  # a nonexistent data root is never created


def test_background_build_gives_a_frameless_scan_its_student_layer(tmp_path, encoder, one_torch_thread):
    import gradio as gr

    from app.panel import Panel

    root = tmp_path / "data"
    write_room_ply(root / "lidar_scan.ply")
    state = AppState(tmp_path / "store", [root], text_encoder=encoder)
    for sid, p in discover_scenes(root, None):
        state.add_scene_path(p, scene_id=sid, check_roots=False)
    s = state.new_session("tab1")
    s.select_scene("lidar_scan")
    assert all("student" not in k for _, k in s.modes()) and s.query_layer is None  # RGB only at first
    panel = Panel(state)
    assert panel.poll_layers("tab1") == (gr.skip(),) * 5  # nothing new yet
    seen = []
    done = build_scenes(state, ["lidar_scan"], on_progress=lambda f, m: seen.append((f, m)))
    assert done == ["lidar_scan"]
    lay = state.layers("lidar_scan")
    assert [l.artefact for l in lay.query_layers()] == ["pred3d.student"]
    assert state.store.header("lidar_scan", "superpoints") is not None
    assert state.layer_serial("lidar_scan") == 1
    assert seen[-1][0] == 1.0 and "1 scene(s) processed" in seen[-1][1]
    assert any("3D student" in m for _, m in seen)
    b = state.build
    assert b.done and not b.running and b.error is None and "processed" in b.markdown()
    # the tab's next poll offers the new layer and makes it the one queried
    status, mode_a, mode_b, qlayer, _ = panel.poll_layers("tab1")
    assert "2,000 points, 1 feature layer(s)" in status
    assert any("student" in str(k) for _, k in mode_a["choices"])
    assert qlayer["value"] == "pred3d.student" and s.query_layer == "pred3d.student"
    # a second run finds everything cached
    assert build_scenes(state, ["lidar_scan"]) == ["lidar_scan"]
    assert state.layer_serial("lidar_scan") == 2


def test_background_build_reports_a_failing_scene_and_goes_on(tmp_path, encoder, one_torch_thread):
    root = tmp_path / "data"
    write_room_ply(root / "good.ply")
    (root / "bad.ply").write_text("not a ply at all")
    state = AppState(tmp_path / "store", [root], text_encoder=encoder)
    for name in ("bad", "good"):
        state.add_scene_path(root / f"{name}.ply", scene_id=name, check_roots=False)
    assert build_scenes(state, ["bad", "good"]) == ["good"]
    assert state.build.error is None and "failed: bad" in state.build.markdown()
    # the scene a tab shows goes first
    assert next_scene(state, ["bad", "good"]) == "bad"
    state.new_session("tab1").select_scene("good")
    assert next_scene(state, ["bad", "good"]) == "good"


@pytest.mark.parametrize("lo,hi", [((0, 0, 0), (3.94, 1.65, 1.91)), ((-1, 2, -0.2), (0.5, 8, 2.5)),
                                   ((10, 10, 0), (10.2, 10.1, 0.3))])
@pytest.mark.parametrize("aspect", [0.6, 1.5])
def test_frame_camera_looks_at_the_box_from_outside_with_z_up(lo, hi, aspect):
    fov = np.deg2rad(60)
    pos, target, up = frame_camera(lo, hi, fov=fov, aspect=aspect)
    lo, hi = np.array(lo, float), np.array(hi, float)
    np.testing.assert_allclose(target, (lo + hi) / 2)
    np.testing.assert_array_equal(up, [0, 0, 1])
    assert not np.all((pos >= lo) & (pos <= hi))  # outside the box
    assert pos[2] > target[2]  # elevated
    fwd = (target - pos) / np.linalg.norm(target - pos)
    assert 0.5 < -fwd[2] < 0.8  # looking down about 40 degrees
    # every corner is in the view frustum, and the box fills it (a corner near an edge)
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, fwd)
    c = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]) - pos
    d = c @ fwd
    assert (d > 0).all()
    u = np.abs(c @ right) / (d * np.tan(fov / 2) * aspect)
    v = np.abs(c @ cam_up) / (d * np.tan(fov / 2))
    assert max(u.max(), v.max()) <= 1.0 and max(u.max(), v.max()) > 0.85


def test_scene_box_ignores_stray_points():
    pts, _ = room_points(2000)
    stray = np.concatenate([pts, [[40.0, 40.0, 40.0], [-30.0, 5.0, 1.0]]]).astype(np.float32)
    lo, hi = scene_box(stray)
    assert (hi < 3.2).all() and (lo > -0.2).all()
