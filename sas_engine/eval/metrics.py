"""Semantic-segmentation metrics from a confusion matrix.

Conventions (shared by every function here):

* ``gt`` holds class indices ``0..K-1``; points whose ground truth is the ignore label (255 by default, and -100, the
  value some preprocessed files use) are left out of every metric.
* ``pred`` holds class indices ``0..K-1``; a negative value (:data:`MISSING`, -1) or the ignore label means "no
  prediction" - the point had no feature (e.g. seen by no camera). Such points are **misses**: they sit in an extra
  last column of the confusion matrix, so they lower the IoU and accuracy of their ground-truth class without adding a
  false positive to any other class.
* The confusion matrix is int64 ``[K, K + 1]``: rows = ground truth, columns = prediction, column ``K`` = no prediction.
  Matrices of several scenes are accumulated by plain summation; IoU is computed from the sum (never a mean of
  per-scene IoUs).

Two conventions turn per-class numbers into one mean (``convention=``):

* ``"present"`` (default): the mean over classes that occur in the ground truth (ScanNet benchmark style; an absent
  class has no defined IoU and is skipped).
* ``"openscene"``: OpenScene's evaluation code sums the IoU (accuracy) of classes present in the ground truth and
  divides by K, the size of the label set, so every absent class counts as 0. On a split where every class occurs
  (ScanNet val, the paper's tables) both conventions agree; on single scenes or small splits "openscene" is lower.

All returned values are fractions in [0, 1]; reports multiply by 100.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SASInputError
from ..labels import IGNORE

MISSING = -1
"""Prediction value of a point without a feature (counted as a miss)."""

IGNORE_ALT = -100
"""Second ignore value found in some preprocessed label files; always ignored in ground truth."""

CONVENTIONS = {
    "present": "mean over the classes present in the ground truth",
    "openscene": "sum over the classes present in the ground truth divided by K "
                 "(OpenScene's code; absent classes count 0)",
}
"""Plain registry of mean conventions: name -> description (shown in reports)."""


def _as_int_array(a: Any, what: str) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor on any device
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise SASInputError(None, f"{what} contains NaN or infinite values")
        a = np.rint(a)
    elif a.dtype.kind not in "iub":
        raise SASInputError(None, f"{what} must be an integer array, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False).reshape(-1)


def confusion_matrix(pred: Any, gt: Any, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """Confusion matrix int64 ``[K, K + 1]`` (rows ground truth, columns prediction, last column = no prediction).

    Args:
        pred: [N] predicted class per point (numpy or torch, any int dtype); negative or ``ignore`` = no prediction.
        gt: [N] ground-truth class per point; ``ignore`` and -100 are skipped.
        num_classes: K.
        ignore: the ignore label of ``gt`` (255).

    Raises:
        SASInputError: shapes differ, or ``gt`` / ``pred`` hold a class index outside ``0..K-1`` that is not an
            ignore / missing value.
    """
    k = int(num_classes)
    if k <= 0:
        raise SASInputError(None, f"num_classes must be positive, got {num_classes}")
    p = _as_int_array(pred, "prediction")
    g = _as_int_array(gt, "ground truth")
    if p.shape != g.shape:
        raise SASInputError(None, f"prediction has {p.size} points but ground truth has {g.size}")
    keep = (g != ignore) & (g != IGNORE_ALT)
    g, p = g[keep], p[keep]
    bad = (g < 0) | (g >= k)
    if bad.any():
        vals = np.unique(g[bad])[:5].tolist()
        raise SASInputError(None, f"ground truth holds labels {vals} outside 0..{k - 1} (ignore label {ignore})")
    miss = (p < 0) | (p == ignore)
    over = ~miss & (p >= k)
    if over.any():
        vals = np.unique(p[over])[:5].tolist()
        raise SASInputError(None, f"prediction holds labels {vals} outside 0..{k - 1}")
    p = np.where(miss, k, p)
    return np.bincount(g * (k + 1) + p, minlength=k * (k + 1)).reshape(k, k + 1).astype(np.int64)


def _check_conf(conf: Any) -> np.ndarray:
    c = np.asarray(conf)
    if c.ndim != 2 or c.shape[1] != c.shape[0] + 1:
        raise SASInputError(None, f"confusion matrix must be [K, K+1], got {list(c.shape)}")
    return c.astype(np.int64, copy=False)


def class_iou(conf: Any) -> np.ndarray:
    """Per-class IoU ``tp / (tp + fp + fn)`` float64 [K]; NaN where the class is neither in GT nor predicted.

    Misses (last column) count as false negatives of their ground-truth class.
    """
    c = _check_conf(conf)
    k = c.shape[0]
    tp = np.diag(c[:, :k]).astype(np.float64)
    gt_count = c.sum(1)  # includes misses
    pred_count = c[:, :k].sum(0)
    denom = gt_count + pred_count - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)


def class_acc(conf: Any) -> np.ndarray:
    """Per-class accuracy (recall) ``tp / gt_count`` float64 [K]; NaN where the class is absent from the GT."""
    c = _check_conf(conf)
    k = c.shape[0]
    tp = np.diag(c[:, :k]).astype(np.float64)
    n = c.sum(1)
    return np.where(n > 0, tp / np.maximum(n, 1), np.nan)


def present_classes(conf: Any) -> np.ndarray:
    """bool [K]: classes with at least one ground-truth point."""
    return _check_conf(conf).sum(1) > 0


def _mean(values: np.ndarray, present: np.ndarray, convention: str) -> float:
    if convention not in CONVENTIONS:
        raise SASInputError(None, f"unknown mean convention {convention!r}; known: {', '.join(CONVENTIONS)}")
    if not present.any():
        return float("nan")
    v = np.where(present, np.nan_to_num(values, nan=0.0), 0.0)
    if convention == "present":
        return float(v.sum() / present.sum())
    return float(v.sum() / len(values))


def miou(conf: Any, convention: str = "present") -> float:
    """Mean IoU of a confusion matrix under ``convention`` (see module doc); NaN when the GT is empty."""
    return _mean(class_iou(conf), present_classes(conf), convention)


def macc(conf: Any, convention: str = "present") -> float:
    """Mean class accuracy under ``convention``; NaN when the GT is empty."""
    return _mean(class_acc(conf), present_classes(conf), convention)


def overall_acc(conf: Any) -> float:
    """Fraction of evaluated points predicted correctly (misses count as wrong)."""
    c = _check_conf(conf)
    n = c.sum()
    return float(np.trace(c[:, : c.shape[0]]) / n) if n else float("nan")


def coverage(conf: Any) -> float:
    """Fraction of evaluated points that had a prediction (not a miss)."""
    c = _check_conf(conf)
    n = c.sum()
    return float(1.0 - c[:, -1].sum() / n) if n else float("nan")


def summarize(conf: Any, class_names: list[str] | tuple[str, ...], convention: str = "present") -> dict:
    """Every number of a confusion matrix as a JSON-able dict, in percent.

    Keys: ``miou`` / ``macc`` (under ``convention``), ``miou_present``, ``miou_openscene``, ``macc_present``,
    ``macc_openscene``, ``oacc``, ``coverage``, ``points`` (evaluated points), ``iou`` / ``acc`` (class name ->
    percent, ``None`` where undefined), ``present`` (class names in the GT), ``confusion`` (the matrix as lists; last
    column = no prediction). NaNs become ``None``.
    """
    c = _check_conf(conf)
    if len(class_names) != c.shape[0]:
        raise SASInputError(None, f"{len(class_names)} class names for a {c.shape[0]}-class confusion matrix")

    def pct(x):
        return None if x is None or not np.isfinite(x) else round(100.0 * float(x), 4)

    iou, acc, present = class_iou(c), class_acc(c), present_classes(c)
    return {
        "miou": pct(miou(c, convention)),
        "macc": pct(macc(c, convention)),
        "convention": convention,
        "miou_present": pct(miou(c, "present")),
        "miou_openscene": pct(miou(c, "openscene")),
        "macc_present": pct(macc(c, "present")),
        "macc_openscene": pct(macc(c, "openscene")),
        "oacc": pct(overall_acc(c)),
        "coverage": pct(coverage(c)),
        "points": int(c.sum()),
        "iou": {n: pct(v) for n, v in zip(class_names, iou)},
        "acc": {n: pct(v) for n, v in zip(class_names, acc)},
        "present": [n for n, p in zip(class_names, present) if p],
        "confusion": c.tolist(),
    }
