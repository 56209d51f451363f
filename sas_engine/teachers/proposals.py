"""Class-agnostic region proposals for the compact mask teacher: SLIC superpixels + greedy colour merging.

Pure torch, vectorised over pixels (each pixel compares itself with the 9 cluster centres of its grid neighbourhood),
deterministic. Used at a reduced resolution and upsampled by the caller.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ProposalConfig:
    """Parameters of the region proposals."""

    n_segments: int = 120
    """Approximate number of SLIC superpixels."""
    compactness: float = 12.0
    """Weight of the spatial distance against the colour distance (colour in 0..255 units)."""
    iterations: int = 6
    """SLIC assignment/update iterations."""
    merge_threshold: float = 18.0
    """Adjacent regions whose mean colours are closer than this (0..255 RGB, Euclidean) are merged."""
    min_area: int = 30
    """Regions smaller than this many pixels are merged into their most similar neighbour."""


def slic(image: torch.Tensor, cfg: ProposalConfig = ProposalConfig()) -> torch.Tensor:
    """SLIC superpixels of ``image`` float [H, W, 3] (0..255). Returns int64 [H, W] labels in 0..S-1."""
    h, w, _ = image.shape
    step = max(2, int(round((h * w / cfg.n_segments) ** 0.5)))
    gy, gx = (h + step - 1) // step, (w + step - 1) // step
    ys = torch.arange(h).view(h, 1).expand(h, w)
    xs = torch.arange(w).view(1, w).expand(h, w)
    pix = torch.cat([image.reshape(-1, 3).float(), ys.reshape(-1, 1).float(), xs.reshape(-1, 1).float()], 1)
    cy = (ys // step).reshape(-1)
    cx = (xs // step).reshape(-1)
    # candidate centres: 3x3 neighbourhood of the pixel's grid cell
    dy = torch.tensor([-1, -1, -1, 0, 0, 0, 1, 1, 1])
    dx = torch.tensor([-1, 0, 1, -1, 0, 1, -1, 0, 1])
    ny, nx = (cy[:, None] + dy).clamp(0, gy - 1), (cx[:, None] + dx).clamp(0, gx - 1)
    cand = ny * gx + nx  # [P, 9]
    # initial centres at cell centres
    cys = (torch.arange(gy).float() * step + step / 2).clamp(max=h - 1)
    cxs = (torch.arange(gx).float() * step + step / 2).clamp(max=w - 1)
    cyy, cxx = torch.meshgrid(cys, cxs, indexing="ij")
    col = image[cyy.long().reshape(-1), cxx.long().reshape(-1)].float()
    centres = torch.cat([col, cyy.reshape(-1, 1), cxx.reshape(-1, 1)], 1)
    sw = (cfg.compactness / step) ** 2
    label = cand[:, 4]
    for _ in range(cfg.iterations):
        c = centres[cand]  # [P, 9, 5]
        d = ((pix[:, None, :3] - c[..., :3]) ** 2).sum(-1) + sw * ((pix[:, None, 3:] - c[..., 3:]) ** 2).sum(-1)
        label = cand.gather(1, d.argmin(1, keepdim=True)).squeeze(1)
        s = torch.zeros_like(centres).index_add_(0, label, pix)
        n = torch.zeros(centres.shape[0]).index_add_(0, label, torch.ones(label.shape[0]))
        keep = n > 0
        centres[keep] = s[keep] / n[keep, None]
    _, compact = torch.unique(label, return_inverse=True)
    return compact.view(h, w)


def _find(parent: list[int], a: int) -> int:
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


def merge_regions(image: torch.Tensor, labels: torch.Tensor, cfg: ProposalConfig = ProposalConfig()) -> torch.Tensor:
    """Greedily merge adjacent regions of similar mean colour, then absorb tiny regions. Returns int64 [H, W] 0..R-1."""
    n = int(labels.max()) + 1
    flat = labels.reshape(-1)
    cnt = torch.bincount(flat, minlength=n).float()
    mean = torch.zeros(n, 3).index_add_(0, flat, image.reshape(-1, 3).float()) / cnt.clamp_min(1)[:, None]
    pairs = torch.cat([torch.stack([labels[:, :-1].reshape(-1), labels[:, 1:].reshape(-1)], 1),
                       torch.stack([labels[:-1].reshape(-1), labels[1:].reshape(-1)], 1)])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = torch.unique(torch.sort(pairs, 1).values, dim=0)
    dist = (mean[pairs[:, 0]] - mean[pairs[:, 1]]).norm(dim=1)
    order = torch.argsort(dist, stable=True)
    parent = list(range(n))
    size = cnt.tolist()
    csum = (mean * cnt[:, None]).tolist()
    pl, dl = pairs.tolist(), dist.tolist()
    for i in order.tolist():
        a, b = _find(parent, pl[i][0]), _find(parent, pl[i][1])
        if a == b:
            continue
        ma = [v / size[a] for v in csum[a]]
        mb = [v / size[b] for v in csum[b]]
        d = sum((x - y) ** 2 for x, y in zip(ma, mb)) ** 0.5
        small = min(size[a], size[b]) < cfg.min_area
        if d < cfg.merge_threshold or small or dl[i] < cfg.merge_threshold * 0.5:
            if d >= cfg.merge_threshold and not small:
                continue
            parent[b] = a
            size[a] += size[b]
            csum[a] = [x + y for x, y in zip(csum[a], csum[b])]
    roots = torch.tensor([_find(parent, i) for i in range(n)])
    _, compact = torch.unique(roots[flat], return_inverse=True)
    return compact.view(labels.shape)


def propose_regions(image: np.ndarray, cfg: ProposalConfig = ProposalConfig()) -> np.ndarray:
    """Class-agnostic regions of an RGB image uint8 [H, W, 3]: int64 [H, W] region id 0..R-1."""
    img = torch.as_tensor(np.ascontiguousarray(image)).float()
    return merge_regions(img, slic(img, cfg), cfg).numpy()
