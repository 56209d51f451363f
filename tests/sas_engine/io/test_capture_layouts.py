"""Custom captures as users have them: the same RGB-D frames in the plain, nerfstudio and Open3D reconstruction-system
layouts load to the same frames and geometry; depth units in both spellings; bad input names the file.

The Open3D files (trajectory .log, camera intrinsic JSON, integrated mesh) are written with open3d's own writers, so
the tests check that the loader reads what Open3D writes (column-major intrinsics, camera-to-world poses)."""
import json

import numpy as np
import pytest
from PIL import Image

from sas_engine.errors import SASInputError
from sas_engine.io import detect_layout, load_scene, write_ply
from sas_engine.io.custom import GL_TO_CV, capture_specs
from sas_engine.io.open3d_capture import read_open3d_intrinsic, read_trajectory_log

W, H = 64, 48
K = np.array([[40.0, 0, 30.5], [0, 42.0, 22.0], [0, 0, 1]])  # fx != fy, cx/cy off-centre: catches a transposed K
HEIGHT = 1.5  # camera height above the floor z = 0; depth 1.5 m everywhere


def _pose(x, y):
    T = np.eye(4)
    T[:3, :3] = [[1, 0, 0], [0, -1, 0], [0, 0, -1]]  # OpenCV camera looking straight down
    T[:3, 3] = (x, y, HEIGHT)
    return T


POSES = [_pose(0.5, 0.4), _pose(0.7, 0.5), _pose(0.6, 0.6)]


