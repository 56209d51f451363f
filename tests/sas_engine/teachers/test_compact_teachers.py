"""Compact teachers (lseg_compact / seem_compact): shipped checkpoints, adapters, proposals, training, metrics."""
import dataclasses

import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.labels import get_label_set
from sas_engine.teachers import TEACHERS, build_teacher
from sas_engine.teachers.compact import CHECKPOINT_DIR, read_compact, save_compact
from sas_engine.teachers.compact_nets import CompactDenseNet, CompactMaskNet, DenseNetConfig, MaskNetConfig
from sas_engine.teachers.compact_train import (CompactTrainConfig, per_class_iou, proposals_for, region_targets,
                                               strict_wins, teacher_train_config, train_dense, train_mask)
from sas_engine.teachers.proposals import ProposalConfig, propose_regions

DENSE = CHECKPOINT_DIR / "lseg_compact.pt"
MASK = CHECKPOINT_DIR / "seem_compact.pt"
VOCAB = list(get_label_set("scannet20").prompt_names)


@pytest.fixture(scope="module")
def teachers():
    torch.set_num_threads(2)
    return build_teacher("lseg_compact"), build_teacher("seem_compact")


def _scene_like(h=60, w=80, seed=0):
    """A hand-made 'room': wall (top), floor (bottom), a dark box, mild noise."""
    rng = np.random.default_rng(seed)
    im = np.zeros((h, w, 3), np.float32)
    im[: h // 2] = (220, 215, 200)
    im[h // 2:] = (120, 80, 50)
    im[h // 3: 2 * h // 3, w // 4: w // 2] = (40, 60, 140)
    return np.clip(im + rng.normal(0, 3, im.shape), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- shipped files
def test_shipped_checkpoints_exist_small_and_match_recorded_config():
    assert DENSE.is_file() and MASK.is_file()
    assert (DENSE.stat().st_size + MASK.stat().st_size) < 20 * 2 ** 20
    dense_cfg = DenseNetConfig(embed_dim=384, context_blocks=CompactTrainConfig.dense_context_blocks,
                               context_dilation=CompactTrainConfig.dense_context_dilation)
    for path, kind, net_cfg in ((DENSE, "compact_dense", dense_cfg),
                                (MASK, "compact_mask", MaskNetConfig(embed_dim=384))):
        ck = read_compact(path, kind)
        cfg = ck["config"]
        # the shipped weights are what the default command (all CompactTrainConfig defaults) produces
        assert cfg["train"] == teacher_train_config(CompactTrainConfig(), kind)
        assert cfg["net"] == dataclasses.asdict(net_cfg)
        assert cfg["text_encoder"] == "minilm" and cfg["vocabulary"] == VOCAB
        assert cfg["template"] == CompactTrainConfig.template
        if kind == "compact_mask":
            assert cfg["proposals"] == dataclasses.asdict(ProposalConfig())
        # the recorded architecture rebuilds and the weights fit it exactly
        net = (CompactDenseNet(DenseNetConfig(**cfg["net"])) if kind == "compact_dense"
               else CompactMaskNet(MaskNetConfig(**cfg["net"])))
        net.load_state_dict(ck["state_dict"], strict=True)


def test_registry_and_checkpoint_errors(tmp_path, teachers):
    dense, mask = teachers
    assert TEACHERS["lseg_compact"] and TEACHERS["seem_compact"]
    assert dense.name == "lseg_compact" and dense.kind == "dense" and dense.text_encoder.dim == 384
    assert mask.name == "seem_compact" and mask.kind == "mask" and list(mask.vocabulary) == VOCAB
    assert dense.display_name == "dense teacher (compact, LSeg-style)"
    assert mask.display_name == "mask teacher (compact, SEEM-style)"
    with pytest.raises(SASInputError, match="not found"):
        build_teacher("lseg_compact", checkpoint=tmp_path / "missing.pt")
    with pytest.raises(SASInputError, match="compact_mask"):
        build_teacher("seem_compact", checkpoint=DENSE)  # a dense checkpoint is not a mask one
    bad = tmp_path / "bad.pt"
    save_compact(bad, "compact_dense", CompactDenseNet(DenseNetConfig(width=8, embed_dim=384)),
                 {**read_compact(DENSE, "compact_dense")["config"]}, {})  # recorded width 32, weights width 8
    with pytest.raises(SASInputError):
        build_teacher("lseg_compact", checkpoint=bad)
    other = build_teacher("seem_compact", vocabulary="matterport21")
    assert list(other.vocabulary) == list(get_label_set("matterport21").prompt_names)


def test_shipped_wins_and_recorded_miou():
    md = read_compact(DENSE, "compact_dense")["metrics"]
    mm = read_compact(MASK, "compact_mask")["metrics"]
    names = list(get_label_set("scannet20").names)
    iou = [np.array([np.nan if m["val_iou"][n] is None else m["val_iou"][n] / 100 for n in names]) for m in (md, mm)]
    for m, i in zip((md, mm), iou):
        assert m["val_miou"] == pytest.approx(100 * np.nanmean(i), abs=0.02) and m["val_frames"] > 0
    wd, wm = strict_wins(*iou)
    assert len(wd) >= 4 and len(wm) >= 4  # different per-class strengths: each strictly better on >= 4 classes


def test_shipped_metrics_satisfy_the_issue_constraints():
    md = read_compact(DENSE, "compact_dense")["metrics"]
    mm = read_compact(MASK, "compact_mask")["metrics"]
    names = list(get_label_set("scannet20").names)
    iou_d = np.array([np.nan if md["val_iou"][n] is None else md["val_iou"][n] / 100 for n in names])
    iou_m = np.array([np.nan if mm["val_iou"][n] is None else mm["val_iou"][n] / 100 for n in names])
    for m, iou in ((md, iou_d), (mm, iou_m)):
        assert 35.0 <= m["val_miou"] <= 75.0
        assert m["val_miou"] == pytest.approx(100 * np.nanmean(iou), abs=0.02)
        assert m["val_frames"] > 0
    wd, wm = strict_wins(iou_d, iou_m)
    assert len(wd) >= 4 and len(wm) >= 4


def test_strict_wins_ignores_ties_and_nan():
    a = np.array([0.5, 0.3, np.nan, 0.2, 0.40001])
    b = np.array([0.4, 0.3, 0.1, np.nan, 0.4])
    assert strict_wins(a, b) == ([0], [])
    assert strict_wins(b, a) == ([], [0])


def test_per_class_iou_unscored_absent_classes():
    gt = [np.array([[0, 0, 1, 255]], np.uint8)]
    pred = [np.array([[0, 2, 1, 1]], np.uint8)]
    iou = per_class_iou(pred, gt, 3)
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(1.0) and np.isnan(iou[2])


# ---------------------------------------------------------------- predictions
@pytest.mark.parametrize("hw", [(60, 80), (61, 83)])
def test_dense_prediction_shape_and_unit_norm(teachers, hw):
    dense, _ = teachers
    im = _scene_like(*hw)
    f = dense.predict(im)
    assert f.dtype == torch.float32 and tuple(f.shape) == (-(-hw[0] // 4), -(-hw[1] // 4), 384)
    assert tuple(f.shape[:2]) == dense.output_size(*hw)
    assert torch.allclose(f.norm(dim=-1), torch.ones(f.shape[:2]), atol=1e-4)
    with pytest.raises(SASInputError):
        dense.predict(im.astype(np.float32))


def test_mask_predictions_partition_the_image(teachers):
    _, mask = teachers
    im = _scene_like(61, 83)
    preds = mask.predict(im)
    assert len(preds) >= 2
    cover = np.zeros(im.shape[:2], np.int32)
    for p in preds:
        assert p.mask.dtype == bool and p.mask.shape == im.shape[:2] and p.mask.any()
        assert p.label in VOCAB
        assert 0.0 < p.score <= 1.0
        cover += p.mask
    assert (cover == 1).all()  # proposals partition the image, every pixel in exactly one mask


# ---------------------------------------------------------------- proposals
def test_proposals_two_flat_halves_give_two_regions():
    im = np.zeros((48, 64, 3), np.uint8)
    im[:, :32] = (200, 40, 40)
    im[:, 32:] = (40, 40, 200)
    reg = propose_regions(im)
    assert reg.shape == (48, 64) and reg.dtype == np.int64
    assert reg.max() == 1
    assert len(np.unique(reg[:, :32])) == 1 and len(np.unique(reg[:, 32:])) == 1 and reg[0, 0] != reg[0, -1]
    noisy = np.clip(im + np.random.default_rng(0).normal(0, 4, im.shape), 0, 255).astype(np.uint8)
    assert propose_regions(noisy).max() == 1


def test_proposals_separate_an_object_and_are_deterministic():
    im = _scene_like(60, 80)
    a, b = propose_regions(im), propose_regions(im)
    assert (a == b).all()
    box = a[20:40, 20:40]
    assert len(np.unique(box[3:-3, 3:-3])) == 1  # the box is one region...
    assert box[10, 10] not in set(a[:10].ravel()) | set(a[-10:].ravel())  # ...not merged with wall or floor


def test_region_targets_majority_and_unlabelled():
    reg = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    lab = np.array([[3, 3, 255, 255], [3, 5, 255, 2]], np.uint8)
    assert region_targets(reg, lab, 20).tolist() == [3, 255]


# ---------------------------------------------------------------- training
def _toy_data(n=6, h=32, w=40, seed=0):
    """Images of colour blocks whose class follows the colour (learnable by both teachers)."""
    rng = np.random.default_rng(seed)
    cols = np.array([(230, 40, 40), (40, 200, 60), (50, 60, 220)], np.float32)
    imgs, labs = [], []
    for _ in range(n):
        lab = np.zeros((h, w), np.uint8)
        lab[:, rng.integers(8, w - 8):] = 1
        y0, x0 = rng.integers(0, h - 12), rng.integers(0, w - 12)
        lab[y0:y0 + 10, x0:x0 + 10] = 2
        imgs.append(np.clip(cols[lab] + rng.normal(0, 5, (h, w, 3)), 0, 255).astype(np.uint8))
        labs.append(lab)
    return np.stack(imgs), np.stack(labs)


def _text(k=3, c=16):
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.normalize(torch.randn(k, c, generator=g), dim=1)


def test_dense_training_lowers_the_loss_and_is_deterministic():
    torch.set_num_threads(2)
    imgs, labs = _toy_data()
    cfg = CompactTrainConfig(epochs_dense=8, batch_size=3, dense_crop=(24, 32), lr=5e-3)
    net_cfg = DenseNetConfig(width=8, embed_dim=16)
    h1, h2 = [], []
    n1 = train_dense(imgs, labs, _text(), cfg, net_cfg, history=h1, progress=False)
    n2 = train_dense(imgs, labs, _text(), cfg, net_cfg, history=h2, progress=False)
    assert len(h1) == 16
    assert np.mean(h1[-3:]) < 0.7 * np.mean(h1[:2])
    assert h1 == h2
    for k, v in n1.state_dict().items():
        assert torch.equal(v, n2.state_dict()[k]), k


def test_mask_training_lowers_the_loss():
    torch.set_num_threads(2)
    imgs, labs = _toy_data()
    regions = proposals_for(imgs, ProposalConfig(n_segments=20, min_area=4), progress=False)
    assert all(r.shape == (16, 20) for r in regions)
    cfg = CompactTrainConfig(epochs_mask=8, batch_size=3, lr=5e-3)
    hist = []
    train_mask(imgs, labs, regions, _text(), cfg, MaskNetConfig(width=8, hidden=32, embed_dim=16), history=hist,
               progress=False)
    assert len(hist) == 16
    assert np.mean(hist[-3:]) < 0.7 * np.mean(hist[:2])
