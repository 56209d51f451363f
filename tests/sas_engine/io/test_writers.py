"""Benchmark submission files, coloured label PLYs and the palette."""
import numpy as np
import pytest

from sas_engine.errors import SASInputError
from sas_engine.io import (export_labels_ply, export_scene_labels, load_scene, palette, read_ply,
                           read_scannet_submission, write_scannet_submission)
from sas_engine.labels import SCANNET20_NYU40, nyu40_to_scannet20


def test_submission_roundtrip(tmp_path):
    pred = np.array([0, 1, 19, 12, 14, 4])
    p = write_scannet_submission(tmp_path / "sub", "scene0707_00", pred)
    assert p.name == "scene0707_00.txt"
    assert p.read_text().splitlines() == ["1", "2", "39", "14", "24", "5"]
    nyu = read_scannet_submission(p)
    np.testing.assert_array_equal(nyu40_to_scannet20(nyu), pred)
    every = write_scannet_submission(tmp_path, "all", np.arange(20, dtype=np.uint8))
    assert read_scannet_submission(every).tolist() == list(SCANNET20_NYU40)


def test_submission_rejects_bad_predictions(tmp_path):
    with pytest.raises(SASInputError, match="outside 0..19"):
        write_scannet_submission(tmp_path, "s", np.array([0, 20]))
    with pytest.raises(SASInputError, match="ignore"):
        write_scannet_submission(tmp_path, "s", np.array([0, 255]))
    p = write_scannet_submission(tmp_path, "s", np.array([0, 255]), ignore_id=40)
    assert p.read_text().split() == ["1", "40"]
    with pytest.raises(SASInputError, match="integer"):
        write_scannet_submission(tmp_path, "s", np.array([0.5]))


def test_palette():
    pal = palette(20)
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[0].tolist() == [174, 199, 232] and pal[19].tolist() == [82, 84, 163]
    assert (pal[20:] == 0).all()
    big = palette(160)
    assert len({tuple(c) for c in big[:160]}) == 160  # distinct colours
    assert big[255].tolist() == [0, 0, 0] and (big[160:] == 0).all()
    assert palette(256)[254].any() and not palette(256)[255].any()
    with pytest.raises(ValueError):
        palette(300)


def test_export_labels_ply(tmp_path):
    pts = np.random.default_rng(0).random((6, 3)).astype(np.float32)
    lab = np.array([0, 1, 2, 255, 1, 300])
    p = export_labels_ply(tmp_path / "lab.ply", pts, lab, faces=np.array([[0, 1, 2]]), num_classes=20)
    r = read_ply(p)
    v = r["vertex"]
    assert v["label"].tolist() == [0, 1, 2, 255, 1, 255]
    pal = palette(20)
    np.testing.assert_array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), pal[v["label"]])
    np.testing.assert_allclose(np.stack([v["x"], v["y"], v["z"]], 1), pts)
    assert r["face"].tolist() == [[0, 1, 2]]
    with pytest.raises(SASInputError, match="one per point"):
        export_labels_ply(tmp_path / "x.ply", pts, lab[:5])


def test_export_scene_labels_loads_back_as_scene(tmp_path):
    pts = np.random.default_rng(1).random((4, 3)).astype(np.float32)
    from sas_engine.scene import Scene
    s = Scene("s", pts, np.zeros((4, 3), np.uint8), faces=np.array([[0, 1, 2], [1, 2, 3]]))
    p = export_scene_labels(tmp_path / "s_pred.ply", s, np.array([3, 3, 7, 255]))
    back = load_scene(p)
    assert back.num_points == 4 and len(back.faces) == 2
    np.testing.assert_array_equal(back.colors[0], palette(20)[3])
