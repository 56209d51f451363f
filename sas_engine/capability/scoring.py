"""Scoring teachers on synthesized images: the capability table (paper 3.2, Eq. 3) and the Linear baseline's weights.

Every teacher segments every synthesized image over the vocabulary:

* dense teacher (``predict(image) -> Tensor [h, w, C]``): per-pixel logits = feature . vocabulary text embedding,
  bilinearly upsampled to the image, label = argmax;
* mask teacher (``predict(image) -> list[MaskPrediction]``): each mask's label is encoded with the text encoder and
  mapped to the most similar vocabulary entry; masks are painted in ascending score order (the best mask wins);
  pixels no mask covers have no label.

Capability of teacher t for class k = IoU between the teacher's class-k mask and the pseudo masks of the images of
class k. Two variants: ``pooled`` = sum of intersections / sum of unions over the images (the authors' release) and
``per_image`` = mean of per-image IoU (paper Eq. 3). **Default: pooled**, because the released capability tables (and
therefore the released tau = 0.05) were computed that way, and pooling weighs images by object size instead of letting
a few tiny, badly refined pseudo masks swing a class's score.

The Linear baseline (paper Table 3) needs fixed global teacher weights; they are chosen here, without annotation, on
the same synthesized images: the weight simplex is grid-searched (step 0.1) and the weights maximising the pooled
pixel mIoU of the linearly combined per-pixel logits win (ties: the first in enumeration order). The search scores
every other pixel of every other row (a quarter of the pixels), which keeps it cheap for three teachers (66 weight
vectors per image).
"""
from __future__ import annotations

import itertools
import logging
from typing import Callable, Optional, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SASInputError
from ..labels import PROMPT_SCENE
from .synthesizer import SynthImage
from .table import CapabilityTable

log = logging.getLogger(__name__)

MODES = ("pooled", "per_image")


@runtime_checkable
class TextEncoderLike(Protocol):
    """What scoring needs of a text encoder (``sas_engine.teachers.TextEncoder`` satisfies it)."""

    def encode(self, texts: list[str]) -> torch.Tensor:  # float32 [B, C], L2-normalised
        ...


@runtime_checkable
class TeacherLike(Protocol):
    """What scoring needs of a teacher: ``name`` and ``predict(image uint8 [H, W, 3])`` returning either a dense
    feature map Tensor [h, w, C] or a list of mask predictions (``.mask`` bool [H, W], ``.label`` str, ``.score``).
    A teacher may carry its own ``text_encoder`` (its feature space); otherwise the shared one is used."""

    name: str

    def predict(self, image: np.ndarray):
        ...


