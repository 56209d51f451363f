"""Training and evaluation of the compact teachers on the synthetic world's rendered frames.

Only the synthetic *training* split's per-pixel ground truth is used for training (it plays the role of the
COCO/ADE annotations real LSeg/SEEM were trained on); validation renders measure per-class IoU. The SAS pipeline
itself never sees ground truth.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..labels import IGNORE
from .compact_nets import CompactDenseNet, CompactMaskNet, DenseNetConfig, MaskNetConfig, coord_channels, to_input
from .proposals import ProposalConfig, propose_regions

log = logging.getLogger(__name__)


@dataclass
class CompactTrainConfig:
    """How the compact teachers are trained (the shipped checkpoints record the values used)."""

    train_split: str = "teach"
    """Synthetic split whose frames (with per-pixel ground truth) train a teacher. The shipped teachers each train
    on their own source's split instead (:data:`RECIPES`, :mod:`.sources`); ``teach`` (56 rooms) is what the
    previous two teachers shared, and is now the teaching rooms no teacher learns from."""
    val_split: str = "val"
    """Synthetic split whose frames measure per-class IoU (reported, never trained on)."""
    frame_step: int = 2
    """Use every n-th frame of each scene."""
    label_set: str = "scannet20"
    """Training vocabulary (label set name)."""
    template: str = "a {} in a scene"
    """Prompt template for the vocabulary's text embeddings."""
    epochs_dense: int = 32
    """Epochs of the dense teacher."""
    dense_context_blocks: int = 3
    """Context convolutions of the dense teacher (:class:`DenseNetConfig`); 2 undilated ones (47 px receptive field)
    reached only 29 mIoU on validation: sofas, beds and bathtubs need more surroundings than that."""
    dense_context_dilation: int = 2
    """Dilation of those convolutions (receptive field 111 px as shipped)."""
    epochs_mask: int = 16
    """Epochs of the mask teacher's region classifier."""
    batch_size: int = 8
    """Images per step."""
    dense_crop: tuple[int, int] = (128, 160)
    """(height, width) of the random crops the dense teacher is trained on (full-scale pixels, 1/4 of a frame's
    area: a local model needs no whole frames, and it is 4x cheaper)."""
    dense_label_stride: int = 1
    """Dense teachers: the loss is computed on every n-th pixel of every n-th row of the label images (2 for the
    half-resolution third teacher trained on whole frames: the same loss at a quarter of the cost)."""
    lr: float = 3e-3
    """Adam learning rate (cosine-decayed to 5% over training)."""
    temperature: float = 0.07
    """Softmax temperature on cosine similarities (LSeg's initial logit scale is 1/0.07)."""
    color_jitter: float = 0.0
    """Strength of an optional per-image photometric augmentation (brightness, contrast, saturation and
    per-channel gains drawn from 1 +- this; 0 = off). Off by default: with 0.2 the dense teacher's validation mIoU
    dropped from 25 to 18 (the palettes' colours are informative)."""
    class_balance: float = 0.5
    """Class weights of the losses = (training pixel frequency) ** -class_balance (0: plain CE), so that the
    large surfaces (wall: 40% of the pixels) do not drown the small classes the per-class IoU also counts."""
    seed: int = 0
    """Seed of initialisation and data order."""


_ONLY = {"compact_dense": ("epochs_mask",),
         "compact_mask": ("epochs_dense", "dense_context_blocks", "dense_context_dilation", "dense_label_stride")}


def teacher_train_config(cfg: CompactTrainConfig, kind: str) -> dict:
    """The training settings that ``kind`` (``compact_dense`` / ``compact_mask``) depends on, as recorded in its
    checkpoint: the other teacher's own fields are left out (the two trainings are seeded independently), so
    retraining one teacher does not invalidate the other's recorded config."""
    from ..config import config_dict

    return {k: v for k, v in config_dict(cfg).items() if k not in _ONLY[kind]}


@dataclass(frozen=True)
class TeacherRecipe:
    """How one shipped compact teacher is made: its network, its own data source and its training length."""

    name: str
    """Registry name and checkpoint file stem (``checkpoints/<name>.pt``)."""
    kind: str
    """``compact_dense`` or ``compact_mask``."""
    source: str
    """Teaching source (:data:`sas_engine.teachers.sources.SOURCES`): its split and label granularity."""
    epochs: int
    """Training epochs."""
    net: tuple[tuple[str, object], ...] = ()
    """Overrides of the network config (:class:`DenseNetConfig` / :class:`MaskNetConfig`)."""
    crop: tuple[int, int] | None = (128, 160)
    """Dense teachers: random crop (h, w) in full-scale pixels; ``None`` = whole frames."""
    label_stride: int = 1
    """Dense teachers: :attr:`CompactTrainConfig.dense_label_stride`."""
    seed: int = 0
    """Seed of initialisation and data order."""


