"""The two compact teacher networks trained on the embedded synthetic world (the demo's stand-ins for LSeg and SEEM).

* :class:`CompactDenseNet` - LSeg-style: a small encoder-decoder CNN with a limited receptive field that embeds every
  pixel (at 1/4 resolution) into the text encoder's space; trained with LSeg's objective (per-pixel softmax over the
  similarities to the vocabulary's text embeddings).
* :class:`CompactMaskNet` - SEEM-style: class-agnostic region proposals (:mod:`.proposals`) and a region classifier that
  pools a coarse, large-context CNN feature map inside each region, adds the region's shape statistics and a global
  scene-context vector, and embeds the region into the text space; it outputs (mask, label, score) triples.

They see the same images but differ by construction (local texture vs. region shape and context), so their per-class
strengths differ, which is what capability-guided fusion exploits.
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

    width: int = 32
    """Channels of the first stage (later stages 1.5x and 3x)."""
    embed_dim: int = 384
    """Output dimension = the text encoder's (384 for MiniLM)."""


class CompactDenseNet(nn.Module):
    """Per-pixel embeddings at 1/4 of the input resolution, L2-normalised. Receptive field about 60 px."""

    def __init__(self, cfg: DenseNetConfig = DenseNetConfig()):
        super().__init__()
        w = cfg.width
        self.cfg = cfg
        self.stem = _cbr(3, w, 2)
        self.s1 = nn.Sequential(_cbr(w, w * 3 // 2, 2), _cbr(w * 3 // 2, w * 3 // 2))
        self.s2 = nn.Sequential(_cbr(w * 3 // 2, w * 3, 2), _cbr(w * 3, w * 3))
        self.fuse = _cbr(w * 3 + w * 3 // 2, w * 4)
        self.head = nn.Conv2d(w * 4, cfg.embed_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: normalised [B, 3, H, W] -> [B, D, H/4, W/4] unit vectors."""
        f1 = self.s1(self.stem(x))
        f2 = self.s2(f1)
        up = F.interpolate(f2, size=f1.shape[-2:], mode="bilinear", align_corners=False)
        return F.normalize(self.head(self.fuse(torch.cat([up, f1], 1))), dim=1)


@dataclass
class MaskNetConfig:
    """Architecture of the compact mask teacher's region classifier."""

    width: int = 32
    """Channels of the first backbone stage (doubling to 4x at 1/16 resolution)."""
    embed_dim: int = 384
    """Output dimension = the text encoder's (384 for MiniLM)."""
    hidden: int = 256
    """Hidden width of the region MLP."""


GEOM_DIM = 8
"""Region shape statistics: area fraction, centroid x/y, bbox width/height, mean RGB."""


class CompactMaskNet(nn.Module):
    """Region classifier over class-agnostic proposals: region embeddings in the text space, L2-normalised."""

    def __init__(self, cfg: MaskNetConfig = MaskNetConfig()):
        super().__init__()
        w = cfg.width
        self.cfg = cfg
        self.backbone = nn.Sequential(_cbr(3, w, 2), _cbr(w, w * 2, 2), _cbr(w * 2, w * 2), _cbr(w * 2, w * 4, 2),
                                      _cbr(w * 4, w * 4, dilation=2), _cbr(w * 4, w * 4, 2), _cbr(w * 4, w * 4, dilation=2))
        c = w * 4
        self.mlp = nn.Sequential(nn.Linear(2 * c + GEOM_DIM, cfg.hidden), nn.ReLU(inplace=True),
                                 nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(inplace=True),
                                 nn.Linear(cfg.hidden, cfg.embed_dim))

    def forward(self, x: torch.Tensor, regions: list[torch.Tensor]) -> list[torch.Tensor]:
        """x: normalised [B, 3, H, W]; regions: per image int64 [h, w] region ids 0..R-1 (any resolution).
        Returns per image [R, D] unit region embeddings."""
        feats = self.backbone(x)
        out = []
        for b, reg in enumerate(regions):
            h, w = reg.shape
            f = F.interpolate(feats[b:b + 1], size=(h, w), mode="bilinear", align_corners=False)[0]
            f = f.reshape(f.shape[0], -1).T  # [P, c]
            ids = reg.reshape(-1)
            r = int(ids.max()) + 1
            cnt = torch.bincount(ids, minlength=r).float().clamp_min(1)
            pooled = torch.zeros(r, f.shape[1], device=f.device).index_add_(0, ids, f) / cnt[:, None]
            glob = f.mean(0, keepdim=True).expand(r, -1)
            geom = region_geometry(reg, F.interpolate(x[b:b + 1], size=(h, w), mode="bilinear",
                                                      align_corners=False)[0])
            out.append(F.normalize(self.mlp(torch.cat([pooled, glob, geom], 1)), dim=1))
        return out


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
