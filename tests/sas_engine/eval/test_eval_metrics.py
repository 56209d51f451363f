"""Metrics against hand-computed confusion matrices: absent classes, ignore labels, missing features, conventions."""
import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.eval.metrics import (class_acc, class_iou, confusion_matrix, coverage, macc, miou, overall_acc,
                                     summarize)


def test_confusion_by_hand_with_ignore_and_misses():
    gt = np.array([0, 0, 0, 1, 1, 255, 2, -100, 0])
    pred = np.array([0, 1, -1, 1, 0, 2, 2, 1, 0])
    c = confusion_matrix(pred, gt, 4)
    want = np.zeros((4, 5), np.int64)
    want[0, 0] = 2  # points 0 and 8
    want[0, 1] = 1
    want[0, 4] = 1  # miss (no feature)
    want[1, 1] = 1
    want[1, 0] = 1
    want[2, 2] = 1
    np.testing.assert_array_equal(c, want)
    # ignore rows (255, -100) never counted; 7 evaluated points
    assert c.sum() == 7

    # IoU: class0 tp2 fp1 fn2 -> 2/5; class1 tp1 fp1 fn1 -> 1/3; class2 tp1 -> 1; class3 absent and unpredicted -> nan
    iou = class_iou(c)
    np.testing.assert_allclose(iou[:3], [2 / 5, 1 / 3, 1.0])
    assert np.isnan(iou[3])
    acc = class_acc(c)
    np.testing.assert_allclose(acc[:3], [2 / 4, 1 / 2, 1.0])
    assert np.isnan(acc[3])
    # conventions: present = mean over 3 classes present; openscene = sum / K (K = 4)
    assert miou(c, "present") == pytest.approx((2 / 5 + 1 / 3 + 1) / 3)
    assert miou(c, "openscene") == pytest.approx((2 / 5 + 1 / 3 + 1) / 4)
    assert macc(c, "present") == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert macc(c, "openscene") == pytest.approx((0.5 + 0.5 + 1) / 4)
    assert overall_acc(c) == pytest.approx(4 / 7)
    assert coverage(c) == pytest.approx(6 / 7)


def test_missing_features_lower_only_their_gt_class():
    gt = np.array([0, 0, 1, 1])
    full = confusion_matrix(np.array([0, 0, 1, 1]), gt, 2)
    half = confusion_matrix(np.array([0, -1, 1, 1]), gt, 2)
    assert miou(full) == pytest.approx(1.0)
    iou = class_iou(half)
    assert iou[0] == pytest.approx(0.5)  # tp 1, fn 1 (the miss), no fp
    assert iou[1] == pytest.approx(1.0)  # the miss is no false positive of class 1


def test_absent_class_predicted_counts_zero_only_in_openscene():
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])  # class 2 absent in GT but predicted once
    c = confusion_matrix(pred, gt, 3)
    iou = class_iou(c)
    np.testing.assert_allclose(iou, [0.5, 1.0, 0.0])
    assert miou(c, "present") == pytest.approx(0.75)  # class 2 not present -> skipped
    assert miou(c, "openscene") == pytest.approx(1.5 / 3)


def test_accumulation_sums_matrices_not_ious():
    a = confusion_matrix([0, 0, 0, 1], [0, 0, 0, 1], 2)  # perfect
    b = confusion_matrix([1, 1], [0, 0], 2)  # all wrong
    tot = a + b
    # class0: tp 3, fn 2, fp 0 -> 3/5; class1: tp 1, fp 2 -> 1/3
    np.testing.assert_allclose(class_iou(tot), [3 / 5, 1 / 3])
    assert miou(tot) != pytest.approx((miou(a) + miou(b)) / 2)


def test_torch_inputs_and_float_labels():
    gt = torch.tensor([0.0, 1.0, 255.0, -100.0])
    pred = torch.tensor([0, 1, 1, 0])
    c = confusion_matrix(pred, gt, 2)
    assert c.sum() == 2 and miou(c) == pytest.approx(1.0)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(SASInputError, match="outside 0..1"):
        confusion_matrix([0, 1], [0, 5], 2)
    with pytest.raises(SASInputError, match="prediction holds labels"):
        confusion_matrix([0, 7], [0, 1], 2)
    with pytest.raises(SASInputError, match="points"):
        confusion_matrix([0, 1, 1], [0, 1], 2)
    with pytest.raises(SASInputError, match="convention"):
        miou(np.zeros((2, 3)), "bogus")
    with pytest.raises(SASInputError, match=r"\[K, K\+1\]"):
        miou(np.zeros((2, 2)))


def test_empty_gt_gives_nan_and_summary_is_json_able():
    import json

    c = confusion_matrix([0, 1], [255, 255], 2)
    assert np.isnan(miou(c))
    s = summarize(c, ["a", "b"])
    assert s["miou"] is None and s["iou"] == {"a": None, "b": None}
    json.dumps(s)
    s2 = summarize(confusion_matrix([0, 1, -1], [0, 1, 1], 2), ["a", "b"], "openscene")
    assert s2["miou"] == pytest.approx(100 * (1 + 0.5) / 2)
    assert s2["coverage"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert s2["present"] == ["a", "b"] and s2["points"] == 3
