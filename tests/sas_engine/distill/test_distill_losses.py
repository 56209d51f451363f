"""Distillation losses against hand-computed values."""
import torch
import torch.nn.functional as F

from sas_engine.distill.losses import (compact_ids, ema_update, pseudo_labels, segment_mean, stage1_loss,
                                       stage2_loss)


def test_segment_mean_and_weights():
    x = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0]])
    seg = torch.tensor([0, 0, 2, 2])
    m = segment_mean(x, seg, 3)
    assert torch.allclose(m, torch.tensor([[2.0, 1.0], [0.0, 0.0], [6.0, 5.0]]))
    w = torch.tensor([True, False, True, True])
    assert torch.allclose(segment_mean(x, seg, 3, w)[0], torch.tensor([1.0, 0.0]))


def test_compact_ids():
    ids, n = compact_ids(torch.tensor([10, 3, 10, 7]))
    assert n == 3 and ids.tolist() == [2, 0, 2, 1]


def test_stage1_point_loss_is_openscene_cosine():
    f3d = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    tgt = torch.tensor([[1.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    valid = torch.tensor([True, True, False])
    loss, parts = stage1_loss(f3d, tgt, valid, torch.arange(3), use_superpoint=False)
    # point 0: cos 1 -> 0; point 1: cos 0 -> 1; point 2 invalid
    assert abs(loss.item() - 0.5) < 1e-6


def test_stage1_superpoint_loss_hand_computed():
    # two superpoints: {0,1} with targets (1,0) and (0,1) -> mean (0.5,0.5); {2} with an invalid target only
    f3d = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    tgt = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    valid = torch.tensor([True, True, False])
    seg = torch.tensor([5, 5, 9])
    loss, parts = stage1_loss(f3d, tgt, valid, seg, use_superpoint=True)
    c = 1 - 1 / 2 ** 0.5  # 1 - cos((1,0), (0.5,0.5))
    assert abs(parts["loss_point"] - c) < 1e-6  # both counted points have the same target and feature
    assert abs(parts["loss_superpoint"] - c) < 1e-6  # superpoint mean (1,0) vs (0.5,0.5)
    loss.backward()
    assert f3d.grad[2].abs().sum() == 0  # superpoint without target contributes nothing


def test_stage2_pseudo_labels_and_ce():
    text = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    hist = torch.tensor([[0.9, 0.1], [0.8, 0.3], [0.1, 0.9]])
    seg = torch.tensor([0, 0, 1])
    p, sp = pseudo_labels(hist, seg, text)
    assert p.tolist() == [0, 0, 1] and sp.tolist() == [0, 1]
    f3d = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    loss, parts = stage2_loss(f3d, seg, text, hist, temperature=0.1)
    ce = F.cross_entropy(torch.tensor([[10.0, 0.0]]), torch.tensor([0])).item()
    assert abs(parts["loss_ce_point"] - ce) < 1e-5 and abs(parts["loss_ce_superpoint"] - ce) < 1e-5


def test_ema_update():
    h = torch.zeros(2, 2, dtype=torch.float16)
    out = ema_update(h, torch.ones(2, 2), 0.75)
    assert out.dtype == torch.float16 and torch.allclose(out.float(), torch.full((2, 2), 0.25))
