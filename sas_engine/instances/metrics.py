"""The ScanNet 3D semantic-instance benchmark protocol (AP, AP50, AP25), re-implemented from its definition.

What is computed is exactly what ScanNet's ``BenchmarkScripts/3d_evaluation/evaluate_semantic_instance.py`` computes
(read at ScanNet/ScanNet commit a3c66b48, the last change of that file, 2018-11-21):

* **Classes**: the 18 instance classes, ScanNet-20 without wall and floor, identified by their NYU40 ids
  (:data:`INSTANCE_CLASS_IDS`). Ground truth is one int per vertex, ``label_id * 1000 + instance + 1``; ids below
  1000 are "groups" (no instance) and 0 is unannotated. A vertex is *void* when ``id // 1000`` is not one of the 18
  ids (walls, floors, unannotated vertices, other classes).
* **Overlaps**: ``np.append(np.arange(0.5, 0.95, 0.05), 0.25)``, i.e. 0.50, 0.55, ..., 0.90 and 0.25 (``arange``
  stops before 0.95, so 0.95 is *not* one of them, whatever the benchmark's page says). AP = mean over the nine
  overlaps 0.50-0.90, AP50 and AP25 the single overlaps. A prediction matches a ground-truth instance when
  ``IoU > overlap`` (strictly).
* **Minimum region size** 100 vertices: predictions smaller than that are dropped before anything else; smaller
  ground-truth instances are not counted (neither as hits nor as misses), and a prediction lying on them counts as
  lying on void (below).
* **Matching**, per overlap and class, scene by scene: each ground-truth instance (in id order) takes the first
  not-yet-used prediction (in prediction order) of its class with ``IoU > overlap``; any further such prediction is a
  false positive with the lower of the two scores, the instance keeping the higher one. A ground-truth instance
  with no match is a *hard false negative*. A prediction that overlaps no counted instance by more than the overlap
  is a false positive unless more than ``overlap`` of its vertices lie on void, on groups or on too-small instances
  of its class.
* **AP** of a class: over all scenes, the scores of the true and false positives sorted ascending; for each distinct
  score ``s``: ``tp`` = true positives scoring ``>= s``, ``fp`` = false positives scoring ``>= s``, ``fn`` = true
  positives below ``s`` + hard false negatives; precision ``tp / (tp + fp)``, recall ``tp / (tp + fn)``; a last point
  (precision 1, recall 0) is appended; AP = ``sum_i p_i * (r_{i-1} - r_{i+1}) / 2`` with ``r_{-1} = r_0`` and
  ``r_n = 0`` (the script's ``np.convolve(recall, [-0.5, 0, 0.5])`` step widths). A class with ground truth but no
  prediction scores 0; a class without (counted) ground truth is NaN and left out of the means (``nanmean``).

Two places where the script is not deterministic or fails, and what is done here instead:

* the script visits predictions in the iteration order of a Python 2 dict keyed by file name (hash order); here
  they are visited in the order given (the order of the submission's lines). This can matter only when one
  prediction overlaps two instances by more than the overlap, i.e. at 0.25;
* when a class has ground truth and predictions but every prediction is ignored (on void) and nothing matched, the
  script indexes an empty array and crashes; here that class scores 0 (no true positive).

All values are fractions in [0, 1]; reports multiply by 100.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np

from ..errors import SASInputError
from ..labels import IGNORE, SCANNET20, SCANNET20_NYU40

INSTANCE_CLASSES: tuple[str, ...] = tuple(SCANNET20[2:])
"""The benchmark's 18 instance classes (ScanNet-20 without wall and floor), in benchmark order."""
INSTANCE_CLASS_IDS: tuple[int, ...] = tuple(int(i) for i in SCANNET20_NYU40[2:])
"""Their NYU40 ids: 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39."""
OVERLAPS: tuple[float, ...] = tuple(float(x) for x in np.append(np.arange(0.5, 0.95, 0.05), 0.25))
"""The script's overlaps: 0.50, 0.55, ..., 0.90, then 0.25."""
MIN_REGION_SIZE = 100
"""Minimum region size (vertices) of a prediction or a counted ground-truth instance."""


