"""Class-agnostic region proposals for the compact mask teacher: SLIC superpixels + greedy colour merging.

SLIC is one numba kernel (each pixel compares itself with the 9 cluster centres of its grid neighbourhood); the
merging is torch plus a union-find. Deterministic. Used at a reduced resolution and upsampled by the caller.
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
    """SLIC superpixels of ``image`` float [H, W, 3] (0..255). Returns int64 [H, W] labels in 0..S-1.

    Grid of ``step`` px cells (about ``n_segments`` of them), one centre per cell; each iteration assigns every pixel
    to the nearest of the 9 centres around its cell (colour distance + ``(compactness / step)^2`` x spatial
    distance, squared) and moves each centre to its pixels' mean. One numba pass per iteration
    (:func:`._proposal_kernels.slic_labels`)."""
    from ._proposal_kernels import slic_labels

    h, w, _ = image.shape
    step = max(2, int(round((h * w / cfg.n_segments) ** 0.5)))
    img = np.ascontiguousarray(torch.as_tensor(image).float().numpy())
    label = slic_labels(img, step, np.float32((cfg.compactness / step) ** 2), int(cfg.iterations))
    _, compact = np.unique(label, return_inverse=True)
    return torch.from_numpy(compact.reshape(h, w).astype(np.int64))


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
    pairs = torch.sort(pairs, 1).values
    key = torch.unique(pairs[:, 0] * n + pairs[:, 1])  # 1-D: the same sorted rows as unique(dim=0), much faster
    pairs = torch.stack([key // n, key % n], 1)
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
