"""Rendering and writers: the written scenes load through the real loaders, and projecting the mesh with the written
poses and intrinsics agrees with the rendered depth and ground-truth label images."""
import numpy as np
import pytest

from sas_engine.io import load_scene
from sas_engine.synth import SynthConfig, generate_scene, render_frames, write_openscene, write_scannet
from sas_engine.synth.render import camera_path

CFG = SynthConfig(target_vertices=15_000, num_frames=6)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    room = generate_scene(7, "bedroom", CFG)
    frames = render_frames(room)
    folder = write_scannet(room, frames, root)
    pth = write_openscene(room, frames, root / "os", "val")
    return room, frames, folder, pth


def _project(points, frame):
    w2c = np.linalg.inv(frame.pose)
    pc = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = pc[:, 2]
    K = frame.intrinsics
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.round(pc[:, 0] * K[0, 0] / z + K[0, 2]).astype(np.int64)
        v = np.round(pc[:, 1] * K[1, 1] / z + K[1, 2]).astype(np.int64)
    h, w = frame.depth.shape
    inside = (z > 0.1) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    return u, v, z, inside


def test_projection_matches_depth_and_gt_labels(written):
    room, frames, folder, _ = written
    scene = load_scene(folder)
    assert scene.dataset == "synthetic" and len(scene.frames) == CFG.num_frames
    agree = visible_total = 0
    for frame in scene.frames:
        assert frame.gt_labels is not None and frame.gt_instances is not None
        R = frame.pose[:3, :3]
        assert np.allclose(R.T @ R, np.eye(3), atol=1e-5) and np.linalg.det(R) == pytest.approx(1.0, abs=1e-5)
        u, v, z, inside = _project(scene.points, frame)
        d = np.zeros_like(z)
        d[inside] = frame.depth[v[inside], u[inside]]
        err = np.abs(d - z)
        # visible: the rendered depth at the vertex's pixel is the vertex's own depth (5 mm + 0.5 % for the
        # half-pixel rounding on slanted surfaces; tight enough that a curtain 8 cm before a window occludes it)
        visible = inside & (d > 0) & (err < 0.005 + 0.005 * z)
        # a large share of the projected vertices is visible, and for them depth agrees to millimetres
        assert visible.sum() > 0.25 * inside.sum()
        assert np.median(err[visible]) < 0.004
        lab = frame.gt_labels[v[visible], u[visible]]
        agree += int((lab == scene.labels[visible]).sum())
        visible_total += int(visible.sum())
        inst = frame.gt_instances[v[visible], u[visible]]
        assert (inst == scene.instances[visible]).mean() > 0.9
    assert agree / visible_total > 0.95


def test_written_scannet_matches_room(written):
    room, frames, folder, _ = written
    scene = load_scene(folder)
    assert scene.scene_id == room.scene_id
    assert np.array_equal(scene.points, room.vertices) and np.array_equal(scene.colors, room.colors)
    assert np.array_equal(scene.faces, room.faces)
    assert np.array_equal(scene.labels, room.labels)
    assert np.array_equal(scene.instances, room.vertex_instance)
    assert np.array_equal(scene.superpoints, room.segments)
    f = scene.frames[2]
    assert np.abs(f.depth - frames[2].depth).max() <= 0.0006  # mm quantisation
    assert np.array_equal(f.gt_labels, frames[2].labels)
    assert np.allclose(f.intrinsics, frames[2].intrinsics, atol=1e-5)
    assert np.abs(f.color.astype(int) - frames[2].color).mean() < 4  # JPEG
    assert {"bed", "wall", "floor", "door", "window"} <= set(
        __import__("json").loads((folder / "sas_synthetic.json").read_text())["classes"])


def test_openscene_layout_round_trip(written):
    room, frames, _, pth = written
    scene = load_scene(pth)
    assert scene.scene_id == room.scene_id and scene.num_points == room.num_vertices
    assert np.array_equal(scene.labels, room.labels)
    assert np.abs(scene.colors.astype(int) - room.colors).max() <= 1
    assert len(scene.frames) == len(frames)
    f = scene.frames[0]
    assert np.allclose(f.intrinsics, frames[0].intrinsics, atol=1e-5)
    assert np.allclose(f.pose, frames[0].pose, atol=1e-6)


def test_frames_look_like_captures(written):
    room, frames, _, _ = written
    for f in frames:
        assert f.color.shape == (240, 320, 3) and f.color.dtype == np.uint8
        assert 40 < f.color.mean() < 225 and f.color.std() > 15
        assert (f.depth > 0).mean() > 0.99  # closed room: every ray hits something
        assert 0.1 < np.median(f.depth[f.depth > 0]) < 8.0
        assert len(np.unique(f.labels)) >= 3
        assert 1.3 - 0.2 <= f.pose[2, 3] <= 1.7 + 0.2
    # same seed -> identical frames
    again = render_frames(room, num_frames=2)
    assert np.array_equal(again[0].color, render_frames(room, num_frames=2)[0].color)


def test_trajectory_covers_most_of_the_room():
    cfg = SynthConfig(target_vertices=8000, num_frames=24, image_size=(160, 120))
    room = generate_scene(8, "living_room", cfg)
    frames = render_frames(room, shadows=False)
    seen = np.zeros(room.num_vertices, bool)
    for f in frames:
        u, v, z, inside = _project(room.vertices, f)
        d = np.zeros_like(z)
        d[inside] = f.depth[v[inside], u[inside]]
        seen |= inside & (np.abs(d - z) < 0.02 + 0.03 * z)
    keep = room.vertex_nyu40 != 22  # ceiling
    assert seen[keep].mean() > 0.6
    walls = room.vertex_nyu40 == 1
    assert seen[walls].mean() > 0.6
    assert len(camera_path(room, 5, np.random.default_rng(0))) == 5
