"""OpenScene's preprocessed layout: ScanNet / Matterport / nuScenes .pth scenes, 2D frames, fused features."""
import fractions
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from sas_engine.errors import SASInputError
from sas_engine.io import load_openscene_features, load_scene
from sas_engine.io.openscene import SCANNET_2D_K
from sas_engine.labels import IGNORE


def _scene_arrays(n=50, seed=0):
    rng = np.random.default_rng(seed)
    coords = rng.random((n, 3)).astype(np.float32) * [4, 3, 2.5]
    rgb = rng.integers(0, 256, (n, 3))
    colors = (rgb / 127.5 - 1).astype(np.float32)
    labels = (np.arange(n) % 22).astype(np.float32)
    labels[labels == 20] = 255
    labels[labels == 21] = -100
    return coords, colors, labels, rgb


def _numpy1_names(path):
    """Rewrite a torch file so its pickle names numpy 1.x modules (as files saved before numpy 2 do)."""
    zin = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for it in zin.infolist():
            d = zin.read(it.filename)
            if it.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in d
                d = d.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(it, d)
    path.write_bytes(out.getvalue())


@pytest.mark.parametrize("as_numpy", [False, True])
def test_scannet_pth_numpy_and_tensor(tmp_path, as_numpy):
    coords, colors, labels, rgb = _scene_arrays()
    d = tmp_path / "scannet_3d" / "val"
    d.mkdir(parents=True)
    p = d / "scene0011_00_vh_clean_2.pth"
    if as_numpy:
        torch.save((coords, colors, labels), p)
        _numpy1_names(p)
    else:
        torch.save((torch.from_numpy(coords), torch.from_numpy(colors), torch.from_numpy(labels)), p)
    s = load_scene(p)
    assert s.scene_id == "scene0011_00" and s.dataset == "scannet" and s.label_set == "scannet20"
    np.testing.assert_array_equal(s.colors, rgb)
    np.testing.assert_allclose(s.points, coords)
    assert s.labels[:22].tolist() == list(range(20)) + [IGNORE, IGNORE]
    assert len(s.frames) == 0


def test_scannet_pth_with_2d_frames(tmp_path):
    coords, colors, labels, _ = _scene_arrays()
    (tmp_path / "scannet_3d" / "train").mkdir(parents=True)
    p = tmp_path / "scannet_3d" / "train" / "scene0011_00_vh_clean_2.pth"
    torch.save((coords, colors, labels), p)
    d2 = tmp_path / "scannet_2d" / "scene0011_00"
    for sub in ("color", "depth", "pose"):
        (d2 / sub).mkdir(parents=True)
    for i in (0, 20, 40):
        Image.fromarray(np.full((240, 320, 3), 90, np.uint8)).save(d2 / "color" / f"{i}.jpg")
        Image.fromarray(np.full((240, 320), 2000, np.uint16)).save(d2 / "depth" / f"{i}.png")
        pose = np.eye(4) if i != 20 else np.full((4, 4), np.nan)
        np.savetxt(d2 / "pose" / f"{i}.txt", pose)
    s = load_scene(p)
    assert s.frames.frame_ids == ["0", "40"]  # default stride 1 for the export; nan pose skipped
    f = s.frames[0]
    assert f.size == (320, 240)
    np.testing.assert_allclose(f.depth, 2.0)
    # OpenScene's 640x480 constants halved (pixel-centre convention)
    np.testing.assert_allclose(f.intrinsics[0], [SCANNET_2D_K[0, 0] / 2, 0, 159.5])
    # an intrinsics file next to the frames wins
    np.savetxt(tmp_path / "scannet_2d" / "intrinsics.txt", [[100, 0, 159.5], [0, 100, 119.5], [0, 0, 1]])
    np.testing.assert_allclose(load_scene(p).frames[0].intrinsics[0], [100, 0, 159.5])


