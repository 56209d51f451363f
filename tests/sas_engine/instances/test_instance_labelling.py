"""Labelling: mask pooling by hand, labels from features that are the true classes' text embeddings, benchmark
predictions, stored artefacts with their geometry check, and the find_instances JSON schema."""
import json

import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.instances.labelling import (LabelConfig, QueryConfig, answer_line, benchmark_ids,
                                            benchmark_predictions, class_probabilities, ensure_labelled,
                                            find_instances, instance_record, label_proposals, load_point_features,
                                            pool_features)
from sas_engine.instances.pipeline import ensure_proposals, evaluate_instance_sources, scene_gt
from sas_engine.instances.proposals import Proposals


def test_pool_features_by_hand():
    f = torch.tensor([[3.0, 0], [0, 2], [1, 1], [5, 5]])
    props = Proposals.from_lists([[0, 1], [2, 3], [0, 3]], 4)
    mask = torch.tensor([True, True, True, False])
    pooled, cov = pool_features(props, f, mask)
    s = 2 ** -0.5
    np.testing.assert_allclose(pooled, [[s, s], [s, s], [1, 0]], atol=1e-6)
    np.testing.assert_allclose(cov, [1, 0.5, 0.5])
    with pytest.raises(SASInputError, match="rows"):
        pool_features(props, f[:3])


def test_probabilities_labels_and_benchmark_predictions():
    text = torch.eye(3)
    names = ["wall", "chair", "table"]
    f = torch.tensor([[0, 1.0, 0], [0, 0.9, 0.1], [1, 0, 0], [0, 0, 1]])
    props = Proposals.from_lists([np.arange(0, 150), np.arange(150, 300), np.arange(300, 450)], 450)
    feats = torch.cat([f[0].expand(150, 3), f[2].expand(150, 3), f[3].expand(150, 3)])
    p = class_probabilities(f[:1].numpy(), text, 10.0)
    np.testing.assert_allclose(p, [np.exp([0, 10, 0]) / np.exp([0, 10, 0]).sum()], rtol=1e-5)
    lab = label_proposals(props, feats, None, text, names, LabelConfig(scale=10, top_k=1))
    assert lab["labels"].tolist() == [1, 0, 2]
    np.testing.assert_array_equal(benchmark_ids(names), [1, 5, 7])
    preds = benchmark_predictions(props, lab, LabelConfig(top_k=1))
    # the wall proposal is no instance; chair and table are, scored with their probability
    assert [(q.label_id, round(q.score, 4)) for q in preds] == [(5, round(float(lab["scores"][0]), 4)),
                                                                 (7, round(float(lab["scores"][2]), 4))]
    two = benchmark_predictions(props, lab, LabelConfig(top_k=2))
    assert [q.label_id for q in two] == [5, 7, 7, 5]  # second choices among instance classes only
    forced = benchmark_predictions(props, lab, LabelConfig(top_k=1, instance_only=True))
    assert len(forced) == 3
    # a proposal with too few featured points is not labelled
    low = label_proposals(props, feats, torch.arange(450) >= 200, text, names, LabelConfig(min_coverage=0.5))
    assert low["labels"][0] == -1 and low["scores"][0] == 0


def test_true_class_features_give_high_ap(tiny_store, class_feature_artefact):
    """Features equal to each point's true class embedding: the labelled proposals score above the student's."""
    store, scenes = tiny_store
    for s in scenes:
        class_feature_artefact(store, s, "pred3d.oracle")
    res = evaluate_instance_sources(scenes, store, ["pred3d.oracle", "pred3d.student"], progress=False)
    o, st = res["sources"]["pred3d.oracle"], res["sources"]["pred3d.student"]
    assert o["ap50"] >= 0.4 and o["ap50"] > st["ap50"]  # measured 0.44 (the proposals bound it) vs 0.34
    assert res["scenes"] == [s.scene_id for s in scenes] and o["missing_scenes"] == []
    with pytest.raises(SASInputError, match="missing"):
        evaluate_instance_sources(scenes[:1], store, ["pred3d.absent"], progress=False)
    skipped = evaluate_instance_sources(scenes[:1], store, ["pred3d.absent"], on_missing="skip", progress=False)
    assert skipped["sources"]["pred3d.absent"]["missing_scenes"] == [scenes[0].scene_id]


