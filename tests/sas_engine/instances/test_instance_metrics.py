"""The ScanNet instance benchmark protocol: hand-computed cases and a literal re-statement of the official script.

The reference below (:func:`_reference_ap`) restates, in its own words and loop by loop, ScanNet's
``BenchmarkScripts/3d_evaluation/evaluate_semantic_instance.py`` and ``BenchmarkScripts/util_3d.py`` as read at
ScanNet/ScanNet commit a3c66b48f6c6c8d64e8b2b25b4f0ae2ffc75252d (2018-11-21, the last change of the evaluation
script; repository HEAD 3830fce7 of 2025-11-03): dict-of-lists matching, per-overlap "visited" flags, the
duplicate/false-positive rules and the ``np.convolve`` precision-recall integration. Its one deliberate difference:
where the script would index an empty score array (every prediction ignored, nothing matched) it returns 0.
"""
from copy import deepcopy

import numpy as np
import pytest

from sas_engine.errors import SASInputError
from sas_engine.instances.metrics import (INSTANCE_CLASS_IDS, INSTANCE_CLASSES, OVERLAPS, InstancePrediction,
                                          average_precision, evaluate_instances, gt_instance_ids)

CHAIR, TABLE, WALL = 5, 7, 1  # NYU40 ids


def _gt(n, *instances):
    """gt ids [n]: each (label_id, instance, start, stop) fills a range."""
    g = np.zeros(n, np.int64)
    for lab, inst, a, b in instances:
        g[a:b] = lab * 1000 + inst + 1 if inst >= 0 else lab
    return g


def _mask(n, *ranges):
    m = np.zeros(n, bool)
    for a, b in ranges:
        m[a:b] = True
    return m


def _cls(res, name):
    return res["classes"][name]


def test_constants_are_the_benchmarks():
    assert len(INSTANCE_CLASSES) == 18 and "wall" not in INSTANCE_CLASSES and "floor" not in INSTANCE_CLASSES
    assert INSTANCE_CLASS_IDS == (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
    np.testing.assert_allclose(OVERLAPS, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.25])


def test_gt_ids_from_labels_and_instances():
    labels = np.array([4, 4, 0, 255, 6, 4])  # ScanNet-20 indices: chair, chair, wall, ignore, table, chair
    inst = np.array([3, 3, 0, 1, 7, -1])
    np.testing.assert_array_equal(gt_instance_ids(labels, inst), [5004, 5004, 1001, 0, 7008, 5])
    with pytest.raises(SASInputError):
        gt_instance_ids(np.zeros(3), np.zeros(4))


def test_perfect_prediction_scores_one():
    n = 1000
    g = _gt(n, (CHAIR, 0, 0, 200), (WALL, 0, 200, 1000))
    res = evaluate_instances([(g, [InstancePrediction(_mask(n, (0, 200)), CHAIR, 0.9)])])
    assert res["ap"] == pytest.approx(1.0) and res["ap50"] == 1.0 and res["ap25"] == 1.0
    assert _cls(res, "table")["ap"] is None  # no ground truth: left out of the means


def test_iou_thresholds_are_strict_and_ap_averages_nine_overlaps():
    n = 1000
    g = _gt(n, (CHAIR, 0, 0, 200), (WALL, 0, 200, 1000))
    # 160 of the chair + 40 wall vertices: IoU 160 / 240 = 0.667 -> a hit at 0.50-0.65 (4 of 9 overlaps) and 0.25
    p = InstancePrediction(_mask(n, (40, 240)), CHAIR, 0.8)
    res = evaluate_instances([(g, [p])])
    assert res["ap"] == pytest.approx(4 / 9)
    assert res["ap50"] == 1.0 and res["ap25"] == 1.0