class _TextCache:
    def __init__(self):
        self._cache: dict[tuple[int, str], torch.Tensor] = {}

    def encode(self, enc, texts: Sequence[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if (id(enc), t) not in self._cache]
        if missing:
            emb = torch.as_tensor(enc.encode(list(missing))).float().cpu()
            emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            for t, e in zip(missing, emb):
                self._cache[(id(enc), t)] = e
        return torch.stack([self._cache[(id(enc), t)] for t in texts])


def teacher_logits(teacher, image: np.ndarray, vocab_emb: torch.Tensor, text_encoder=None,
                   template: str = PROMPT_SCENE, _cache: Optional[_TextCache] = None):
    """Per-pixel vocabulary logits of one teacher on one image.

    Returns ``(logits float32 [H, W, K], valid bool [H, W])``; ``vocab_emb`` [K, C] must be in the teacher's space.
    """
    h, w = image.shape[:2]
    out = teacher.predict(image)
    if isinstance(out, (torch.Tensor, np.ndarray)):
        feat = torch.as_tensor(out).float().cpu()
        if feat.ndim != 3 or feat.shape[-1] != vocab_emb.shape[1]:
            raise SASInputError(None, f"dense teacher {getattr(teacher, 'name', teacher)!r} returned features "
                                      f"{list(feat.shape)}, expected [h, w, {vocab_emb.shape[1]}]")
        logits = (feat @ vocab_emb.T).permute(2, 0, 1)[None]                 # [1, K, h, w]
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits[0].permute(1, 2, 0).contiguous(), torch.ones(h, w, dtype=torch.bool)
    preds = list(out)
    k = vocab_emb.shape[0]
    logits = torch.zeros(h, w, k)
    valid = torch.zeros(h, w, dtype=torch.bool)
    if not preds:
        return logits, valid
    if text_encoder is None:
        raise SASInputError(None, "a mask teacher needs a text encoder to map its labels onto the vocabulary")
    cache = _cache or _TextCache()
    lab_emb = cache.encode(text_encoder, [template.format(p.label) for p in preds])
    sims = lab_emb @ vocab_emb.T                                             # [P, K]
    for i in np.argsort([float(p.score) for p in preds], kind="stable"):
        m = torch.as_tensor(np.asarray(preds[i].mask, dtype=bool))
        if m.shape != (h, w):
            raise SASInputError(None, f"mask teacher returned a mask {list(m.shape)} for a {h}x{w} image")
        logits[m] = sims[i]
        valid |= m
    return logits, valid


def _labels(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    lab = logits.argmax(dim=-1)
    return torch.where(valid, lab, torch.full_like(lab, -1))


def iou_counts(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """(intersection, union) pixel counts of two boolean masks."""
    p = torch.as_tensor(np.asarray(pred, dtype=bool)) if not isinstance(pred, torch.Tensor) else pred.bool()
    g = torch.as_tensor(np.asarray(gt, dtype=bool)) if not isinstance(gt, torch.Tensor) else gt.bool()
    return int((p & g).sum()), int((p | g).sum())


class IoUAccumulator:
    """Per-(row, class) IoU in both variants. ``add(row, k, inter, union)`` once per image; images with an empty
    union (empty prediction and empty pseudo mask) count for neither variant."""

    def __init__(self, rows: int, classes: int):
        self.inter = np.zeros((rows, classes), np.int64)
        self.union = np.zeros((rows, classes), np.int64)
        self.iou_sum = np.zeros((rows, classes), np.float64)
        self.n = np.zeros((rows, classes), np.int64)

    def add(self, row: int, k: int, inter: int, union: int) -> None:
        if union <= 0:
            return
        self.inter[row, k] += inter
        self.union[row, k] += union
        self.iou_sum[row, k] += inter / union
        self.n[row, k] += 1

    def pooled(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.union > 0, self.inter / np.maximum(self.union, 1), np.nan)

    def per_image(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, self.iou_sum / np.maximum(self.n, 1), np.nan)

    def result(self, mode: str) -> np.ndarray:
        if mode not in MODES:
            raise SASInputError(None, f"unknown capability mode {mode!r}; known: {', '.join(MODES)}")
        return self.pooled() if mode == "pooled" else self.per_image()


def simplex_grid(t: int, step: float = 0.1) -> np.ndarray:
    """All weight vectors of ``t`` non-negative multiples of ``step`` summing to 1. float64 [G, t]."""
    n = int(round(1.0 / step))
    if t == 1:
        return np.ones((1, 1))
    rows = [c for c in itertools.product(range(n + 1), repeat=t - 1) if sum(c) <= n]
    return np.array([list(c) + [n - sum(c)] for c in rows], dtype=np.float64) / n


def combine_logits(logits: list[torch.Tensor], valids: list[torch.Tensor], weights) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-weight combination over the valid teachers at each pixel/point (weights renormalised over the valid
    ones; where the valid teachers all have weight 0 their plain mean is used). Returns (combined, any_valid)."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float32))
    v = torch.stack([x.float() for x in valids], dim=-1)                    # [..., T]
    wv = v * w
    den = wv.sum(dim=-1, keepdim=True)
    zero = den <= 0
    wv = torch.where(zero, v, wv)
    den = torch.where(zero, v.sum(dim=-1, keepdim=True), den)
    any_valid = den[..., 0] > 0
    coef = wv / den.clamp_min(1e-12)
    out = sum(coef[..., i:i + 1] * torch.nan_to_num(x.float()) for i, x in enumerate(logits))
    return out, any_valid


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Mean over the non-NaN entries of each row (-1 for an all-NaN row)."""
    ok = ~np.isnan(a)
    n = ok.sum(axis=1)
    return np.where(n > 0, np.where(ok, a, 0.0).sum(axis=1) / np.maximum(n, 1), -1.0)


def score_capabilities(teachers: Sequence, images: Sequence[SynthImage], vocab_names: Sequence[str],
                       text_encoder=None, mode: str = "pooled", template: str = PROMPT_SCENE,
                       linear_step: Optional[float] = 0.1,
                       progress: Optional[Callable[[int, int], None]] = None) -> CapabilityTable:
    """Run every teacher on every synthesized image and build the capability table.

    Args:
        teachers: objects with ``name`` and ``predict`` (see :class:`TeacherLike`).
        images: synthesized images; ``class_index`` indexes ``vocab_names``.
        vocab_names: the vocabulary (class words as put into ``template``).
        text_encoder: shared text encoder (mask labels, and dense teachers without their own ``text_encoder``).
        mode: which variant fills ``scores`` (``pooled`` default, ``per_image``); both are stored.
        linear_step: simplex grid step of the Linear baseline's weight search (``None`` skips it).
        progress: optional ``progress(done, total)`` called after each image (e.g. a page's progress bar).
    """
    from tqdm import tqdm

    if mode not in MODES:
        raise SASInputError(None, f"unknown capability mode {mode!r}; known: {', '.join(MODES)}")
    if not teachers:
        raise SASInputError(None, "no teachers to score")
    k_all = len(vocab_names)
    for im in images:
        if not 0 <= im.class_index < k_all:
            raise SASInputError(None, f"synthesized image has class index {im.class_index} outside the vocabulary")
    cache = _TextCache()
    prompts = [template.format(n) for n in vocab_names]
    vocab = []
    for t in teachers:
        enc = getattr(t, "text_encoder", None) or text_encoder
        if enc is None:
            raise SASInputError(None, f"teacher {getattr(t, 'name', t)!r}: no text encoder for the vocabulary")
        vocab.append((enc, cache.encode(enc, prompts)))
    acc = IoUAccumulator(len(teachers), k_all)
    grid = simplex_grid(len(teachers), linear_step) if (linear_step and len(teachers) > 1) else None
    grid_acc = IoUAccumulator(len(grid), k_all) if grid is not None else None
    counts = np.zeros(k_all, np.int64)
    for i_im, im in enumerate(tqdm(images, desc="score teachers", unit="img")):
        if progress is not None and i_im:
            progress(i_im, len(images))
        gt = torch.as_tensor(im.mask)
        k = im.class_index
        counts[k] += 1
        lg, vd = [], []
        for ti, t in enumerate(teachers):
            logits, valid = teacher_logits(t, im.image, vocab[ti][1], vocab[ti][0], template, cache)
            acc.add(ti, k, *iou_counts(_labels(logits, valid) == k, gt))
            lg.append(logits)
            vd.append(valid)
        if grid is not None:  # on every other pixel of every other row: 66 weightings of 3 teachers per image
            lg2, vd2, gt2 = [x[::2, ::2] for x in lg], [x[::2, ::2] for x in vd], gt[::2, ::2]
            for gi, w in enumerate(grid):
                comb, ok = combine_logits(lg2, vd2, w)
                grid_acc.add(gi, k, *iou_counts(_labels(comb, ok) == k, gt2))
    lin_w, lin_miou = None, None
    if grid is not None:
        miou = _nanmean_rows(grid_acc.pooled())
        best = int(np.argmax(miou))
        lin_w, lin_miou = [float(x) for x in grid[best]], float(miou[best])
    return CapabilityTable(scores=acc.result(mode), teachers=[str(getattr(t, "name", f"teacher{i}"))
                                                              for i, t in enumerate(teachers)],
                           classes=list(vocab_names), mode=mode, scores_pooled=acc.pooled(),
                           scores_per_image=acc.per_image(), image_counts=counts, linear_weights=lin_w,
                           linear_miou=lin_miou, provenance=[dict(im.provenance) for im in images])