def test_labels_are_stored_and_refuse_other_points(tiny_store, class_feature_artefact):
    store, scenes = tiny_store
    s = scenes[0]
    class_feature_artefact(store, s, "pred3d.oracle")
    pp = ensure_proposals(store, s)
    lab = ensure_labelled(store, s, "pred3d.oracle", pp)
    h = store.header(s.scene_id, "instances.pred3d.oracle")
    assert h["kind"] == "instance_labels" and h["geometry"] == s.geometry_digest
    assert h["inputs"]["proposals"] == pp["__header__"]["hash"]
    assert lab["probs"].shape == (len(Proposals.from_payload(pp)), 20)
    # a features artefact of other points is refused, naming the file
    store.save(s.scene_id, "pred3d.other", {"features": torch.zeros(s.num_points, 384)}, kind="pred3d",
               config={}, inputs={}, geometry=f"{s.num_points}:0000000000000000")
    with pytest.raises(SASInputError, match="pred3d.other.pt: computed on points"):
        load_point_features(store, s, "pred3d.other")
    with pytest.raises(SASInputError, match="pred3d.nothing.pt: missing artefact .*`sas infer` for pred3d"):
        load_point_features(store, s, "pred3d.nothing")


def test_find_instances_schema_and_counts(tiny_store, tmp_path, class_feature_artefact):
    """Ground-truth instances as the proposals (through a benchmark-format masks file) and true-class features:
    "chair" returns exactly the room's chairs, with boxes around their points; an absent class returns none."""
    from sas_engine.instances.adapters import write_submission
    from sas_engine.instances.metrics import InstancePrediction
    from sas_engine.store import ArtefactStore

    _, scenes = tiny_store
    s = scenes[0]
    store = ArtefactStore(tmp_path / "store")
    class_feature_artefact(store, s, "pred3d.oracle")
    gt = scene_gt(s)
    ids = [i for i in np.unique(gt) if i >= 1000]
    txt = write_submission(tmp_path / "masks", s.scene_id, [InstancePrediction(gt == i, int(i // 1000), 1.0)
                                                            for i in ids], s.num_points)
    ans = find_instances(s, "chair", store=store, features="pred3d.oracle", masks_file=txt)
    json.dumps(ans)  # JSON-able
    assert set(ans) == {"scene", "query", "features", "label_set", "resolved", "count", "answer", "frame",
                        "instances"}
    chairs = [i for i in ids if i // 1000 == 5 and (gt == i).sum() >= 100]
    assert ans["resolved"] == "chair" and ans["count"] == len(ans["instances"]) == len(chairs) >= 1
    for r, inst in enumerate(ans["instances"], 1):
        assert inst["rank"] == r and inst["label"] == "chair" and 0.3 <= inst["score"] <= 1
        idx = np.array(inst["point_indices"])
        assert inst["num_points"] == idx.size and (gt[idx] // 1000 == 5).all()
        p = s.points[idx]
        np.testing.assert_allclose(inst["bbox_min"], p.min(0), atol=1e-4)
        np.testing.assert_allclose(inst["extent"], p.max(0) - p.min(0), atol=2e-4)
        np.testing.assert_allclose(inst["centroid"], p.mean(0), atol=1e-4)
    assert ans["answer"] == answer_line("chair", ans["count"])
    scores = [i["score"] for i in ans["instances"]]
    assert scores == sorted(scores, reverse=True)
    none = find_instances(s, "toilet", store=store, features="pred3d.oracle", include_points=False, masks_file=txt)
    assert none["count"] == 0 and none["answer"] == "No 'toilet' found here"
    with pytest.raises(SASInputError, match="empty"):
        find_instances(s, "   ", store=store, features="pred3d.oracle", masks_file=txt)
    strict = find_instances(s, "chair", store=store, features="pred3d.oracle", cfg=QueryConfig(min_score=1.01),
                            masks_file=txt)
    assert strict["count"] == 0


def test_find_instances_on_computed_proposals(tiny_store):
    """The default route: computed proposals, the student's features; answers are ranked, JSON-able, non-overlapping."""
    store, scenes = tiny_store
    s = scenes[0]
    ans = find_instances(s, "chair", store=store, include_points=True)
    json.dumps(ans)
    sets = [set(i["point_indices"]) for i in ans["instances"]]
    for a in range(len(sets)):
        for b in range(a + 1, len(sets)):
            assert len(sets[a] & sets[b]) <= 0.5 * min(len(sets[a]), len(sets[b]))


def test_instance_record():
    pts = np.array([[0, 0, 0], [2, 1, 0], [1, 1, 4]], np.float32)
    r = instance_record(pts, np.array([0, 1, 2]))
    assert r == {"num_points": 3, "centroid": [1.0, 0.6667, 1.3333], "bbox_min": [0.0, 0.0, 0.0],
                 "bbox_max": [2.0, 1.0, 4.0], "extent": [2.0, 1.0, 4.0], "point_indices": [0, 1, 2]}
    assert "point_indices" not in instance_record(pts, np.array([0]), include_points=False)