def test_matterport_region_views_and_depth_scale(tmp_path):
    coords, colors, _, _ = _scene_arrays()
    labels = (np.arange(50) % 21).astype(np.float32)
    for sub in ("matterport_3d", "matterport_3d_160"):
        (tmp_path / sub / "test").mkdir(parents=True)
        torch.save((coords, colors, labels), tmp_path / sub / "test" / "bldgA_region3.pth")
    d2 = tmp_path / "matterport_2d" / "bldgA"
    for sub in ("color", "depth", "pose", "intrinsic"):
        (d2 / sub).mkdir(parents=True)
    cams = {"aaa_i0_1": (2.0, 1.5, 1.2), "bbb_i1_2": (9.0, 9.0, 9.0)}  # only the first is inside the region
    for name, c in cams.items():
        Image.fromarray(np.zeros((512, 640, 3), np.uint8)).save(d2 / "color" / f"{name}.jpg")
        dname = name.replace("_i", "_d")
        Image.fromarray(np.full((512, 640), 8000, np.uint16)).save(d2 / "depth" / f"{dname}.png")
        T = np.eye(4)
        T[:3, 3] = c
        np.savetxt(d2 / "pose" / f"{name}.txt", T)
        np.savetxt(d2 / "intrinsic" / f"{name}.txt", [[500, 0, 319.5], [0, 500, 255.5], [0, 0, 1]])
    s = load_scene(tmp_path / "matterport_3d" / "test" / "bldgA_region3.pth")
    assert s.dataset == "matterport" and s.label_set == "matterport21" and s.labels.max() == 20
    assert s.frames.frame_ids == ["aaa_i0_1"]
    f = s.frames[0]
    assert f.size == (640, 512)
    np.testing.assert_allclose(f.depth, 2.0)  # 8000 / 4000
    np.testing.assert_allclose(f.intrinsics[0], [500, 0, 319.5])
    s160 = load_scene(tmp_path / "matterport_3d_160" / "test" / "bldgA_region3.pth")
    assert s160.label_set == "matterport160"
    # a region with no camera inside falls back to the nearest views
    torch.save((coords + 100, colors, labels), tmp_path / "matterport_3d" / "test" / "bldgA_region4.pth")
    assert len(load_scene(tmp_path / "matterport_3d" / "test" / "bldgA_region4.pth").frames) == 2


def test_nuscenes_tuple_without_colour_or_depth(tmp_path):
    coords = np.random.default_rng(0).random((30, 3)).astype(np.float32) * 20
    labels = (np.arange(30) % 17).astype(np.float32)
    labels[labels == 16] = 255
    (tmp_path / "nuscenes_3d" / "val").mkdir(parents=True)
    p = tmp_path / "nuscenes_3d" / "val" / "scene-0001.pth"
    torch.save((torch.from_numpy(coords), 0, torch.from_numpy(labels)), p)
    d2 = tmp_path / "nuscenes_2d" / "val" / "scene-0001"
    for sub in ("color", "pose", "K"):
        (d2 / sub).mkdir(parents=True)
    for cam in ("front", "back"):
        Image.fromarray(np.zeros((450, 800, 3), np.uint8)).save(d2 / "color" / f"{cam}.jpg")
        np.save(d2 / "pose" / f"{cam}.npy", np.eye(4))
        np.save(d2 / "K" / f"{cam}.npy", np.array([[600.0, 0, 399.5], [0, 600, 224.5], [0, 0, 1]]))
    s = load_scene(p)
    assert s.dataset == "nuscenes" and s.label_set == "nuscenes16"
    assert (s.colors == 0).all() and s.labels[16] == IGNORE and s.labels[15] == 15
    assert s.frames.frame_ids == ["back", "front"]
    f = s.frames[1]
    assert f.depth is None and f.size == (800, 450)
    np.testing.assert_allclose(f.intrinsics[0], [600, 0, 399.5])
    np.save(d2 / "K" / "front.npy", np.eye(4))
    with pytest.raises(SASInputError, match="not a 3x3 matrix"):
        load_scene(p)


def test_pickle_safety(tmp_path, monkeypatch):
    coords, colors, labels, _ = _scene_arrays()
    p = tmp_path / "odd.pth"
    torch.save((coords, colors, labels, fractions.Fraction(1, 3)), p)
    monkeypatch.delenv("SAS_TRUST_PICKLE", raising=False)
    with pytest.raises(SASInputError, match="refused for safety.*SAS_TRUST_PICKLE=1") as e:
        load_scene(p)
    assert e.value.path == p
    assert load_scene(p, trust_pickle=True).num_points == 50
    monkeypatch.setenv("SAS_TRUST_PICKLE", "1")
    assert load_scene(p).num_points == 50


