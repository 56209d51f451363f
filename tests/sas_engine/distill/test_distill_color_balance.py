"""Colour input and class balancing of the student: the widened stem keeps the geometry-only function, the class
weights follow the targets' votes, and a colour student learns a split that geometry alone cannot see."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sas_engine.distill.data import DistillScene
from sas_engine.distill.infer import infer_points, load_student, uses_color
from sas_engine.distill.losses import class_balance_weights, cosine_loss, label_kd_loss, stage1_loss
from sas_engine.distill.trainer import DistillConfig, DistillTrainer, jitter_colors
from sas_engine.errors import SASInputError
from sas_engine.models.checkpoint import load_mink_checkpoint, widen_stem_for_color
from sas_engine.models.mink_unet import build_model
from sas_engine.store import ArtefactStore

C = 8


def _text(k=2):
    return F.normalize(torch.randn(k, C, generator=torch.Generator().manual_seed(1)), dim=1)


def _checker_floor(i: int, text) -> DistillScene:
    """A flat 1.6 m floor, 4 cm sampling, painted in a 0.4 m checkerboard of red (class 1) and blue (class 0)
    squares: the geometry is the same everywhere, only the colour tells the classes apart."""
    g = np.arange(0, 1.6, 0.04)
    pts = np.stack(np.meshgrid(g, g, [0.0]), -1).reshape(-1, 3).astype(np.float32)
    lab = ((np.floor(pts[:, 0] / 0.4) + np.floor(pts[:, 1] / 0.4) + i) % 2).astype(np.uint8)
    cols = np.where(lab[:, None] == 1, [200, 40, 40], [40, 40, 200]).astype(np.uint8)
    tgt = text[torch.as_tensor(lab).long()]
    sp = torch.as_tensor((np.floor(pts[:, 0] / 0.4) * 10 + np.floor(pts[:, 1] / 0.4)).astype(np.int64))
    return DistillScene(f"c{i}", pts, sp, tgt.half(), torch.ones(len(pts), dtype=torch.bool), lab, cols)


def test_widened_stem_computes_the_geometry_only_function():
    torch.manual_seed(0)
    net3 = build_model("mink18a_slim", out_channels=C).eval()
    net4 = build_model("mink18a_slim", in_channels=4, out_channels=C).eval()
    load_mink_checkpoint(net4, widen_stem_for_color(net3.state_dict(), 4))
    assert uses_color(net4) and not uses_color(net3)
    pts = np.random.default_rng(0).random((400, 3)).astype(np.float32) * 2
    cols = np.random.default_rng(1).integers(0, 256, (400, 3)).astype(np.uint8)
    a = infer_points(net3, pts, 0.1).float()
    b = infer_points(net4, pts, 0.1, colors=cols).float()
    assert (a - b).abs().max().item() <= 1e-5 * max(1.0, a.abs().max().item())
    with pytest.raises(SASInputError, match="colour"):
        infer_points(net4, pts, 0.1)
    sd4 = net4.state_dict()
    assert widen_stem_for_color(sd4, 4) is sd4  # already a colour stem: unchanged


def test_class_balance_weights_follow_the_targets_votes():
    text = _text(3)
    # scene 1: 90 points voting class 0, 10 voting class 1; scene 2: 40 invalid points and 0 of class 2
    t1 = torch.cat([text[0].repeat(90, 1), text[1].repeat(10, 1)]) + 0.01
    t2 = text[0].repeat(40, 1)
    ws, cw = class_balance_weights([(t1, torch.ones(100, dtype=torch.bool)), (t2, torch.zeros(40, dtype=torch.bool))],
                                   text, 0.5)
    assert cw[2] == 0  # no point votes class 2
    assert cw[1] / cw[0] == pytest.approx(3.0, rel=1e-4)  # (0.9 / 0.1) ** 0.5
    assert ws[0].mean().item() == pytest.approx(1.0, rel=1e-5)  # mean point weight 1
    assert (ws[1] == 0).all()
    _, flat = class_balance_weights([(t1, torch.ones(100, dtype=torch.bool))], text, 0.0)
    assert torch.allclose(flat[:2], torch.ones(2))
    _, capped = class_balance_weights([(t1, torch.ones(100, dtype=torch.bool))], text, 2.0, max_ratio=10.0)
    assert capped[1] / capped[0] == pytest.approx(10.0, rel=1e-4)  # 81x uncapped


def test_weighted_losses():
    g = torch.Generator().manual_seed(0)
    f, t = torch.randn(50, C, generator=g), torch.randn(50, C, generator=g)
    assert cosine_loss(f, t, torch.full((50,), 3.0)).item() == pytest.approx(cosine_loss(f, t).item(), rel=1e-6)
    w = torch.zeros(50)
    w[7] = 1.0
    assert cosine_loss(f, t, w).item() == pytest.approx(1 - F.cosine_similarity(f[7:8], t[7:8]).item(), rel=1e-5)
    valid, seg = torch.rand(50, generator=g) > 0.3, torch.arange(50) // 5
    plain, _ = stage1_loss(f, t, valid, seg)
    ones, _ = stage1_loss(f, t, valid, seg, weight=torch.ones(50))
    assert ones.item() == pytest.approx(plain.item(), rel=1e-5)


def test_label_kd_loss_is_zero_on_the_target_and_sees_close_classes():
    text = F.normalize(torch.tensor([[1.0, 0.0, 0.0, 0, 0, 0, 0, 0], [0.88, 0.475, 0, 0, 0, 0, 0, 0],
                                     [0.0, 0.0, 1.0, 0, 0, 0, 0, 0]]), dim=1)  # classes 0 and 1: cosine 0.88
    tgt = text[1:2] * 3.0  # a target on class 1 (any norm)
    assert label_kd_loss(tgt * 0.5, tgt, text, 0.1).item() == pytest.approx(0.0, abs=1e-6)
    wrong = text[0:1]  # the close class: a small cosine error, a large label error
    cos_err = cosine_loss(wrong, tgt).item()
    assert cos_err < 0.13 and label_kd_loss(wrong, tgt, text, 0.1).item() > 5 * cos_err
    # in stage 1 it adds to the point term, and only when asked
    f, t = torch.randn(20, 8), torch.randn(20, 8)
    valid, seg = torch.ones(20, dtype=torch.bool), torch.arange(20) // 4
    base, parts = stage1_loss(f, t, valid, seg, text=text)
    assert "loss_kd" not in parts
    both, parts = stage1_loss(f, t, valid, seg, text=text, kd_weight=2.0)
    assert both.item() == pytest.approx(base.item() + 2.0 * parts["loss_kd"], rel=1e-5)


def test_jitter_colors_stays_in_range_and_moves_the_colours():
    c = np.random.default_rng(0).integers(0, 256, (1000, 3)).astype(np.uint8)
    j = jitter_colors(c, np.random.default_rng(1))
    assert j.dtype == np.float32 and j.min() >= 0 and j.max() <= 1
    assert 0.005 < np.abs(j - c / 255.0).mean() < 0.2


def _miou(tr, scene, text):
    f = infer_points(tr.model, scene.points, 0.05, colors=scene.colors).float()
    pred = (F.normalize(f, dim=-1) @ text.T).argmax(1).numpy()
    ious = [((pred == k) & (scene.labels == k)).sum() / max(1, ((pred == k) | (scene.labels == k)).sum())
            for k in range(2)]
    return float(np.mean(ious))


def test_colour_student_learns_what_geometry_cannot(tmp_path):
    text = _text()
    scenes = [_checker_floor(i, text) for i in range(2)]
    cfg = dict(model="mink18a_slim", out_channels=C, voxel_size=0.05, epochs_stage1=12, epochs_stage2=0,
               batch_size=2, lr=1e-2, lr_end=1e-3, augment=True, val_every=0, seed=0)
    col = DistillTrainer(DistillConfig(run="col", input_color=True, class_balance=0.5, **cfg), scenes, [], text,
                         tmp_path / "r", ArtefactStore(tmp_path / "s"), progress=False)
    col.fit()
    geo = DistillTrainer(DistillConfig(run="geo", **cfg), scenes, [], text, tmp_path / "r",
                         ArtefactStore(tmp_path / "s"), progress=False)
    geo.fit()
    m_col, m_geo = _miou(col, scenes[0], text), _miou(geo, scenes[0], text)
    print("checkerboard mIoU colour / geometry", m_col, m_geo)
    assert m_col > 0.9 and m_geo < 0.7, (m_col, m_geo)
    net, meta = load_student(tmp_path / "r" / "col" / "best.pt")
    assert meta["input_color"] and uses_color(net)
