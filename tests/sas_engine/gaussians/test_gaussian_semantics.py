"""Semantics on Gaussians: rendered labels = text argmax of rendered features, frame subsets, SAS fusion of lifted
features, the distilled encoder, and the end-to-end stages on a tiny room with one teacher."""
import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.gaussians import GaussianEncoderConfig, GaussianFitConfig
from sas_engine.gaussians.model import Gaussians
from sas_engine.gaussians.semantics import (MISSING, class_scores, distill_encoder, render_features, render_labels,
                                            subset_scene)


def _random_gaussians(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * torch.tensor([2.0, 1.5, 2.0]) + torch.tensor([-1.0, -0.75, 1.5])
    return Gaussians(means=means, quats=torch.randn(n, 4, generator=g),
                     log_scales=torch.log(torch.rand(n, 3, generator=g) * 0.1 + 0.02),
                     opacity_logits=torch.randn(n, generator=g), color_logits=torch.randn(n, 3, generator=g))


def test_rendered_labels_equal_the_text_argmax_of_rendered_features(camera):
    g = _random_gaussians()
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(len(g), 16, generator=gen)
    text = torch.nn.functional.normalize(torch.randn(5, 16, generator=gen), dim=1)
    cfg = GaussianFitConfig(width=camera.width, height=camera.height)
    lab = render_labels(g, class_scores(feats, None, text), camera, cfg)
    fmap = render_features(g, feats, camera, cfg)
    want = (torch.nn.functional.normalize(fmap, dim=-1) @ text.T).argmax(-1).numpy()
    covered = lab != MISSING
    assert covered.mean() > 0.5
    assert np.array_equal(lab[covered], want[covered])
    # Gaussians without a feature occlude but vote for nothing: masking all of them leaves no label
    none = render_labels(g, class_scores(feats, torch.zeros(len(g), dtype=torch.bool), text), camera, cfg)
    assert (none == MISSING).all()
    with pytest.raises(SASInputError, match="16-d"):
        class_scores(feats, None, torch.randn(5, 8))


def test_subset_scene_reads_only_its_frames(tiny_scene):
    from sas_engine.scene import frames_digest

    sub = subset_scene(tiny_scene, [0, 3, 7])
    assert len(sub.frames) == 3
    assert [f.frame_id for f in sub.frames] == [tiny_scene.frames[i].frame_id for i in (0, 3, 7)]
    assert frames_digest(sub.frames) != frames_digest(tiny_scene.frames)
    assert frames_digest(subset_scene(tiny_scene, [0, 3, 8]).frames) != frames_digest(sub.frames)
    assert np.allclose(sub.frames.poses[1], tiny_scene.frames[3].pose)


def test_encoder_fills_unseen_gaussians_from_their_neighbourhood():
    """Two clusters with orthogonal targets, a third of each cluster's Gaussians without a target: the distilled
    encoder gives the unseen ones their own cluster's feature."""
    rng = np.random.default_rng(0)
    n = 600
    a = rng.normal([0, 0, 0], 0.15, (n, 3))
    b = rng.normal([1.5, 0, 0], 0.15, (n, 3))
    means = torch.tensor(np.concatenate([a, b]), dtype=torch.float32)
    g = Gaussians(means=means, quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(2 * n, 1),
                  log_scales=torch.full((2 * n, 3), -3.0), opacity_logits=torch.zeros(2 * n),
                  color_logits=torch.zeros(2 * n, 3))
    target = torch.zeros(2 * n, 8)
    target[:n, 0] = 1.0
    target[n:, 1] = 1.0
    mask = torch.from_numpy(rng.random(2 * n) > 1 / 3)
    feats, stats = distill_encoder(g, target * mask[:, None], mask, GaussianEncoderConfig(steps=25, voxel=0.1))
    assert stats["loss_last"] < stats["loss_first"]
    unseen = ~mask
    pred = feats.float()[:, :2].argmax(1)
    truth = torch.cat([torch.zeros(n), torch.ones(n)]).long()
    assert (pred[unseen] == truth[unseen]).float().mean().item() > 0.9
    with pytest.raises(SASInputError, match="nothing to distil"):
        distill_encoder(g, target, torch.zeros(2 * n, dtype=torch.bool), GaussianEncoderConfig(steps=1))


def test_sas_fusion_of_lifted_features_follows_capability(tmp_path, tiny_scene):
    """Two teachers, each capable at one class: each Gaussian takes the feature of the teacher whose vote it is
    capable at (the points' fused.sas rule on Gaussians)."""
    from sas_engine.capability.table import CapabilityTable
    from sas_engine.gaussians.pipeline import ensure_lift_sas
    from sas_engine.labels import get_label_set
    from sas_engine.pipeline import PipelineConfig, vocabulary_text
    from sas_engine.store import ArtefactStore

    names = list(get_label_set("scannet20").names)
    cfg = PipelineConfig(teachers=("t_a", "t_b"))
    text = vocabulary_text("scannet20", cfg)
    k = len(names)
    scores = np.full((2, k), 0.1)
    scores[0, 4], scores[1, 6] = 0.9, 0.9  # t_a is good at chairs (4), t_b at tables (6); both poor at walls (0)
    table = CapabilityTable(scores=scores, teachers=["t_a", "t_b"], classes=names, mode="pooled")
    n = 10
    fa = text[[4] * 5 + [0] * 5].clone()  # t_a: chair on the first half, wall on the second
    fb = text[[0] * 5 + [6] * 5].clone()  # t_b: wall on the first half, table on the second
    store = ArtefactStore(tmp_path)
    lifts = [{"features": fa.half(), "mask": torch.ones(n, dtype=torch.bool), "__header__": {"hash": "a"}},
             {"features": fb.half(), "mask": torch.ones(n, dtype=torch.bool), "__header__": {"hash": "b"}}]
    out = ensure_lift_sas(store, tiny_scene, lifts, ["t_a", "t_b"], table, cfg)
    lab = (torch.nn.functional.normalize(out["features"].float(), dim=1) @ text.T).argmax(1)
    assert lab.tolist() == [4] * 5 + [6] * 5
    assert (out["weights"][:5, 0] > 0.9).all() and (out["weights"][5:, 1] > 0.9).all()
    assert out["weights"].shape == (n, 2)
    assert set(lab.tolist()) <= {4, 6}
    assert bool(out["mask"].all())
    again = ensure_lift_sas(store, tiny_scene, lifts, ["t_a", "t_b"], table, cfg, compute=False)
    assert torch.equal(again["features"], out["features"])