@dataclass(frozen=True)
class InstanceEvalConfig:
    """Settings of the instance benchmark (defaults: ScanNet's official values; change them only for experiments)."""

    class_ids: tuple[int, ...] = INSTANCE_CLASS_IDS
    """Label ids evaluated (NYU40 ids for ScanNet); every other id is void."""
    class_names: tuple[str, ...] = INSTANCE_CLASSES
    """Names of ``class_ids``, same order."""
    overlaps: tuple[float, ...] = OVERLAPS
    """IoU thresholds; AP is the mean over all but 0.25, AP50 / AP25 the values at 0.5 / 0.25."""
    min_region_size: int = MIN_REGION_SIZE
    """Predictions below this many vertices are dropped; ground-truth instances below it are not counted."""

    def __post_init__(self):
        if len(self.class_ids) != len(self.class_names):
            raise SASInputError(None, f"{len(self.class_ids)} class ids but {len(self.class_names)} class names")


@dataclass
class InstancePrediction:
    """One predicted instance of one scene.

    Attributes:
        mask: bool [N] vertices of the instance (or int [n] vertex indices; see :func:`as_mask`).
        label_id: the class id (NYU40 id for ScanNet: chair = 5).
        score: confidence; higher ranks first.
    """

    mask: np.ndarray
    label_id: int
    score: float


@dataclass
class SceneMatches:
    """The per-scene association of predictions and ground truth that :func:`evaluate_matches` consumes.

    Attributes:
        gt: per class index: list of ``{"id", "count", "preds": [(pred index, intersection)]}`` in id order.
        preds: per class index: list of ``{"index", "count", "score", "void", "gts": [(gt position, intersection)]}``
            in prediction order (``gt position`` indexes ``gt[class]``; ``void`` = vertices on void).
    """

    gt: list[list[dict]] = field(default_factory=list)
    preds: list[list[dict]] = field(default_factory=list)


def gt_instance_ids(labels: np.ndarray, instances: np.ndarray, label_to_id: Sequence[int] = SCANNET20_NYU40,
                    ignore: int = IGNORE) -> np.ndarray:
    """Benchmark ground-truth ids int64 [N] from per-point class indices and instance ids.

    Args:
        labels: int [N] class index into the label set (``ignore`` = none).
        instances: int [N] instance id (>= 0) or -1 for none.
        label_to_id: class index -> benchmark label id (default ScanNet-20 -> NYU40).

    Returns ``label_id * 1000 + instance + 1`` where both are known, ``label_id`` (a "group") where only the class is,
    0 where the class is unknown. Instance ids must be < 999 (the format's limit).
    """
    lab = np.asarray(labels).astype(np.int64).reshape(-1)
    inst = np.asarray(instances).astype(np.int64).reshape(-1)
    if lab.shape != inst.shape:
        raise SASInputError(None, f"labels ({lab.shape[0]}) and instances ({inst.shape[0]}) differ in length")
    if inst.max(initial=-1) >= 999:
        raise SASInputError(None, f"instance id {int(inst.max())} does not fit the benchmark format (< 999)")
    lut = np.asarray(label_to_id, dtype=np.int64)
    known = (lab != ignore) & (lab >= 0) & (lab < len(lut))
    lid = np.where(known, lut[np.where(known, lab, 0)], 0)
    return np.where(known & (inst >= 0), lid * 1000 + inst + 1, lid).astype(np.int64)


def as_mask(mask, n: int, what: str = "prediction mask") -> np.ndarray:
    """A bool [n] mask from a bool array of length n, a 0/1 int array of length n (a submission's mask file) or an
    int array of vertex indices."""
    m = np.asarray(mask)
    if m.dtype == bool:
        if m.shape != (n,):
            raise SASInputError(None, f"{what} has {m.size} entries for {n} vertices")
        return m
    if m.dtype.kind not in "iu":
        raise SASInputError(None, f"{what} must be a bool [N] mask or int vertex indices, got {m.dtype}")
    if m.shape == (n,) and n > 2 and m.size and m.min() >= 0 and m.max() <= 1:
        return m.astype(bool)
    idx = m.reshape(-1).astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise SASInputError(None, f"{what} indexes vertices outside 0..{n - 1}")
    out = np.zeros(n, bool)
    out[idx] = True
    return out


