"""ScanNet raw scan folders and the synthetic-world variant, on fixtures written by conftest.py."""
import json
import logging

import numpy as np
import pytest

from sas_engine.errors import SASInputError
from sas_engine.io import load_scene, write_ply
from sas_engine.labels import IGNORE


def test_geometry_labels_superpoints_instances(scannet_scan):
    s = load_scene(scannet_scan)
    assert s.scene_id == "scene0000_00" and s.dataset == "scannet" and s.label_set == "scannet20"
    assert s.points.shape == (100, 3) and s.points.dtype == np.float32
    assert s.faces.shape == (162, 3)
    assert s.colors[1].tolist() == [3, 4, 5]
    # NYU40 cycle 1, 2, 5, 13, 40, 39, 0 -> ScanNet-20 0, 1, 4, ignore, ignore, 19, ignore
    assert s.labels[:7].tolist() == [0, 1, 4, IGNORE, IGNORE, 19, IGNORE]
    assert s.superpoints[:12].tolist() == [0] * 10 + [7] * 2
    inst = s.instances
    assert (inst[:20] == 0).all() and (inst[20:30] == 1).all() and (inst[30:] == -1).all()


def test_frames_stride_invalid_pose_and_intrinsics(scannet_scan, caplog):
    with caplog.at_level(logging.INFO):
        s = load_scene(scannet_scan)
    # 45 frames, stride 20 -> 0, 20, 40; frame 20 has an -inf pose
    assert s.frames.frame_ids == ["0", "40"]
    assert "skipped 1 of 3 frames" in caplog.text
    f = s.frames[1]
    assert f.frame_id == "40" and f.size == (320, 240)
    assert f.color.dtype == np.uint8 and f.color.shape == (240, 320, 3)
    assert f.depth.dtype == np.float32 and f.depth.shape == (240, 320)
    np.testing.assert_allclose(f.depth, 1.5)
    # intrinsic_depth (40x30: f=30, c=19.5/14.5) rescaled x8 with the pixel-centre convention
    np.testing.assert_allclose(f.intrinsics, [[240, 0, 159.5], [0, 240, 119.5], [0, 0, 1]])
    assert f.pose[0, 3] == pytest.approx(0.54)
    assert f.gt_labels is None


def test_stride_and_size_options(scannet_scan):
    s = load_scene(scannet_scan, frame_stride=10, image_size=(20, 15))
    assert s.frames.frame_ids == ["0", "10", "30", "40"]
    f = s.frames[0]
    assert f.size == (20, 15) and f.depth.shape == (15, 20)
    np.testing.assert_allclose(f.intrinsics[0], [15, 0, 9.5])
    # left half of the colour image is red-ish (250), right half 120
    assert f.color[7, 2, 0] > 200 and f.color[7, 17, 0] < 150


def test_projection_consistency(scannet_scan):
    """World points projected with pose + intrinsics land where the depth map says they are."""
    s = load_scene(scannet_scan, image_size=(40, 30))
    f = s.frames[0]
    pw = np.c_[s.points, np.ones(len(s.points))] @ np.linalg.inv(f.pose).T
    z = pw[:, 2]
    u = f.intrinsics[0, 0] * pw[:, 0] / z + f.intrinsics[0, 2]
    v = f.intrinsics[1, 1] * pw[:, 1] / z + f.intrinsics[1, 2]
    ui, vi = np.round(u).astype(int), np.round(v).astype(int)
    ok = (ui >= 0) & (ui < 40) & (vi >= 0) & (vi < 30)
    assert ok.sum() > 50 and (z > 0).all()
    np.testing.assert_allclose(f.depth[vi[ok], ui[ok]], z[ok], atol=1e-3)
    # the world x axis maps to image right, world y to image up
    i0, i1 = 0, 1  # (0,0,0) and (0.11,0,0)
    assert u[i1] > u[i0]


def test_exported_subfolder_and_color_intrinsics_fallback(tmp_path, fx):
    folder = fx.write_scannet_scan(tmp_path, exported=True, n_frames=3, invalid=())
    (folder / "exported" / "intrinsic" / "intrinsic_depth.txt").unlink()
    s = load_scene(folder, frame_stride=1, image_size=(40, 30))
    assert len(s.frames) == 3
    # intrinsic_color refers to the 80x60 colour image: f=60 -> 30 at 40x30
    np.testing.assert_allclose(s.frames[0].intrinsics[0, 0], 30.0)


def test_synthetic_marker_preset_and_gt_images(tmp_path, fx):
    folder = fx.write_scannet_scan(tmp_path, synthetic=True, n_frames=3, invalid=())
    s = load_scene(folder)
    assert s.dataset == "synthetic" and len(s.frames) == 3  # stride 1 for the synthetic preset
    f = s.frames[2]
    assert f.gt_labels.dtype == np.uint8 and f.gt_labels.shape == (240, 320)
    assert (f.gt_labels[:, :160] == 1).all() and (f.gt_labels[:, 160:] == 255).all()
    assert f.gt_instances.dtype == np.int32
    assert (f.gt_instances[:, :160] == 3).all() and (f.gt_instances[:, 160:] == -1).all()
    # an explicit preset overrides the marker
    assert load_scene(folder, dataset="scannet").dataset == "scannet"