def test_bad_pth_files(tmp_path):
    p = tmp_path / "bad.pth"
    p.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SASInputError, match="truncated or corrupt"):
        load_scene(p)
    torch.save({"coords": torch.zeros(3, 3)}, p)
    with pytest.raises(SASInputError, match="expected a \\(coords, colors, labels\\) tuple"):
        load_scene(p)
    torch.save((torch.zeros(5, 3), torch.zeros(4, 3), torch.zeros(5)), p)
    with pytest.raises(SASInputError, match="colors must be \\[N, 3\\] like coords"):
        load_scene(p)
    torch.save((torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0)), p)
    with pytest.raises(SASInputError, match="empty"):
        load_scene(p)


# ---- fused features -------------------------------------------------------------------------------------------------
def _feat_bank(n=40, c=8, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, c)).astype(np.float32))


def test_features_modern_and_legacy(tmp_path):
    bank = _feat_bank()
    vis = torch.zeros(40, dtype=torch.bool)
    vis[::3] = True
    torch.save({"feat": bank[vis].half(), "mask_full": vis}, tmp_path / "scene0000_00.pt")
    feat, mask = load_openscene_features(tmp_path / "scene0000_00.pt")
    assert feat.dtype == np.float16 and mask.dtype == np.bool_ and feat.shape == (14, 8)
    np.testing.assert_array_equal(mask, vis.numpy())
    np.testing.assert_allclose(feat, bank[vis].half().numpy())
    # legacy: feat rows follow the chunk (mask_full), 'mask' = indices of chunk rows that have a feature
    chunk = torch.zeros(40, dtype=torch.bool)
    chunk[:30] = True
    rows = bank[chunk].half().clone()
    has = torch.arange(30)[torch.arange(30) % 2 == 0]
    rows[torch.arange(30) % 2 == 1] = 0
    torch.save({"feat": rows, "mask": has, "mask_full": chunk.numpy()}, tmp_path / "legacy.pt")
    feat, mask = load_openscene_features(tmp_path / "legacy.pt")
    expect = np.zeros(40, bool)
    expect[0:30:2] = True
    np.testing.assert_array_equal(mask, expect)
    np.testing.assert_allclose(feat, bank.half().numpy()[expect])


def test_feature_train_chunks_merge(tmp_path):
    bank = _feat_bank(100)
    rng = np.random.default_rng(3)
    union = np.zeros(100, bool)
    for k in range(5):
        m = np.zeros(100, bool)
        m[rng.choice(100, 20, replace=False)] = True
        union |= m
        torch.save({"feat": bank[torch.from_numpy(m)].half(), "mask_full": torch.from_numpy(m)},
                   tmp_path / f"scene0001_00_{k}.pt")
    torch.save({"feat": bank[:1].half(), "mask_full": torch.ones(1, dtype=torch.bool)}, tmp_path / "scene0001_01_0.pt")
    feat, mask = load_openscene_features(tmp_path / "scene0001_00_2.pt")
    np.testing.assert_array_equal(mask, union)
    np.testing.assert_allclose(feat, bank.half().numpy()[union])
    one, m1 = load_openscene_features(tmp_path / "scene0001_00_2.pt", merge_chunks=False)
    assert m1.sum() == 20 and len(one) == 20


def test_feature_file_errors(tmp_path):
    p = tmp_path / "f_0.pt"
    torch.save({"feat": torch.zeros(3, 4)}, p)
    with pytest.raises(SASInputError, match="needs keys 'feat' and 'mask_full'"):
        load_openscene_features(p)
    torch.save({"feat": torch.zeros(3, 4), "mask_full": torch.ones(5, dtype=torch.bool)}, p)
    with pytest.raises(SASInputError, match="'feat' has 3 rows but 'mask_full' selects 5"):
        load_openscene_features(p)
    with pytest.raises(SASInputError, match="not a scene"):
        load_scene(p)
    with pytest.raises(SASInputError, match="not found"):
        load_openscene_features(tmp_path / "missing.pt")
