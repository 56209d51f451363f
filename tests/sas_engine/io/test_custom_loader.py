"""Custom RGB-D captures: nerfstudio transforms.json (OpenGL poses), the plain folder layout, TSDF reconstruction."""
import json

import numpy as np
import pytest
from PIL import Image

from sas_engine.errors import SASInputError
from sas_engine.io import load_scene, write_ply
from sas_engine.io.custom import GL_TO_CV

W, H, F = 64, 48, 40.0  # capture image size and focal length


def _pose_down(x, y, height=1.5):
    T = np.eye(4)
    T[:3, :3] = [[1, 0, 0], [0, -1, 0], [0, 0, -1]]
    T[:3, 3] = (x, y, height)
    return T


def _write_frame(folder, name, depth_mm=1500, npy=False):
    img = np.zeros((H, W, 3), np.uint8)
    img[:, : W // 2] = (200, 30, 30)
    img[:, W // 2:] = (30, 30, 200)
    (folder / "color").mkdir(parents=True, exist_ok=True)
    (folder / "depth").mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(folder / "color" / f"{name}.png")
    if npy:
        np.save(folder / "depth" / f"{name}.npy", np.full((H, W), depth_mm / 1000.0, np.float32))
    else:
        Image.fromarray(np.full((H, W), depth_mm, np.uint16)).save(folder / "depth" / f"{name}.png")


def _transforms_capture(root, poses_cv, **extra):
    frames = []
    for i, T in enumerate(poses_cv):
        _write_frame(root, f"frame_{i:05d}")
        frames.append({"file_path": f"color/frame_{i:05d}.png", "depth_file_path": f"depth/frame_{i:05d}.png",
                       "transform_matrix": (T @ GL_TO_CV).tolist()})
    meta = {"fl_x": F, "fl_y": F, "cx": (W - 1) / 2, "cy": (H - 1) / 2, "w": W, "h": H,
            "depth_unit_scale_factor": 0.001, "frames": frames, **extra}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def test_transforms_opengl_to_opencv_and_tsdf(tmp_path):
    poses = [_pose_down(0.5, 0.4, 1.51), _pose_down(0.7, 0.5, 1.51), _pose_down(0.6, 0.6, 1.51)]
    cap = _transforms_capture(tmp_path / "myroom", poses)
    s = load_scene(cap, image_size=(W, H), up="none")  # the files' own frame (no gravity alignment)
    assert s.scene_id == "myroom" and len(s.frames) == 3
    f = s.frames[0]
    np.testing.assert_allclose(f.pose, poses[0], atol=1e-12)  # OpenGL -> OpenCV undone exactly
    np.testing.assert_allclose(f.intrinsics, [[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1]])
    np.testing.assert_allclose(f.depth, 1.5)
    # TSDF reconstruction of the floor plane z = 0 seen from above
    assert s.faces is not None and len(s.faces) > 100
    np.testing.assert_allclose(s.points[:, 2], 0.01, atol=2e-3)  # camera 1.51 m above, depth 1.5 m
    lo, hi = s.points.min(0), s.points.max(0)
    assert hi[0] - lo[0] > 1.0 and hi[1] - lo[1] > 0.8  # ~ footprint 64/40*1.5 = 2.4 m wide
    np.testing.assert_allclose(np.abs(s.normals[:, 2]).mean(), 1.0, atol=0.05)
    # colours: red on the image's left half = world x < camera x
    left = s.points[:, 0] < 0.3
    assert s.colors[left, 0].mean() > 150 and s.colors[left, 2].mean() < 80


def test_transforms_json_file_with_mesh_and_default_size(tmp_path):
    cap = _transforms_capture(tmp_path / "cap", [_pose_down(0.5, 0.5)], ply_file_path="pc.ply")
    write_ply(cap / "pc.ply", {"x": np.arange(4, dtype=np.float32), "y": np.zeros(4, np.float32),
                               "z": np.zeros(4, np.float32)})
    s = load_scene(cap / "transforms.json")
    assert s.num_points == 4 and s.faces is None
    f = s.frames[0]
    assert f.size == (320, 240)  # preset width, capture aspect 4:3
    np.testing.assert_allclose(f.intrinsics[0, 0], F * 5)


def test_plain_layout(tmp_path):
    cap = tmp_path / "plain"
    for i, x in enumerate((0.5, 0.6)):
        _write_frame(cap, str(i), npy=(i == 1))
        (cap / "poses").mkdir(exist_ok=True)
        np.savetxt(cap / "poses" / f"{i}.txt", _pose_down(x, 0.5, 1.49))
    np.savetxt(cap / "intrinsics.txt", [[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1]])
    s = load_scene(cap, image_size=(32, 24), up="none")  # the files' own frame (no gravity alignment)
    assert s.frames.frame_ids == ["0", "1"]
    np.testing.assert_allclose(s.frames[1].depth, 1.5)  # float .npy in metres
    np.testing.assert_allclose(s.frames[0].intrinsics[0], [F / 2, 0, 15.5])
    np.testing.assert_allclose(s.points[:, 2], -0.01, atol=2e-3)
    (cap / "depth_scale.txt").write_text("2000\n")
    s2 = load_scene(cap, image_size=(32, 24))
    np.testing.assert_allclose(s2.frames[0].depth, 0.75)


def test_bad_custom_inputs(tmp_path):
    cap = _transforms_capture(tmp_path / "c", [_pose_down(0.5, 0.5)])
    meta = json.loads((cap / "transforms.json").read_text())
    meta["frames"][0]["transform_matrix"] = [[1, 0], [0, 1]]
    (cap / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(SASInputError, match="transform_matrix is not 4x4"):
        load_scene(cap)
    (cap / "transforms.json").write_text('{"frames": [}')
    with pytest.raises(SASInputError, match="corrupt transforms.json"):
        load_scene(cap)
    (cap / "transforms.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(SASInputError, match="lists no frames"):
        load_scene(cap)
    plain = tmp_path / "p"
    _write_frame(plain, "0")
    (plain / "poses").mkdir()
    np.savetxt(plain / "poses" / "0.txt", np.eye(4))
    with pytest.raises(SASInputError, match="intrinsics file not found"):
        load_scene(plain)
    np.savetxt(plain / "intrinsics.txt", np.eye(2))
    with pytest.raises(SASInputError, match="neither a 3x3 nor a 4x4"):
        load_scene(plain)


def test_tsdf_with_depth_behind_nothing_is_empty(tmp_path):
    cap = tmp_path / "far"
    _write_frame(cap, "0", depth_mm=0)  # no valid depth at all
    (cap / "poses").mkdir()
    np.savetxt(cap / "poses" / "0.txt", _pose_down(0, 0))
    np.savetxt(cap / "intrinsics.txt", [[F, 0, 31.5], [0, F, 23.5], [0, 0, 1]])
    with pytest.raises(SASInputError, match="empty mesh"):
        load_scene(cap, image_size=(32, 24))