def test_geometry_only_scan_and_mesh_file_path(tmp_path, fx):
    folder = fx.write_scannet_scan(tmp_path, n_frames=0)
    import shutil
    for d in ("color", "depth", "pose", "intrinsic"):
        shutil.rmtree(folder / d, ignore_errors=True)
    s = load_scene(folder / "scene0000_00_vh_clean_2.ply")
    assert s.num_points == 100 and len(s.frames) == 0


# ---- bad input -------------------------------------------------------------------------------------------------------
def test_missing_path_and_missing_mesh(tmp_path, fx):
    with pytest.raises(SASInputError, match="not found") as e:
        load_scene(tmp_path / "does_not_exist")
    assert e.value.path == tmp_path / "does_not_exist"
    folder = fx.write_scannet_scan(tmp_path, synthetic=True, n_frames=1, invalid=())
    (folder / "scene0000_00_vh_clean_2.ply").unlink()
    with pytest.raises(SASInputError, match="mesh file not found"):
        load_scene(folder)


def test_unrecognised_folder(tmp_path):
    (tmp_path / "junk").mkdir()
    with pytest.raises(SASInputError, match="unrecognised scene folder"):
        load_scene(tmp_path / "junk")


def test_unknown_dataset_preset(scannet_scan):
    with pytest.raises(SASInputError, match="unknown dataset preset 'kitti'.*scannet"):
        load_scene(scannet_scan, dataset="kitti")


def test_truncated_mesh(scannet_scan):
    mesh = scannet_scan / "scene0000_00_vh_clean_2.ply"
    mesh.write_bytes(mesh.read_bytes()[:700])
    with pytest.raises(SASInputError, match="truncated") as e:
        load_scene(scannet_scan)
    assert e.value.path == mesh


def test_label_file_vertex_count_differs(scannet_scan):
    lab = scannet_scan / "scene0000_00_vh_clean_2.labels.ply"
    write_ply(lab, {"x": np.zeros(99, np.float32), "y": np.zeros(99, np.float32), "z": np.zeros(99, np.float32),
                    "label": np.ones(99, np.uint16)})
    with pytest.raises(SASInputError, match="labels PLY has 99 vertices but the mesh has 100") as e:
        load_scene(scannet_scan)
    assert e.value.path == lab


def test_segs_wrong_length_and_corrupt_json(scannet_scan):
    seg = scannet_scan / "scene0000_00_vh_clean_2.0.010000.segs.json"
    seg.write_text(json.dumps({"segIndices": [0] * 7}))
    with pytest.raises(SASInputError, match="7 entries but the mesh has 100"):
        load_scene(scannet_scan)
    seg.write_text("{not json")
    with pytest.raises(SASInputError, match="corrupt segments file"):
        load_scene(scannet_scan)


def test_depth_of_wrong_size(scannet_scan, fx):
    fx.save_u16(scannet_scan / "depth" / "40.png", np.full((20, 30), 1500))  # sequence depth is 40x30
    s = load_scene(scannet_scan)
    s.frames[0]
    with pytest.raises(SASInputError, match="depth image is 30x20, but the sequence's depth images are 40x30") as e:
        s.frames[1]
    assert e.value.path.name == "40.png"


def test_depth_aspect_differs_from_colour(tmp_path, fx):
    folder = fx.write_scannet_scan(tmp_path, n_frames=1, invalid=(), depth_size=(40, 40))
    with pytest.raises(SASInputError, match="aspect ratios differ"):
        load_scene(folder).frames[0]


def test_missing_depth_file(scannet_scan):
    (scannet_scan / "depth" / "40.png").unlink()
    s = load_scene(scannet_scan)
    with pytest.raises(SASInputError, match="depth image not found"):
        s.frames[1]


def test_pose_not_4x4(scannet_scan, fx):
    fx.save_matrix(scannet_scan / "pose" / "40.txt", np.eye(4)[:3])
    with pytest.raises(SASInputError, match="not a 4x4 matrix") as e:
        load_scene(scannet_scan)
    assert e.value.path.name == "40.txt"
    (scannet_scan / "pose" / "40.txt").write_text("1 2 x\n")
    with pytest.raises(SASInputError, match="not a numeric matrix"):
        load_scene(scannet_scan)
    (scannet_scan / "pose" / "40.txt").unlink()
    with pytest.raises(SASInputError, match="pose file not found"):
        load_scene(scannet_scan)


def test_corrupt_colour_image(scannet_scan):
    (scannet_scan / "color" / "0.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(SASInputError, match="cannot read colour image"):
        load_scene(scannet_scan).frames[0]


def test_empty_scene(scannet_scan):
    write_ply(scannet_scan / "scene0000_00_vh_clean_2.ply",
              {"x": np.zeros(0, np.float32), "y": np.zeros(0, np.float32), "z": np.zeros(0, np.float32)})
    with pytest.raises(SASInputError, match="empty"):
        load_scene(scannet_scan)