def test_precision_recall_integration_by_hand():
    n = 1000
    g = _gt(n, (CHAIR, 0, 0, 200), (CHAIR, 1, 200, 400), (TABLE, 0, 400, 600))
    preds = [InstancePrediction(_mask(n, (0, 200)), CHAIR, 0.9),
             InstancePrediction(_mask(n, (450, 600)), CHAIR, 0.8),  # chair label on the table: a false positive
             InstancePrediction(_mask(n, (200, 400)), CHAIR, 0.7)]
    res = evaluate_instances([(g, preds)])
    # ascending scores 0.7 (TP), 0.8 (FP), 0.9 (TP): points (p, r) = (2/3, 1), (1/2, 1/2), (1, 1/2), then (1, 0);
    # step widths (r_prev - r_next) / 2 = 1/4 each -> AP = (2/3 + 1/2 + 1 + 1) / 4 = 19/24
    assert _cls(res, "chair")["ap50"] == pytest.approx(19 / 24)
    assert _cls(res, "chair")["ap"] == pytest.approx(19 / 24)
    assert _cls(res, "table")["ap50"] == 0.0  # ground truth but no table prediction
    assert res["ap50"] == pytest.approx(19 / 48)
    assert average_precision(np.array([1.0, 0.0, 1.0]), np.array([0.9, 0.8, 0.7]), 0) == pytest.approx(19 / 24)


def test_duplicates_void_small_instances_and_min_size():
    n = 2000
    g = _gt(n, (CHAIR, 0, 0, 200), (WALL, 0, 200, 1000), (CHAIR, 1, 1000, 1050), (TABLE, 0, 1100, 1300))
    # the exact chair twice: the lower score is a false positive, which this integration does not penalise
    dup = [InstancePrediction(_mask(n, (0, 200)), CHAIR, 0.9), InstancePrediction(_mask(n, (0, 200)), CHAIR, 0.6)]
    assert _cls(evaluate_instances([(g, dup)]), "chair")["ap"] == pytest.approx(1.0)
    # a prediction 62% on the wall (void) is ignored at overlaps below 0.62 and a false positive above (and at 0.25
    # it is ignored again); with the exact chair at a lower score: AP 1 where ignored, 1/4 where counted
    onwall = InstancePrediction(_mask(n, (300, 424), (1100, 1176)), CHAIR, 0.95)  # 76 on the table
    res = evaluate_instances([(g, [onwall, InstancePrediction(_mask(n, (0, 200)), CHAIR, 0.5)])])
    row = dict(zip(OVERLAPS, res["ap_matrix"][INSTANCE_CLASSES.index("chair")]))
    assert [row[o] for o in OVERLAPS[:3]] == [1.0, 1.0, 1.0]
    assert row[OVERLAPS[3]] == pytest.approx(0.25) and row[0.25] == 1.0
    # the 50-vertex chair is not counted: predicting it exactly is neither a hit nor a false positive, and a class
    # whose only instance is that small has no AP at all
    small = InstancePrediction(_mask(n, (1000, 1050), (1400, 1460)), CHAIR, 0.99)  # 50 on it + 60 unlabelled
    res = evaluate_instances([(g, [small, InstancePrediction(_mask(n, (0, 200)), CHAIR, 0.5)])])
    assert _cls(res, "chair")["ap"] == pytest.approx(1.0)
    g2 = _gt(n, (CHAIR, 0, 0, 50), (TABLE, 0, 100, 300))
    assert _cls(evaluate_instances([(g2, [small])]), "chair")["ap"] is None
    # predictions below 100 vertices are dropped, however well they fit
    g3 = _gt(n, (CHAIR, 0, 0, 120))
    assert evaluate_instances([(g3, [InstancePrediction(_mask(n, (0, 99)), CHAIR, 1.0)])])["ap25"] == 0.0
    assert evaluate_instances([(g3, [InstancePrediction(_mask(n, (0, 100)), CHAIR, 1.0)])])["ap50"] == 1.0


def test_index_masks_and_bad_masks():
    n = 500
    g = _gt(n, (CHAIR, 0, 0, 200))
    res = evaluate_instances([(g, [InstancePrediction(np.arange(0, 200), CHAIR, 0.5)])])
    assert res["ap"] == pytest.approx(1.0)
    with pytest.raises(SASInputError, match="outside"):
        evaluate_instances([(g, [InstancePrediction(np.array([0, 600]), CHAIR, 0.5)])])
    with pytest.raises(SASInputError, match="entries"):
        evaluate_instances([(g, [InstancePrediction(np.ones(10, bool), CHAIR, 0.5)])])