def _rgb():
    img = np.zeros((H, W, 3), np.uint8)
    img[:, : W // 2] = (200, 30, 30)
    img[:, W // 2:] = (30, 30, 200)
    return img


def _depth(units_per_metre=1000.0, size=(W, H)):
    return np.full((size[1], size[0]), round(HEIGHT * units_per_metre), np.uint16)


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def write_plain(root, n=3, depth_size=(W, H)):
    for i in range(n):
        _save(root / "color" / f"{i}.png", _rgb())
        _save(root / "depth" / f"{i}.png", _depth(size=depth_size))
        (root / "poses").mkdir(parents=True, exist_ok=True)
        np.savetxt(root / "poses" / f"{i}.txt", POSES[i])
    np.savetxt(root / "intrinsics.txt", K)
    return root


def write_transforms(root, n=3, **extra):
    frames = []
    for i in range(n):
        _save(root / "images" / f"frame_{i:05d}.png", _rgb())
        _save(root / "depths" / f"frame_{i:05d}.png", _depth())
        frames.append({"file_path": f"images/frame_{i:05d}.png", "depth_file_path": f"depths/frame_{i:05d}.png",
                       "transform_matrix": (POSES[i] @ GL_TO_CV).tolist()})
    meta = {"fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2], "w": W, "h": H,
            "depth_unit_scale_factor": 0.001, "frames": frames, **extra}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def write_open3d(root, n=3, color_dir="image", units_per_metre=1000.0, intrinsic=True):
    """An Open3D reconstruction-system dataset folder, with the files its writers produce."""
    import open3d as o3d

    for i in range(n):
        _save(root / color_dir / f"{i:05d}.png", _rgb())
        _save(root / "depth" / f"{i:05d}.png", _depth(units_per_metre))
    cam = o3d.camera.PinholeCameraIntrinsic(W, H, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    if intrinsic:
        o3d.io.write_pinhole_camera_intrinsic(str(root / "camera_intrinsic.json"), cam)
    traj = o3d.camera.PinholeCameraTrajectory()
    params = []
    for T in POSES[:n]:
        p = o3d.camera.PinholeCameraParameters()
        p.intrinsic = cam
        p.extrinsic = np.linalg.inv(T)  # Open3D stores world-to-camera; the .log holds its inverse
        params.append(p)
    traj.parameters = params
    (root / "scene").mkdir(parents=True, exist_ok=True)
    assert o3d.io.write_pinhole_camera_trajectory(str(root / "scene" / "trajectory.log"), traj)
    return root


def _log_text(poses, rows=4):
    out = []
    for i, T in enumerate(poses):
        out.append(f"{i} {i} {i + 1}")
        out += [" ".join(f"{v:.8f}" for v in r) for r in T[:rows]]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------------------------------
# Open3D reconstruction-system layout


def test_open3d_layout_reads_what_open3d_writes(tmp_path):
    cap = write_open3d(tmp_path / "living")
    assert detect_layout(cap) == "open3d"
    specs, mesh, folder = capture_specs(cap, 1)
    assert folder == cap and mesh is None
    assert [s.frame_id for s in specs] == ["00000", "00001", "00002"]
    for s, T in zip(specs, POSES):
        np.testing.assert_allclose(s.pose, T, atol=1e-7)  # camera-to-world, as written (8 decimals)
        np.testing.assert_allclose(s.intrinsics, K)  # column-major JSON read back exactly
        assert s.intrinsics_size == (W, H) and s.depth_scale == 1000.0
        assert s.color.parent.name == "image" and s.depth.parent.name == "depth"
    # the same poses as open3d's own reader
    import open3d as o3d

    traj = o3d.io.read_pinhole_camera_trajectory(str(cap / "scene" / "trajectory.log"))
    for s, p in zip(specs, traj.parameters):
        np.testing.assert_allclose(s.pose, np.linalg.inv(p.extrinsic), atol=1e-7)
    K2, size = read_open3d_intrinsic(cap / "camera_intrinsic.json")
    np.testing.assert_allclose(K2, o3d.io.read_pinhole_camera_intrinsic(str(cap / "camera_intrinsic.json"))
                               .intrinsic_matrix)
    assert size == (W, H)
    # every other frame
    assert [s.frame_id for s in capture_specs(cap, 2)[0]] == ["00000", "00002"]


def test_open3d_config_json_and_its_depth_scale(tmp_path):
    cap = write_open3d(tmp_path / "data" / "room", color_dir="color", units_per_metre=5000.0, intrinsic=False)
    import open3d as o3d

    o3d.io.write_pinhole_camera_intrinsic(str(tmp_path / "cam.json"), o3d.camera.PinholeCameraIntrinsic(
        W, H, K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    cfg = tmp_path / "room.json"
    cfg.write_text(json.dumps({"name": "test", "path_dataset": "data/room", "path_intrinsic": "cam.json",
                               "depth_scale": 5000.0, "max_depth": 3.0}))
    assert detect_layout(cfg) == "open3d"
    specs, _, folder = capture_specs(cfg, 1)
    assert folder == cap and specs[0].depth_scale == 5000.0
    np.testing.assert_allclose(specs[0].intrinsics, K)
    # a config inside the dataset folder is found too; the metres-per-unit spelling is accepted
    (cap / "config.json").write_text(json.dumps({"path_dataset": ".", "depth_unit_scale_factor": 0.0002,
                                                 "path_intrinsic": "../../cam.json"}))
    assert capture_specs(cap, 1)[0][0].depth_scale == pytest.approx(5000.0)
    # metres per unit written under depth_scale: caught by the depth sanity check, which names the fix
    (cap / "config.json").write_text(json.dumps({"path_dataset": ".", "path_intrinsic": "../../cam.json",
                                                 "depth_scale": 0.0002}))
    with pytest.raises(SASInputError, match=r"config.json says depth_scale 0.0002 units per metre; did you mean "
                                            r"5000\? \(depth_unit_scale_factor is the metres-per-unit spelling"):
        capture_specs(cap, 1)


def test_open3d_default_intrinsics_only_for_640x480(tmp_path):
    cap = tmp_path / "prime"
    for i in range(2):
        _save(cap / "color" / f"{i}.jpg", np.zeros((480, 640, 3), np.uint8))
        _save(cap / "depth" / f"{i}.png", np.full((480, 640), 2000, np.uint16))
    (cap / "scene").mkdir()
    (cap / "scene" / "trajectory.log").write_text(_log_text(POSES[:2]))
    specs, _, _ = capture_specs(cap, 1)
    np.testing.assert_allclose(specs[0].intrinsics, [[525, 0, 319.5], [0, 525, 239.5], [0, 0, 1]])
    small = write_open3d(tmp_path / "small", intrinsic=False)
    with pytest.raises(SASInputError, match="no camera intrinsic JSON.*camera_intrinsic.json"):
        capture_specs(small, 1)


def test_open3d_trajectory_found_beside_or_below_the_data(tmp_path):
    cap = write_open3d(tmp_path / "c")
    (cap / "scene" / "trajectory.log").rename(cap / "test_scene.log")
    (cap / "scene").rmdir()
    assert detect_layout(cap) == "open3d"
    assert len(capture_specs(cap, 1)[0]) == 3
    (cap / "test_scene").mkdir()
    (cap / "test_scene.log").rename(cap / "test_scene" / "trajectory.log")  # Open3D's test data keeps it here
    assert len(capture_specs(cap, 1)[0]) == 3
    (cap / "other").mkdir()
    (cap / "other" / "trajectory.log").write_text(_log_text(POSES))
    with pytest.raises(SASInputError, match="several trajectory files"):
        capture_specs(cap, 1)


def test_open3d_integrated_mesh_is_the_geometry(tmp_path):
    import open3d as o3d

    cap = write_open3d(tmp_path / "meshed")
    box = o3d.geometry.TriangleMesh.create_box(2.0, 1.0, 0.5)
    box.compute_vertex_normals()
    box.paint_uniform_color((0.5, 0.25, 0.125))
    o3d.io.write_triangle_mesh(str(cap / "scene" / "integrated.ply"), box)  # binary, double coordinates
    assert capture_specs(cap, 1)[1] == cap / "scene" / "integrated.ply"
    s = load_scene(cap, image_size=(W, H))
    assert s.scene_id == "meshed" and s.num_points == 8 and len(s.faces) == 12 and len(s.frames) == 3
    np.testing.assert_allclose(s.points.max(0), (2.0, 1.0, 0.5))
    np.testing.assert_allclose(s.frames[1].pose, POSES[1], atol=1e-7)
    np.testing.assert_allclose(s.frames[0].depth, HEIGHT)


def test_three_layouts_load_to_the_same_geometry(tmp_path):
    plain = load_scene(write_plain(tmp_path / "plain"), image_size=(W, H))
    nerf = load_scene(write_transforms(tmp_path / "nerf"), image_size=(W, H))
    o3d_ = load_scene(write_open3d(tmp_path / "o3d"), image_size=(W, H))
    for s in (nerf, o3d_):
        assert len(s.frames) == 3
        for a, b in zip(plain.frames, s.frames):
            np.testing.assert_allclose(b.pose, a.pose, atol=1e-7)
            np.testing.assert_allclose(b.intrinsics, a.intrinsics, atol=1e-9)
            np.testing.assert_array_equal(b.depth, a.depth)
        assert s.num_points == plain.num_points
        np.testing.assert_allclose(s.points, plain.points, atol=1e-5)
    np.testing.assert_allclose(plain.points[:, 2], 0.0, atol=0.01)  # the floor, 1.5 m below the cameras


# ----------------------------------------------------------------------------------------------------------------------
# depth units


def test_depth_units_both_spellings(tmp_path):
    cap = write_plain(tmp_path / "p", n=2)
    (cap / "depth_scale.txt").write_text("2000\n")
    assert [s.depth_scale for s in capture_specs(cap, 1)[0]] == [2000.0, 2000.0]
    (cap / "depth_unit_scale_factor.txt").write_text("0.0005\n")  # the same, spelled in metres per unit
    assert capture_specs(cap, 1)[0][0].depth_scale == pytest.approx(2000.0)
    (cap / "depth_scale.txt").unlink()
    assert capture_specs(cap, 1)[0][0].depth_scale == pytest.approx(2000.0)
    (cap / "depth_scale.txt").write_text("1000\n")
    with pytest.raises(SASInputError, match="depth units disagree") as e:
        capture_specs(cap, 1)
    assert "depth_unit_scale_factor.txt" in str(e.value) and "depth_scale.txt" in str(e.value)
    # transforms.json: nerfstudio's metres per unit or units per metre
    nerf = write_transforms(tmp_path / "n", n=1)
    meta = json.loads((nerf / "transforms.json").read_text())
    del meta["depth_unit_scale_factor"]
    meta["depth_scale"] = 1000
    (nerf / "transforms.json").write_text(json.dumps(meta))
    assert capture_specs(nerf, 1)[0][0].depth_scale == 1000.0
    meta["depth_unit_scale_factor"] = 0.0002
    (nerf / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(SASInputError, match="depth units disagree"):
        capture_specs(nerf, 1)


def test_implausible_depth_units_name_the_file_and_the_fix(tmp_path):
    cap = write_plain(tmp_path / "p", n=2)
    (cap / "depth_scale.txt").write_text("0.001\n")
    with pytest.raises(SASInputError) as e:
        load_scene(cap)
    msg = str(e.value)
    assert str(cap / "depth" / "0.png") in msg and "median depth of this frame is 1.5e+06 m" in msg
    assert ("depth_scale.txt says depth_scale 0.001 units per metre; did you mean 1000? (depth_unit_scale_factor "
            "is the metres-per-unit spelling; that reads the raw median 1500 as 1.5 m)") in msg
    nerf = write_transforms(tmp_path / "n", n=1, depth_unit_scale_factor=1.0)  # metres per unit: raw mm read as m
    with pytest.raises(SASInputError, match=r"transforms.json says depth_unit_scale_factor 1 metres per unit; did "
                                            r"you mean 0\.001\? \(depth_scale is the units-per-metre spelling"):
        load_scene(nerf)
    # nothing given: the default millimetres, and how to say otherwise
    cm = write_plain(tmp_path / "cm", n=1)
    _save(cm / "depth" / "0.png", np.full((H, W), 2, np.uint16))  # whole metres read as millimetres: 2 mm
    with pytest.raises(SASInputError, match=r"default 1000 units per metre \(millimetres\) applies; if the depth is "
                                            r"not in millimetres, give its units: depth_scale 1 \(units per metre\)"):
        load_scene(cm)
    (cap / "depth_scale.txt").unlink()
    for i in range(2):  # float .npy in millimetres
        (cap / "depth" / f"{i}.png").unlink()
        np.save(cap / "depth" / f"{i}.npy", np.full((H, W), 1500.0, np.float32))
    with pytest.raises(SASInputError, match=r"0\.npy: .*float \.npy depth is read as metres"):
        load_scene(cap)


def test_lower_resolution_depth_of_the_same_aspect_loads(tmp_path):
    cap = write_plain(tmp_path / "half", depth_size=(W // 2, H // 2))
    s = load_scene(cap)
    f = s.frames[0]
    assert f.size == (320, 240) and f.depth.shape == (240, 320)
    np.testing.assert_allclose(f.intrinsics[0, 0], K[0, 0] * 5)  # intrinsics of the colour image, rescaled
    np.testing.assert_allclose(f.depth, HEIGHT)
    np.testing.assert_allclose(s.points[:, 2], 0.0, atol=0.01)


# ----------------------------------------------------------------------------------------------------------------------
# bad input: a clear SASInputError naming the file


def test_missing_pose_and_non_4x4_pose_name_the_file(tmp_path):
    cap = write_plain(tmp_path / "p")
    (cap / "poses" / "1.txt").unlink()
    with pytest.raises(SASInputError, match="pose file not found") as e:
        load_scene(cap)
    assert e.value.path == cap / "poses" / "1.txt"
    np.savetxt(cap / "poses" / "1.txt", np.eye(3))
    with pytest.raises(SASInputError, match=r"pose file is not a 4x4 matrix \(got shape \[3, 3\]\)") as e:
        load_scene(cap)
    assert e.value.path == cap / "poses" / "1.txt"


def test_depth_of_another_aspect_or_size_names_the_file(tmp_path):
    cap = write_plain(tmp_path / "p")
    _save(cap / "depth" / "0.png", _depth(size=(H, H)))  # square depth for a 4:3 colour image
    with pytest.raises(SASInputError, match="aspect ratios differ") as e:
        load_scene(cap)
    assert e.value.path == cap / "depth" / "0.png"
    cap2 = write_plain(tmp_path / "q")
    write_ply(cap2 / "mesh.ply", {"x": np.zeros(3, np.float32), "y": np.arange(3, dtype=np.float32),
                                  "z": np.zeros(3, np.float32)})
    _save(cap2 / "depth" / "2.png", _depth(size=(W // 2, H // 2)))  # smaller than the sequence's other depths
    s = load_scene(cap2)
    with pytest.raises(SASInputError, match="depth image is 32x24, but the sequence's depth images are 64x48") as e:
        s.frames[2]
    assert e.value.path == cap2 / "depth" / "2.png"


def test_frames_without_depth_need_a_mesh(tmp_path):
    cap = write_plain(tmp_path / "p")
    for p in (cap / "depth").iterdir():
        p.unlink()
    (cap / "depth").rmdir()
    with pytest.raises(SASInputError, match="no depth .*no mesh is given.*TSDF fusion, which needs a depth image"):
        load_scene(cap)
    write_ply(cap / "points.ply", {"x": np.zeros(3, np.float32), "y": np.arange(3, dtype=np.float32),
                                   "z": np.zeros(3, np.float32)})
    s = load_scene(cap)  # with a point cloud, colour-only frames are fine
    assert s.num_points == 3 and s.frames[0].depth is None
    nerf = write_transforms(tmp_path / "n")
    meta = json.loads((nerf / "transforms.json").read_text())
    del meta["frames"][1]["depth_file_path"]
    (nerf / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(SASInputError, match=r"1 of 3 frames have no depth \(e.g. frame frame_00001\).*TSDF") as e:
        load_scene(nerf)
    assert e.value.path == nerf / "transforms.json"


@pytest.mark.parametrize("bad, match", [
    ("three_rows", r"line 5: row 4 of the matrix of the entry starting at line 1 has 3 numbers, expected 4"),
    ("five_rows", r"line 6: expected the 3 integers of an entry's header, got 4 value"),
    ("truncated", r"the entry starting at line 11 has 2 matrix rows, expected 4 \(the file ends early"),
    ("frame_out_of_range", r"pose for frame number 4 but there are 3 colour images"),
    ("text", r"line 3: matrix row is not numeric"),
])
def test_bad_trajectory_log_names_the_file(tmp_path, bad, match):
    cap = write_open3d(tmp_path / "c")
    log = cap / "scene" / "trajectory.log"
    lines = _log_text(POSES).splitlines()
    if bad == "three_rows":
        del lines[4]
    elif bad == "five_rows":
        lines.insert(5, "0 0 0 1")
    elif bad == "truncated":
        lines = lines[:13]
    elif bad == "frame_out_of_range":
        lines[10] = "2 2 4"
    elif bad == "text":
        lines[2] = "nan? 1 2 3"
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(SASInputError, match=match) as e:
        load_scene(cap)
    assert e.value.path == log


def test_open3d_folder_mismatches_name_the_file(tmp_path):
    cap = write_open3d(tmp_path / "c")
    (cap / "depth" / "00002.png").unlink()
    with pytest.raises(SASInputError, match="2 depth images .* but 3 colour images in image/") as e:
        load_scene(cap)
    assert e.value.path == cap / "depth"
    cap = write_open3d(tmp_path / "d")
    (cap / "camera_intrinsic.json").write_text(json.dumps({"width": W, "height": H, "intrinsic_matrix": [1, 2, 3]}))
    with pytest.raises(SASInputError, match="'intrinsic_matrix' has 3 numbers, expected 9") as e:
        load_scene(cap)
    assert e.value.path == cap / "camera_intrinsic.json"


def test_trajectory_log_reader_skips_comments_and_blank_lines(tmp_path):
    p = tmp_path / "t.log"
    p.write_text("# exported\n\n" + _log_text(POSES[:2]).replace("1 1 2", "\n1 1 2"))
    got = read_trajectory_log(p)
    assert [i for i, _ in got] == [0, 1]
    np.testing.assert_allclose(got[1][1], POSES[1], atol=1e-8)