RECIPES: dict[str, TeacherRecipe] = {
    "lseg_compact": TeacherRecipe("lseg_compact", "compact_dense", "scene_parsing", epochs=32,
                                  net=(("context_blocks", 3), ("context_dilation", 2)), crop=(128, 160), seed=0),
    "seem_compact": TeacherRecipe("seem_compact", "compact_mask", "object_photos", epochs=16, seed=1),
    "odise_compact": TeacherRecipe("odise_compact", "compact_dense", "home_tours", epochs=20,
                                   net=(("input_scale", 0.5), ("context_blocks", 4),
                                        ("context_dilation", 2)), crop=None, label_stride=2, seed=2),
}
"""Plain registry of the three shipped compact teachers (``scripts/train_compact_teachers.py`` trains them)."""


def recipe_config(cfg: "CompactTrainConfig", recipe: TeacherRecipe) -> "CompactTrainConfig":
    """``cfg`` with the recipe's own fields filled in (split, epochs, crop, dense context, seed)."""
    from .sources import get_source

    net = dict(recipe.net)
    kw = {"train_split": get_source(recipe.source).split, "seed": recipe.seed}
    if recipe.kind == "compact_dense":
        kw.update(epochs_dense=recipe.epochs, dense_crop=recipe.crop or (1 << 14, 1 << 14),
                  dense_label_stride=recipe.label_stride,
                  dense_context_blocks=int(net.get("context_blocks", cfg.dense_context_blocks)),
                  dense_context_dilation=int(net.get("context_dilation", cfg.dense_context_dilation)))
    else:
        kw.update(epochs_mask=recipe.epochs)
    return dataclasses.replace(cfg, **kw)


def recipe_train_record(cfg: "CompactTrainConfig", recipe: TeacherRecipe) -> dict:
    """What a recipe-trained checkpoint records under ``config.train``: the effective training settings ``cfg``
    (:func:`recipe_config` of the shared defaults), the recipe and the source's data card."""
    from .sources import get_source

    return {**teacher_train_config(cfg, recipe.kind), "recipe": {**dataclasses.asdict(recipe), "net": dict(recipe.net)},
            "source": get_source(recipe.source).to_json()}