def match_scene(gt_ids: np.ndarray, preds: Sequence[InstancePrediction],
                cfg: InstanceEvalConfig = InstanceEvalConfig()) -> SceneMatches:
    """Associate one scene's predictions with its ground truth (the script's ``assign_instances_for_scan``).

    Predictions whose label is not evaluated are skipped, as are those below ``cfg.min_region_size`` vertices;
    ground-truth instances are every id >= 1000 of an evaluated class (size filtering happens in
    :func:`evaluate_matches`, as in the script)."""
    gt = np.asarray(gt_ids).astype(np.int64).reshape(-1)
    n = gt.shape[0]
    cls_index = {int(c): k for k, c in enumerate(cfg.class_ids)}
    ids = np.unique(gt)
    ids = ids[(ids >= 1000) & np.isin(ids // 1000, np.asarray(cfg.class_ids, dtype=np.int64))]
    out = SceneMatches(gt=[[] for _ in cfg.class_ids], preds=[[] for _ in cfg.class_ids])
    # dense index of every counted gt id, so one bincount gives a prediction's intersections with all of them
    pos = np.full(n, -1, np.int64)
    entries = []  # (class index, position in its list)
    for j, gid in enumerate(ids.tolist()):
        k = cls_index[gid // 1000]
        sel = gt == gid
        pos[sel] = j
        entries.append((k, len(out.gt[k])))
        out.gt[k].append({"id": int(gid), "count": int(sel.sum()), "preds": []})
    void = ~np.isin(gt // 1000, np.asarray(cfg.class_ids, dtype=np.int64))
    for i, p in enumerate(preds):
        k = cls_index.get(int(p.label_id))
        if k is None:
            continue
        m = as_mask(p.mask, n, f"prediction {i}")
        cnt = int(m.sum())
        if cnt < cfg.min_region_size:
            continue
        hits = np.bincount(pos[m & (pos >= 0)], minlength=len(ids))
        gts = []
        for j in np.nonzero(hits)[0].tolist():
            kj, q = entries[j]
            if kj != k:
                continue
            inter = int(hits[j])
            gts.append((q, inter))
            out.gt[k][q]["preds"].append((i, inter))
        out.preds[k].append({"index": i, "count": cnt, "score": float(p.score), "void": int((m & void).sum()),
                             "gts": gts})
    return out


def average_precision(y_true: np.ndarray, y_score: np.ndarray, hard_false_negatives: int) -> float:
    """The script's precision-recall integration (see the module docstring); 0 when there is no true positive."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.size == 0 or y_true.sum() == 0:
        return 0.0
    order = np.argsort(y_score, kind="stable")
    s, t = y_score[order], y_true[order]
    cum = np.concatenate([[0.0], np.cumsum(t)])  # cum[i] = true positives among the i lowest scores
    _, first = np.unique(s, return_index=True)
    total, n = cum[-1], s.size
    tp = total - cum[first]
    fp = n - first - tp
    fn = cum[first] + hard_false_negatives
    precision = np.append(tp / (tp + fp), 1.0)
    recall = np.append(tp / (tp + fn), 0.0)
    prev = np.concatenate([[recall[0]], recall[:-1]])
    nxt = np.append(recall[1:], 0.0)
    return float(np.dot(precision, 0.5 * (prev - nxt)))


def evaluate_matches(matches: Sequence[SceneMatches], cfg: InstanceEvalConfig = InstanceEvalConfig()) -> np.ndarray:
    """AP float64 [classes, overlaps] over scenes (NaN where a class has no counted ground truth anywhere)."""
    ap = np.full((len(cfg.class_ids), len(cfg.overlaps)), np.nan)
    for oi, th in enumerate(cfg.overlaps):
        for k in range(len(cfg.class_ids)):
            trues: list[float] = []
            scores: list[float] = []
            hard_fn = 0
            has_gt = has_pred = False
            for sm in matches:
                gts = sm.gt[k]
                preds = sm.preds[k]
                counted = [g for g in gts if g["count"] >= cfg.min_region_size]
                has_gt |= bool(counted)
                has_pred |= bool(preds)
                by_index = {p["index"]: p for p in preds}
                used: set[int] = set()
                for g in counted:
                    best: Optional[float] = None
                    for i, inter in g["preds"]:
                        if i in used:
                            continue
                        iou = inter / (g["count"] + by_index[i]["count"] - inter)
                        if iou > th:
                            conf = by_index[i]["score"]
                            if best is None:
                                best = conf
                                used.add(i)
                            else:  # a second match: the lower score is a false positive
                                trues.append(0.0)
                                scores.append(min(best, conf))
                                best = max(best, conf)
                    if best is None:
                        hard_fn += 1
                    else:
                        trues.append(1.0)
                        scores.append(best)
                for p in preds:
                    if any(inter / (gts[q]["count"] + p["count"] - inter) > th for q, inter in p["gts"]):
                        continue
                    ignored = p["void"] + sum(inter for q, inter in p["gts"]
                                              if gts[q]["count"] < cfg.min_region_size)
                    if ignored / p["count"] <= th:
                        trues.append(0.0)
                        scores.append(p["score"])
            if has_gt and has_pred:
                ap[k, oi] = average_precision(np.array(trues), np.array(scores), hard_fn)
            elif has_gt:
                ap[k, oi] = 0.0
    return ap


def summarize_ap(ap: np.ndarray, cfg: InstanceEvalConfig = InstanceEvalConfig()) -> dict:
    """``{"ap", "ap50", "ap25", "classes": {name: {"ap", "ap50", "ap25"}}}`` (fractions; NaN-free means over the
    classes that have ground truth; a class without any is ``None``)."""
    ov = np.asarray(cfg.overlaps)
    o50 = np.isclose(ov, 0.5)
    o25 = np.isclose(ov, 0.25)
    rest = ~o25

    def nanmean(a):
        a = np.asarray(a, dtype=np.float64)
        return float(np.nanmean(a)) if np.isfinite(a).any() else None

    out = {"ap": nanmean(ap[:, rest]), "ap50": nanmean(ap[:, o50]), "ap25": nanmean(ap[:, o25]), "classes": {}}
    for k, name in enumerate(cfg.class_names):
        row = ap[k]
        out["classes"][name] = {"ap": None if np.isnan(row[rest]).all() else float(np.mean(row[rest])),
                                "ap50": None if np.isnan(row[o50]).all() else float(row[o50][0]),
                                "ap25": None if np.isnan(row[o25]).all() else float(row[o25][0])}
    return out


def evaluate_instances(scenes: Iterable[tuple[np.ndarray, Sequence[InstancePrediction]]],
                       cfg: InstanceEvalConfig = InstanceEvalConfig()) -> dict:
    """AP / AP50 / AP25 (and per class) of predictions over scenes: ``scenes`` yields ``(gt_ids, predictions)`` with
    ``gt_ids`` as :func:`gt_instance_ids` returns. The result also holds ``"ap_matrix"`` ([classes][overlaps],
    ``None`` for NaN) and ``"overlaps"``."""
    matches = [match_scene(g, p, cfg) for g, p in scenes]
    if not matches:
        raise SASInputError(None, "no scenes to evaluate")
    ap = evaluate_matches(matches, cfg)
    out = summarize_ap(ap, cfg)
    out["overlaps"] = [round(o, 4) for o in cfg.overlaps]
    out["ap_matrix"] = [[None if np.isnan(v) else float(v) for v in row] for row in ap]
    out["num_scenes"] = len(matches)
    return out
