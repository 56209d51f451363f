"""Distillation losses against hand-computed values."""
import torch
import torch.nn.functional as F

from sas_engine.distill.losses import (compact_ids, confident_mask, ema_update, pseudo_labels, segment_mean,
                                       stage1_loss, stage2_loss)


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
    p, sp, mp, msp = pseudo_labels(hist, seg, text)
    assert p.tolist() == [0, 0, 1] and sp.tolist() == [0, 1]
    assert mp.all() and msp.all()  # keep = 1 counts every pseudo label (the paper's loss)
    f3d = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    loss, parts = stage2_loss(f3d, seg, text, hist, temperature=0.1)
    ce = F.cross_entropy(torch.tensor([[10.0, 0.0]]), torch.tensor([0])).item()
    assert abs(parts["loss_ce_point"] - ce) < 1e-5 and abs(parts["loss_ce_superpoint"] - ce) < 1e-5


def test_confident_mask_keeps_the_most_certain_rows_of_each_class():
    # class 0: margins 0.8, 0.1, 0.5, 0.3; class 1 (rare): one row with a small margin that must survive
    scores = torch.tensor([[0.9, 0.1], [0.55, 0.45], [0.75, 0.25], [0.65, 0.35], [0.48, 0.52]])
    labels = scores.argmax(1)
    assert confident_mask(scores, labels, 1.0).all()
    assert confident_mask(scores, labels, 0.5).tolist() == [True, False, True, False, True]
    assert confident_mask(scores, labels, 0.25).tolist() == [True, False, False, False, True]


def test_stage2_loss_counts_only_kept_pseudo_labels():
    text = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    hist = torch.tensor([[0.9, 0.1], [0.6, 0.5], [0.1, 0.9], [0.3, 0.4]])
    seg = torch.tensor([0, 1, 2, 3])
    f3d = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], requires_grad=True)
    loss, parts = stage2_loss(f3d, seg, text, hist, temperature=0.1, keep=0.5)
    ce_right = F.cross_entropy(torch.tensor([[10.0, 0.0]]), torch.tensor([0])).item()
    # rows 1 and 3 (small margins, wrong features) are dropped: only the two confident, correct rows count
    assert abs(parts["loss_ce_point"] - ce_right) < 1e-5 and abs(parts["loss_ce_superpoint"] - ce_right) < 1e-5
    loss.backward()
    assert f3d.grad[1].abs().sum() == 0 and f3d.grad[3].abs().sum() == 0
    assert f3d.grad[0].abs().sum() > 0
    _, full = stage2_loss(f3d, seg, text, hist, temperature=0.1, keep=1.0)
    assert full["loss_ce_point"] > parts["loss_ce_point"] + 1.0


def test_ema_update():
    h = torch.zeros(2, 2, dtype=torch.float16)
    out = ema_update(h, torch.ones(2, 2), 0.75)
    assert out.dtype == torch.float16 and torch.allclose(out.float(), torch.full((2, 2), 0.25))


def test_stage2_soft_targets_teach_the_history_distribution():
    torch.manual_seed(0)
    text = F.normalize(torch.randn(4, 6), dim=1)
    hist = torch.randn(30, 6)
    seg = torch.randint(0, 5, (30,))
    f3d = torch.randn(30, 6, requires_grad=True)
    # a student pointing where the history points has nothing left to learn, whatever the norms
    same, _ = stage2_loss(hist * 3.0, seg, text, hist, temperature=0.1, soft_temperature=0.1)
    assert abs(same.item()) < 1e-5
    # with a near-zero target temperature the target is the history's argmax: the hard loss counting every label
    sharp, parts = stage2_loss(f3d, seg, text, hist, temperature=0.1, soft_temperature=1e-4)
    hard, hparts = stage2_loss(f3d, seg, text, hist, temperature=0.1, keep=1.0)
    assert abs(parts["loss_ce_point"] - hparts["loss_ce_point"]) < 1e-4
    assert abs(parts["loss_ce_superpoint"] - hparts["loss_ce_superpoint"]) < 1e-4
    # soft targets carry the history's uncertainty: a flatter target costs the (peaked) wrong student less
    soft, _ = stage2_loss(f3d, seg, text, hist, temperature=0.1, soft_temperature=0.1)
    assert 0 < soft.item() < sharp.item()
    soft.backward()
    assert f3d.grad.abs().sum() > 0