# -- the reference: the official script restated ------------------------------------------------------------------
def _ref_assign(gt_ids, preds):
    """assign_instances_for_scan: gt2pred / pred2gt dicts keyed by class name."""
    valid = np.array(INSTANCE_CLASS_IDS)
    id2label = dict(zip(INSTANCE_CLASS_IDS, INSTANCE_CLASSES))
    gt2pred = {name: [] for name in INSTANCE_CLASSES}
    for i in np.unique(gt_ids):
        if i == 0:
            continue
        lab = int(i // 1000)
        if lab in valid:
            gt2pred[id2label[lab]].append({"instance_id": int(i), "label_id": lab,
                                           "vert_count": int((gt_ids == i).sum()), "matched_pred": []})
    pred2gt = {name: [] for name in INSTANCE_CLASSES}
    void = np.logical_not(np.isin(gt_ids // 1000, valid))
    for k, p in enumerate(preds):
        if p.label_id not in id2label:
            continue
        name = id2label[p.label_id]
        mask = np.not_equal(p.mask, 0)
        num = np.count_nonzero(mask)
        if num < 100:
            continue
        pi = {"filename": f"pred_{k}", "vert_count": num, "confidence": p.score,
              "void_intersection": np.count_nonzero(np.logical_and(void, mask))}
        matched = []
        for gi, g in enumerate(gt2pred[name]):
            inter = np.count_nonzero(np.logical_and(gt_ids == g["instance_id"], mask))
            if inter > 0:
                gc = dict(g)
                pc = dict(pi)
                gc["intersection"] = inter
                pc["intersection"] = inter
                matched.append(gc)
                gt2pred[name][gi]["matched_pred"].append(pc)
        pi["matched_gt"] = matched
        pred2gt[name].append(pi)
    return gt2pred, pred2gt


def _reference_ap(scenes):
    matches = {}
    for s, (gt_ids, preds) in enumerate(scenes):
        g2p, p2g = _ref_assign(gt_ids, preds)
        matches[s] = {"gt": g2p, "pred": p2g}
    ap = np.zeros((len(INSTANCE_CLASSES), len(OVERLAPS)))
    for oi, th in enumerate(np.append(np.arange(0.5, 0.95, 0.05), 0.25)):
        visited = {}
        for m in matches:
            for name in INSTANCE_CLASSES:
                for p in matches[m]["pred"][name]:
                    visited[p["filename"] + f"@{m}"] = False
        for li, name in enumerate(INSTANCE_CLASSES):
            y_true, y_score = np.empty(0), np.empty(0)
            hard_fn = 0
            has_gt = has_pred = False
            for m in matches:
                preds = matches[m]["pred"][name]
                gts = [g for g in matches[m]["gt"][name] if g["instance_id"] >= 1000 and g["vert_count"] >= 100]
                has_gt = has_gt or bool(gts)
                has_pred = has_pred or bool(preds)
                cur_true = np.ones(len(gts))
                cur_score = np.ones(len(gts)) * -np.inf
                cur_match = np.zeros(len(gts), dtype=bool)
                for gi, g in enumerate(gts):
                    found = False
                    for p in g["matched_pred"]:
                        key = p["filename"] + f"@{m}"
                        if visited[key]:
                            continue
                        ov = float(p["intersection"]) / (g["vert_count"] + p["vert_count"] - p["intersection"])
                        if ov > th:
                            if cur_match[gi]:
                                hi, lo = max(cur_score[gi], p["confidence"]), min(cur_score[gi], p["confidence"])
                                cur_score[gi] = hi
                                cur_true = np.append(cur_true, 0)
                                cur_score = np.append(cur_score, lo)
                                cur_match = np.append(cur_match, True)
                            else:
                                found = True
                                cur_match[gi] = True
                                cur_score[gi] = p["confidence"]
                                visited[key] = True
                    if not found:
                        hard_fn += 1
                cur_true, cur_score = cur_true[cur_match], cur_score[cur_match]
                for p in preds:
                    if any(float(g["intersection"]) / (g["vert_count"] + p["vert_count"] - g["intersection"]) > th
                           for g in p["matched_gt"]):
                        continue
                    ign = p["void_intersection"] + sum(g["intersection"] for g in p["matched_gt"]
                                                       if g["instance_id"] < 1000 or g["vert_count"] < 100)
                    if float(ign) / p["vert_count"] <= th:
                        cur_true = np.append(cur_true, 0)
                        cur_score = np.append(cur_score, p["confidence"])
                y_true, y_score = np.append(y_true, cur_true), np.append(y_score, cur_score)
            if has_gt and has_pred:
                if y_score.size == 0:
                    ap[li, oi] = 0.0  # the script would crash here
                    continue
                order = np.argsort(y_score)
                ys, yt = y_score[order], y_true[order]
                cs = np.cumsum(yt)
                _, uniq = np.unique(ys, return_index=True)
                prec, rec = np.zeros(len(uniq) + 1), np.zeros(len(uniq) + 1)
                total, num = cs[-1], len(ys)
                cs = np.append(cs, 0)
                for r, idx in enumerate(uniq):
                    c = cs[idx - 1]
                    tp = total - c
                    fp = num - idx - tp
                    fn = c + hard_fn
                    prec[r] = float(tp) / (tp + fp)
                    rec[r] = float(tp) / (tp + fn) if tp + fn > 0 else 0.0
                prec[-1], rec[-1] = 1.0, 0.0
                rc = np.append(np.append(rec[0], rec), 0.0)
                ap[li, oi] = np.dot(prec, np.convolve(rc, [-0.5, 0, 0.5], "valid"))
            elif has_gt:
                ap[li, oi] = 0.0
            else:
                ap[li, oi] = np.nan
    return ap


def _random_case(rng, n_scenes=3, n=3000):
    scenes = []
    classes = [CHAIR, TABLE, 3, 39, 24]  # a few instance classes; walls (1) and floor (2) are void
    for _ in range(n_scenes):
        cuts = np.sort(rng.choice(np.arange(50, n - 50), size=rng.integers(6, 14), replace=False))
        bounds = np.concatenate([[0], cuts, [n]])
        g = np.zeros(n, np.int64)
        segs = []
        for j in range(len(bounds) - 1):
            a, b = int(bounds[j]), int(bounds[j + 1])
            kind = rng.random()
            if kind < 0.15:
                g[a:b] = 0
            elif kind < 0.3:
                g[a:b] = rng.choice([1, 2]) * 1000 + j + 1  # wall / floor instances: void
            elif kind < 0.38:
                g[a:b] = rng.choice(classes)  # a group without instance id
            else:
                g[a:b] = rng.choice(classes) * 1000 + j + 1
            segs.append((a, b))
        preds = []
        for _ in range(rng.integers(4, 16)):
            a, b = segs[rng.integers(len(segs))]
            a2 = int(np.clip(a + rng.integers(-80, 80), 0, n - 1))
            b2 = int(np.clip(b + rng.integers(-80, 80), a2 + 1, n))
            m = _mask(n, (a2, b2))
            if rng.random() < 0.3:  # merge with a neighbour segment
                c, d = segs[rng.integers(len(segs))]
                m[c:d] = True
            lab = int(rng.choice(classes + [WALL])) if rng.random() < 0.4 else int(g[(a + b) // 2] // 1000) or CHAIR
            score = float(np.round(rng.random(), 1))  # rounded: ties between scores happen
            preds.append(InstancePrediction(m, lab, score))
        scenes.append((g, preds))
    return scenes


@pytest.mark.parametrize("seed", range(12))
def test_equals_reference_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    scenes = _random_case(rng)
    ref = _reference_ap(deepcopy(scenes))
    got = np.array([[np.nan if v is None else v for v in row]
                    for row in evaluate_instances(scenes)["ap_matrix"]])
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12, equal_nan=True)
    assert np.isfinite(ref).any()
