"""launch.py: argument handling, scenes from folders, dataset discovery, the demo-build plumbing."""
from __future__ import annotations

import numpy as np
import pytest

from app.cli import discover_scenes, main, parse_args, setup_state
from app.state import AppState, find_scene_folder
from sas_engine.errors import SASInputError
from sas_engine.io.ply import write_ply
from sas_engine.labels import SCANNET20_NYU40


def write_scan(root, scene):
    """A ScanNet raw scan folder (mesh + labels) of a scene, without frames."""
    d = root / "scans" / scene.scene_id
    p = scene.points
    vert = {"x": p[:, 0], "y": p[:, 1], "z": p[:, 2], "red": scene.colors[:, 0], "green": scene.colors[:, 1],
            "blue": scene.colors[:, 2]}
    write_ply(d / f"{scene.scene_id}_vh_clean_2.ply", vert)
    nyu = np.where(scene.labels == 255, 0, np.array(SCANNET20_NYU40)[np.minimum(scene.labels, 19)])
    write_ply(d / f"{scene.scene_id}_vh_clean_2.labels.ply", {**vert, "label": nyu.astype(np.uint16)})
    return d


def test_parser_defaults_are_safe():
    a = parse_args([])
    assert a.host == "127.0.0.1" and a.port == 7860 and a.scenes == [] and not a.no_build
    a = parse_args(["x/y", "--dataset", "scannet", "--device", "cuda"])
    assert [str(s) for s in a.scenes] == ["x/y"] and a.dataset == "scannet" and a.device == "cuda"


def test_scene_folders_from_the_command_line(tmp_path, fixture_state, scene_factory):
    scene = scene_factory()
    folder = write_scan(tmp_path / "data", scene)
    args = parse_args([str(folder), "--store", str(fixture_state.store.root),
                                      "--data-root", str(tmp_path / "data")])
    state, build = setup_state(args)
    assert callable(build) and state.scene_ids() == [scene.scene_id]  # processed in the background
    assert setup_state(parse_args([*map(str, args.scenes), "--no-build", "--store",
                                                  str(fixture_state.store.root)]))[1] is None
    loaded = state.scene(scene.scene_id)
    np.testing.assert_allclose(loaded.points, scene.points, atol=1e-6)
    np.testing.assert_array_equal(loaded.labels, scene.labels)
    # the store's layers for that scene id show up, the same as for the demo
    lay = state.layers(scene.scene_id)
    assert [l.artefact for l in lay.teachers] == ["fused.lseg_compact", "fused.seem_compact"]


def test_dataset_discovery_and_no_build(tmp_path, scene_factory):
    root = tmp_path / "data"
    a = write_scan(root, scene_factory(scene_id="scene0001_00"))
    write_scan(root, scene_factory(scene_id="scene0002_00"))
    (root / "scannet_3d" / "val").mkdir(parents=True)
    (root / "scannet_3d" / "val" / "scene0003_00_vh_clean_2.pth").write_bytes(b"")
    found = discover_scenes(root, "scannet")
    assert [s for s, _ in found] == ["scene0001_00", "scene0002_00", "scene0003_00"]
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(SASInputError, match="no scenes found"):
        discover_scenes(tmp_path / "empty_root", None)
    args = parse_args(["--dataset", "scannet", "--data-root", str(root), "--store", str(tmp_path / "s")])
    state, build = setup_state(args)
    assert callable(build) and state.scene_ids() == ["scene0001_00", "scene0002_00", "scene0003_00"]
    assert find_scene_folder([root], "scene0001_00") == a
    # --no-build: the data root's scenes, each with what the store has (tests/app/test_user_scenes.py)
    args = parse_args(["--no-build", "--data-root", str(root), "--store", str(tmp_path / "s")])
    state, build = setup_state(args)
    assert build is None and state.scene_ids() == ["scene0001_00", "scene0002_00", "scene0003_00"]
    # --no-build in demo mode: only the demo scenes the store holds
    args = parse_args(["--no-build", "--store", str(tmp_path / "empty")])
    with pytest.raises(SASInputError, match="no demo scenes"):
        setup_state(args)


def test_main_reports_bad_scene_paths(tmp_path, capsys):
    assert main([str(tmp_path / "missing"), "--store", str(tmp_path / "s")]) == 2
    assert "not found" in capsys.readouterr().err


def test_build_progress_is_tracked_and_scenes_registered(tmp_path, scene_factory, encoder):
    root = tmp_path / "data"
    write_scan(root, scene_factory(scene_id="scene0005_00"))
    st = AppState(tmp_path / "store", [root], text_encoder=encoder)
    seen = []

    def fake_build(progress):  # the engine's one Progress shape: progress(fraction, message)
        progress(0.25, "teachers")
        progress(0.5, "")  # an empty message keeps the last one
        progress(1.5, "capability")  # clamped
        progress(0.9, "student")
        seen.append((st.build.running, st.build.fraction, st.build.message))
        return ["scene0005_00"]

    ids = st.run_build(fake_build, lambda sid: find_scene_folder([root], sid),
                       on_progress=lambda f, m: seen.append((f, m)))
    assert ids == ["scene0005_00"] and st.scene_ids() == ["scene0005_00"]
    assert seen[:4] == [(0.25, "teachers"), (0.5, "teachers"), (1.0, "capability"), (0.9, "student")]
    assert (True, 0.9, "student") in seen
    assert st.build.done and not st.build.running and "ready" in st.build.markdown()

    def failing(progress):
        progress(0.5, "fusion")
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        st.run_build(failing, lambda sid: None)
    assert "out of memory" in st.build.markdown() and not st.build.running
    with pytest.raises(SASInputError, match="not found"):
        st.run_build(lambda progress: ["ghost0000_00"], lambda sid: None)
    with pytest.raises(TypeError):  # one shape only: progress(message) is a bug in the caller, not a guess
        st.run_build(lambda progress: progress("fusion"), lambda sid: None)
