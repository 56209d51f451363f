"""The compact teacher networks trained on the embedded synthetic world (the demo's stand-ins for LSeg, SEEM, ODISE).

* :class:`CompactDenseNet` - LSeg-style (and, at half input resolution with a whole-frame receptive field, the
  ODISE-style third teacher): a small encoder-decoder CNN with a limited receptive field that embeds every
  pixel (at 1/4 resolution) into the text encoder's space; trained with LSeg's objective (per-pixel softmax over the
  similarities to the vocabulary's text embeddings).
* :class:`CompactMaskNet` - SEEM-style: class-agnostic region proposals (:mod:`.proposals`) and a region classifier that
  pools a coarse, large-context CNN feature map inside each region, adds the region's shape statistics and a global
  scene-context vector, and embeds the region into the text space; it outputs (mask, label, score) triples.

They differ by construction (local texture vs. region shape and context vs. coarse whole-frame context) and, above all,
by the data each learned from (:mod:`.sources`), so their per-class strengths differ, which is what
capability-guided fusion exploits.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN, STD = 0.5, 0.25


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W]."""
    return (images.permute(0, 3, 1, 2).float() / 255.0 - MEAN) / STD


def _cbr(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@dataclass
class DenseNetConfig:
    """Architecture of the compact dense teacher."""

    width: int = 48
    """Channels at 1/4 resolution (2x at 1/8, 0.75x in the stem)."""
    context_blocks: int = 2
    """3x3 convolutions at 1/8 resolution after the downsampling one; each widens the receptive field by 16 px
    (receptive field ``15 + 16 * context_dilation * context_blocks`` px: 31 px for 1 block), i.e. how much context
    a pixel sees."""
    context_dilation: int = 1
    """Dilation of those context convolutions (a cheap way to widen the receptive field)."""
    coords: bool = True
    """Two extra input channels with the pixel's normalised (y, x) position in the frame, the compact stand-in for
    a ViT's absolute position embeddings (LSeg's backbone has them; a small CNN otherwise cannot tell where in
    the frame a pixel lies)."""
    embed_dim: int = 384
    """Output dimension = the text encoder's (384 for MiniLM)."""
    input_scale: float = 1.0
    """The network sees the image resized by this factor (0.5: a coarse, context-heavy model whose features come
    at 1/8 of the frame's resolution; the third compact teacher). Output size ``ceil(floor(H * s) / 4)``."""


def coord_channels(b: int, h: int, w: int, frame_hw: tuple[int, int] | None = None, offsets=None,
                   device=None) -> torch.Tensor:
    """[B, 2, h, w] normalised (y, x) pixel-centre positions in [-1, 1] of an ``h x w`` window at ``offsets``
    (per image (y0, x0), default 0) in a frame of size ``frame_hw`` (default: the window itself)."""
    fh, fw = frame_hw or (h, w)
    off = torch.zeros(b, 2) if offsets is None else torch.as_tensor(offsets, dtype=torch.float32).view(b, 2)
    ys = (torch.arange(h).float()[None] + off[:, :1] + 0.5) / fh * 2 - 1  # [B, h]
    xs = (torch.arange(w).float()[None] + off[:, 1:] + 0.5) / fw * 2 - 1  # [B, w]
    return torch.stack([ys[:, :, None].expand(b, h, w), xs[:, None, :].expand(b, h, w)], 1).to(device)


class CompactDenseNet(nn.Module):
    """Per-pixel embeddings at 1/4 of the input resolution (``ceil(H/4) x ceil(W/4)``), L2-normalised.

    A local, texture-driven model like a patch-level LSeg: stem to 1/4, a short context path at 1/8 upsampled and
    fused 1x1 with the 1/4 features, and a 1x1 head into the text space. The receptive field is limited
    (``15 + 16 * context_dilation * context_blocks`` px; 111 px of a 320 px frame as shipped), so what a pixel is
    depends on its surface appearance and its surroundings, never on a whole-object decision.
    """

    def __init__(self, cfg: DenseNetConfig = DenseNetConfig()):
        super().__init__()
        w = cfg.width
        self.cfg = cfg
        self.stem = nn.Sequential(_cbr(5 if cfg.coords else 3, w * 3 // 4, 2), _cbr(w * 3 // 4, w, 2))
        self.ctx = nn.Sequential(_cbr(w, 2 * w, 2), *[_cbr(2 * w, 2 * w, dilation=cfg.context_dilation) for _ in range(cfg.context_blocks)])
        self.fuse = nn.Sequential(nn.Conv2d(3 * w, 3 * w, 1, bias=False), nn.BatchNorm2d(3 * w), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(3 * w, cfg.embed_dim, 1)

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        """x: normalised [B, 3, H, W] -> [B, D, ceil(H/4), ceil(W/4)] unit vectors. ``coords`` [B, 2, H, W]: the
        pixels' frame positions (:func:`coord_channels`; default: ``x`` is a whole frame)."""
        if self.cfg.coords:
            if coords is None:
                coords = coord_channels(x.shape[0], x.shape[2], x.shape[3], device=x.device)
            x = torch.cat([x, coords.to(x.dtype)], 1)
        if self.cfg.input_scale != 1.0:
            x = F.interpolate(x, scale_factor=self.cfg.input_scale, mode="bilinear", align_corners=False,
                              antialias=True, recompute_scale_factor=False)
        f1 = self.stem(x)
        up = F.interpolate(self.ctx(f1), size=f1.shape[-2:], mode="bilinear", align_corners=False)
        return F.normalize(self.head(self.fuse(torch.cat([up, f1], 1))), dim=1)


@dataclass
class MaskNetConfig:
    """Architecture of the compact mask teacher's region classifier."""

    width: int = 32
    """Channels of the first backbone stage (2x at the fine level, 4x at the coarse level)."""
    embed_dim: int = 384
    """Output dimension = the text encoder's (384 for MiniLM)."""
    hidden: int = 256
    """Hidden width of the region MLP."""
    input_scale: float = 0.5
    """The backbone sees the image resized by this factor (it needs context, not detail)."""


GEOM_DIM = 8
"""Region shape statistics: area fraction, centroid x/y, bbox width/height, mean RGB."""


class CompactMaskNet(nn.Module):
    """Region classifier over class-agnostic proposals: region embeddings in the text space, L2-normalised.

    Backbone on the downscaled image: a fine level (stride 4 of its input) and a coarse, dilated level (stride 16,
    receptive field covering most of the frame). Each region pools both levels by area overlap (the fraction of
    every feature cell the region covers), and the MLP sees [fine, coarse, scene mean, shape statistics]: a
    region is recognised by its extent, shape and surroundings, as a whole.
    """

    def __init__(self, cfg: MaskNetConfig = MaskNetConfig()):
        super().__init__()
        w = cfg.width
        self.cfg = cfg
        self.fine = nn.Sequential(_cbr(3, w, 2), _cbr(w, w * 2, 2), _cbr(w * 2, w * 2))
        self.coarse = nn.Sequential(_cbr(w * 2, w * 4, 2), _cbr(w * 4, w * 4, dilation=2), _cbr(w * 4, w * 4, 2),
                                    _cbr(w * 4, w * 4, dilation=2))
        c = w * 2 + w * 4 * 2
        self.mlp = nn.Sequential(nn.Linear(c + GEOM_DIM, cfg.hidden), nn.ReLU(inplace=True),
                                 nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(inplace=True),
                                 nn.Linear(cfg.hidden, cfg.embed_dim))

    def forward(self, x: torch.Tensor, regions: list[torch.Tensor]) -> list[torch.Tensor]:
        """x: normalised [B, 3, H, W]; regions: per image int64 [h, w] region ids 0..R-1 (any resolution).
        Returns per image [R, D] unit region embeddings."""
        img = x
        if self.cfg.input_scale != 1.0:
            x = F.interpolate(x, scale_factor=self.cfg.input_scale, mode="bilinear", align_corners=False,
                              antialias=True, recompute_scale_factor=False)
        f1 = self.fine(x)
        f2 = self.coarse(f1)
        out = []
        for b, reg in enumerate(regions):
            h, w = reg.shape
            r = int(reg.max()) + 1
            p1 = region_pool(reg, f1[b], r)
            p2 = region_pool(reg, f2[b], r)
            glob = f2[b].mean((1, 2))[None].expand(r, -1)
            geom = region_geometry(reg, F.interpolate(img[b:b + 1], size=(h, w), mode="area")[0])
            out.append(F.normalize(self.mlp(torch.cat([p1, p2, glob, geom], 1)), dim=1))
        return out


def region_pool(reg: torch.Tensor, feat: torch.Tensor, r: int) -> torch.Tensor:
    """Mean of the feature map ``feat`` [C, hf, wf] over each region of ``reg`` int64 [h, w] (ids 0..r-1), every
    feature cell weighted by the number of the region's pixels that fall into it. Returns [r, C]."""
    h, w = reg.shape
    c, hf, wf = feat.shape
    cy = (torch.arange(h, device=reg.device) * hf) // h
    cx = (torch.arange(w, device=reg.device) * wf) // w
    cell = (cy[:, None] * wf + cx[None, :]).reshape(-1)
    weights = torch.bincount(reg.reshape(-1) * (hf * wf) + cell, minlength=r * hf * wf).view(r, hf * wf).float()
    weights = weights / weights.sum(1, keepdim=True).clamp_min(1)
    return weights @ feat.reshape(c, -1).T


def region_geometry(reg: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """Shape statistics [R, 8] of regions ``reg`` int64 [h, w] over the normalised image ``img`` [3, h, w]."""
    h, w = reg.shape
    ids = reg.reshape(-1)
    r = int(ids.max()) + 1
    ys = torch.arange(h, device=reg.device).repeat_interleave(w).float() / h
    xs = torch.arange(w, device=reg.device).repeat(h).float() / w
    cnt = torch.bincount(ids, minlength=r).float().clamp_min(1)

    def mean(v):
        return torch.zeros(r, device=reg.device).index_add_(0, ids, v) / cnt

    ymin = torch.full((r,), 1.0, device=reg.device).scatter_reduce(0, ids, ys, "amin")
    ymax = torch.zeros(r, device=reg.device).scatter_reduce(0, ids, ys, "amax")
    xmin = torch.full((r,), 1.0, device=reg.device).scatter_reduce(0, ids, xs, "amin")
    xmax = torch.zeros(r, device=reg.device).scatter_reduce(0, ids, xs, "amax")
    rgb = torch.zeros(r, 3, device=reg.device).index_add_(0, ids, img.reshape(3, -1).T) / cnt[:, None]
    return torch.cat([(cnt / (h * w))[:, None], mean(xs)[:, None], mean(ys)[:, None],
                      (xmax - xmin)[:, None], (ymax - ymin)[:, None], rgb], 1)