def collect_frames(scene_paths, frame_step: int = 1, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Stack the colour images uint8 [F, H, W, 3] and ground-truth label images uint8 [F, H, W] of scenes."""
    from ..io import load_scene

    imgs, labs = [], []
    for p in tqdm(list(scene_paths), desc="reading frames", disable=not progress):
        scene = load_scene(p)
        for i in range(0, len(scene.frames), frame_step):
            fr = scene.frames[i]
            if fr.gt_labels is None:
                raise ValueError(f"{p}: frame {fr.frame_id} has no ground-truth label image (not a synthetic scene?)")
            imgs.append(fr.color)
            labs.append(fr.gt_labels)
    return np.stack(imgs), np.stack(labs)


def class_weights(labels: np.ndarray, num_classes: int, power: float) -> torch.Tensor:
    """Loss weight per class: pixel frequency ** -power (classes without pixels get the largest weight), scaled to
    a pixel-weighted mean of 1."""
    cnt = np.bincount(labels.reshape(-1), minlength=256)[:num_classes].astype(np.float64)
    freq = cnt / max(cnt.sum(), 1)
    w = np.where(freq > 0, np.maximum(freq, 1e-6) ** -power, 0.0)
    w[freq == 0] = w.max() if (freq > 0).any() else 1.0
    w = w / max((w * freq).sum(), 1e-12)
    return torch.as_tensor(w, dtype=torch.float32)


def _schedule(opt, total: int, lr: float):
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda it: 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(it, total) / total)))


def train_dense(images: np.ndarray, labels: np.ndarray, text: torch.Tensor, cfg: CompactTrainConfig,
                net_cfg: DenseNetConfig | None = None, history: list | None = None,
                progress: bool = True) -> CompactDenseNet:
    """Train the dense teacher with LSeg's objective: per-pixel CE over (pixel . text) / temperature.

    ``images`` uint8 [F, H, W, 3], ``labels`` uint8 [F, H, W] (255 ignored), ``text`` [K, C] unit class embeddings.
    The loss of every step is appended to ``history`` when given."""
    torch.manual_seed(cfg.seed)
    net = CompactDenseNet(net_cfg or DenseNetConfig(embed_dim=text.shape[1], context_blocks=cfg.dense_context_blocks,
                                                     context_dilation=cfg.dense_context_dilation))
    weight = class_weights(labels, text.shape[0], cfg.class_balance)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    steps = cfg.epochs_dense * int(np.ceil(len(images) / cfg.batch_size))
    sched = _schedule(opt, steps, cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    net.train()
    for ep in range(cfg.epochs_dense):
        order = rng.permutation(len(images))
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"dense teacher epoch {ep + 1}/{cfg.epochs_dense}",
                   disable=not progress)
        for s in bar:
            idx = order[s:s + cfg.batch_size]
            img, lab, offs = _random_crops(images[idx], labels[idx], cfg.dense_crop, rng)
            x, y = to_input(jitter_colors(img, cfg.color_jitter, rng)), torch.as_tensor(lab).long()
            coords = coord_channels(len(idx), x.shape[2], x.shape[3], images.shape[1:3], offs)
            if rng.random() < 0.5:  # horizontal flip (a mirrored frame: the x coordinate flips with it)
                x, y = x.flip(-1), y.flip(-1)
                coords = torch.stack([coords[:, 0].flip(-1), -coords[:, 1].flip(-1)], 1)
            feat = net(x, coords)
            logits = torch.einsum("bchw,kc->bkhw", feat, text) / cfg.temperature
            if cfg.dense_label_stride > 1:  # labels at the pixel centres of a coarser grid
                st = cfg.dense_label_stride
                y = y[:, st // 2::st, st // 2::st]
            logits = F.interpolate(logits, size=y.shape[-2:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits, y, weight=weight, ignore_index=IGNORE)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if history is not None:
                history.append(loss.item())
    return net.eval()


def _random_crops(images: np.ndarray, labels: np.ndarray, crop: tuple[int, int], rng) -> tuple[np.ndarray, np.ndarray]:
    """One random ``crop`` (h, w) window per image of a batch (the whole image when it is smaller)."""
    h, w = images.shape[1:3]
    ch, cw = min(crop[0], h), min(crop[1], w)
    ys = rng.integers(0, h - ch + 1, len(images))
    xs = rng.integers(0, w - cw + 1, len(images))
    return (np.stack([im[y:y + ch, x:x + cw] for im, y, x in zip(images, ys, xs)]),
            np.stack([lb[y:y + ch, x:x + cw] for lb, y, x in zip(labels, ys, xs)]), np.stack([ys, xs], 1))


def jitter_colors(images: np.ndarray, strength: float, rng) -> torch.Tensor:
    """Photometric augmentation of uint8 [B, H, W, 3] images -> uint8 tensor: per image brightness, contrast,
    saturation and per-channel gains, each a factor drawn from [1 - strength, 1 + strength]."""
    x = torch.as_tensor(images).float()
    if strength <= 0:
        return x.round().to(torch.uint8)
    b = len(images)
    f = torch.as_tensor(1 + rng.uniform(-strength, strength, (b, 6)), dtype=torch.float32)
    grey = x.mean(-1, keepdim=True)
    x = grey + (x - grey) * f[:, 0, None, None, None]  # saturation
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + (x - mean) * f[:, 1, None, None, None]  # contrast
    x = x * f[:, 2, None, None, None] * f[:, None, None, 3:]  # brightness, channel gains
    return x.clamp(0, 255).round().to(torch.uint8)


def region_targets(regions: np.ndarray, labels_small: np.ndarray, num_classes: int) -> np.ndarray:
    """Majority ground-truth class per region (255 when more than half of the region is unlabelled)."""
    r = int(regions.max()) + 1
    lab = labels_small.reshape(-1).astype(np.int64)
    lab = np.where(lab == IGNORE, num_classes, lab)
    hist = np.zeros((r, num_classes + 1), np.int64)
    np.add.at(hist, (regions.reshape(-1), lab), 1)
    tgt = hist[:, :num_classes].argmax(1).astype(np.uint8)
    tgt[hist[:, num_classes] * 2 > hist.sum(1)] = IGNORE
    return tgt


def proposals_for(images: np.ndarray, pcfg: ProposalConfig = ProposalConfig(),
                  progress: bool = True) -> list[np.ndarray]:
    """Region proposals of every image at half resolution (what the mask teacher sees)."""
    return [propose_regions(img[::2, ::2], pcfg) for img in tqdm(images, desc="region proposals", disable=not progress)]


def train_mask(images: np.ndarray, labels: np.ndarray, regions: list[np.ndarray], text: torch.Tensor,
               cfg: CompactTrainConfig, net_cfg: MaskNetConfig | None = None, history: list | None = None,
               progress: bool = True) -> CompactMaskNet:
    """Train the region classifier: CE over (region embedding . text) / temperature on majority-labelled regions.

    ``regions``: per image int64 region ids at half resolution (:func:`proposals_for`). The loss of every step is
    appended to ``history`` when given."""
    torch.manual_seed(cfg.seed + 1)
    k = text.shape[0]
    net = CompactMaskNet(net_cfg or MaskNetConfig(embed_dim=text.shape[1]))
    targets = [torch.as_tensor(region_targets(r, lab[::2, ::2], k)).long() for r, lab in zip(regions, labels)]
    weight = class_weights(labels, k, cfg.class_balance)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    steps = cfg.epochs_mask * int(np.ceil(len(images) / cfg.batch_size))
    sched = _schedule(opt, steps, cfg.lr)
    rng = np.random.default_rng(cfg.seed + 1)
    net.train()
    for ep in range(cfg.epochs_mask):
        order = rng.permutation(len(images))
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"mask teacher epoch {ep + 1}/{cfg.epochs_mask}",
                   disable=not progress)
        for s in bar:
            idx = order[s:s + cfg.batch_size]
            x = to_input(jitter_colors(images[idx], cfg.color_jitter, rng))
            embs = net(x, [torch.as_tensor(regions[i]) for i in idx])
            logits = torch.cat(embs) @ text.T / cfg.temperature
            y = torch.cat([targets[i] for i in idx])
            # weight regions by sqrt(area) so large surfaces matter but small objects are not drowned
            area = torch.cat([torch.bincount(torch.as_tensor(regions[i]).reshape(-1)).float() for i in idx])
            ok = y != IGNORE
            wr = area[ok].sqrt() * weight[y[ok]]
            loss = (F.cross_entropy(logits[ok], y[ok], reduction="none") * wr).sum() / wr.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if history is not None:
                history.append(loss.item())
    return net.eval()


@torch.no_grad()
def teacher_label_maps(teacher, images: np.ndarray, text: torch.Tensor, progress: bool = True) -> list[np.ndarray]:
    """Per-pixel vocabulary index maps uint8 [H, W] of a compact teacher on ``images`` (dense: argmax of the
    upsampled pixel . text logits; mask: each region's label painted on its pixels)."""
    out = []
    for im in tqdm(images, desc=f"evaluating {teacher.name}", disable=not progress):
        if teacher.kind == "dense":
            feat = teacher.predict(im).permute(2, 0, 1)[None]
            logits = torch.einsum("bchw,kc->bkhw", feat, text)
            logits = F.interpolate(logits, size=im.shape[:2], mode="bilinear", align_corners=False)
            out.append(logits[0].argmax(0).numpy().astype(np.uint8))
        else:
            full, lab, _ = teacher.regions_and_labels(im)
            out.append(lab.astype(np.uint8)[full])
    return out


def per_class_iou(preds: list[np.ndarray], gts: list[np.ndarray], k: int) -> np.ndarray:
    """Pooled per-class IoU over pixel label maps; NaN for classes absent from the ground truth (they are not
    scored, as in the ScanNet benchmark)."""
    from ..eval.metrics import class_iou, confusion_matrix

    conf = sum(confusion_matrix(p.reshape(-1), g.reshape(-1), k) for p, g in zip(preds, gts))
    iou = class_iou(conf)
    iou[conf.sum(1) == 0] = np.nan
    return iou


def strict_wins(iou_a, iou_b, decimals: int = 1) -> tuple[list[int], list[int]]:
    """Class indices where teacher a / teacher b is strictly better. IoUs (fractions) are compared as rounded
    percentages with ``decimals`` decimals, so ties as printed and NaN (class not scored) count for neither."""
    a = np.round(np.asarray(iou_a, np.float64) * 100, decimals)
    b = np.round(np.asarray(iou_b, np.float64) * 100, decimals)
    ok = np.isfinite(a) & np.isfinite(b)
    return np.flatnonzero(ok & (a > b)).tolist(), np.flatnonzero(ok & (b > a)).tolist()
