"""Masks made elsewhere: the benchmark / Mask3D submission format (round trip, the official layout, bad files) and
OpenMask3D-style arrays ([N, P] .pt with scores, .npy with a sibling scores file, .npz)."""
import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.instances.adapters import read_mask_array, read_proposal_file, read_submission, write_submission
from sas_engine.instances.metrics import InstancePrediction, evaluate_instances


def _preds(n=300):
    a = np.zeros(n, bool)
    a[:120] = True
    b = np.zeros(n, bool)
    b[100:250] = True
    return [InstancePrediction(a, 5, 0.75), InstancePrediction(b, 7, 0.125)]


def test_submission_round_trip_and_layout(tmp_path):
    preds = _preds()
    txt = write_submission(tmp_path, "scene0011_00", preds, 300)
    assert txt == tmp_path / "scene0011_00.txt"
    assert txt.read_text().splitlines() == ["pred_mask/scene0011_00_0.txt 5 0.750000",
                                            "pred_mask/scene0011_00_1.txt 7 0.125000"]
    lines = (tmp_path / "pred_mask" / "scene0011_00_0.txt").read_text().splitlines()
    assert len(lines) == 300 and lines[:2] == ["1", "1"] and lines[-1] == "0"
    back = read_submission(txt, 300)
    assert [(p.label_id, p.score) for p in back] == [(5, 0.75), (7, 0.125)]
    for p, q in zip(preds, back):
        np.testing.assert_array_equal(p.mask, q.mask)
    gt = np.zeros(300, np.int64)
    gt[:120] = 5001
    assert evaluate_instances([(gt, back)])["ap50"] == 1.0
    props = read_proposal_file(txt, 300)
    assert len(props) == 2 and props.scores.tolist() == [0.75, 0.125] and props.sizes().tolist() == [120, 150]


def test_bad_submissions_name_the_file(tmp_path):
    write_submission(tmp_path, "s", _preds(), 300)
    with pytest.raises(SASInputError, match="lines"):
        read_submission(tmp_path / "s.txt", 301)
    (tmp_path / "bad.txt").write_text("pred_mask/s_0.txt 5\n")
    with pytest.raises(SASInputError, match="line 1"):
        read_submission(tmp_path / "bad.txt")
    (tmp_path / "out.txt").write_text("../elsewhere.txt 5 0.5\n")
    with pytest.raises(SASInputError, match="outside"):
        read_submission(tmp_path / "out.txt")
    (tmp_path / "missing.txt").write_text("pred_mask/none.txt 5 0.5\n")
    with pytest.raises(SASInputError, match="not found"):
        read_submission(tmp_path / "missing.txt")
    with pytest.raises(SASInputError, match="spaces"):
        write_submission(tmp_path, "a b", _preds(), 300)


def test_openmask3d_arrays(tmp_path):
    n = 400
    masks = np.zeros((n, 3), bool)  # OpenMask3D: points x masks
    masks[:150, 0] = True
    masks[150:200, 1] = True  # 50 points: dropped with min_points=100
    masks[200:, 2] = True
    torch.save({"masks": torch.from_numpy(masks), "scores": torch.tensor([0.9, 0.8, 0.7])}, tmp_path / "a_masks.pt")
    props = read_mask_array(tmp_path / "a_masks.pt", n, min_points=100)
    assert len(props) == 2 and props.sizes().tolist() == [150, 200]
    np.testing.assert_allclose(props.scores, [0.9, 0.7])
    # [P, N] .npy with a sibling scores file
    np.save(tmp_path / "b_masks.npy", masks.T.astype(np.uint8))
    np.save(tmp_path / "b_scores.npy", np.array([0.1, 0.2, 0.3], np.float32))
    props = read_proposal_file(tmp_path / "b_masks.npy", n)
    assert len(props) == 3 and props.scores.tolist() == pytest.approx([0.1, 0.2, 0.3])
    np.savez(tmp_path / "c.npz", masks=masks)
    assert read_mask_array(tmp_path / "c.npz", n).scores is None
    with pytest.raises(SASInputError, match="axis"):
        read_mask_array(tmp_path / "a_masks.pt", n + 1)
    torch.save({"masks": torch.from_numpy(masks), "scores": torch.ones(2)}, tmp_path / "d.pt")
    with pytest.raises(SASInputError, match="2 scores for 3 masks"):
        read_mask_array(tmp_path / "d.pt", n)
    (tmp_path / "e.json").write_text("{}")
    with pytest.raises(SASInputError, match="unknown instance mask format"):
        read_proposal_file(tmp_path / "e.json", n)
