"""A scene's 3D Gaussians: parameters, initialisation from the reconstruction, and (de)serialisation.

Parameters are stored raw and activated on use, as in 3DGS: ``scales = exp(log_scales)``, ``opacities =
sigmoid(opacity_logits)``, ``colors = sigmoid(color_logits)`` (view-independent RGB: spherical harmonics of degree 0
only, enough for the synthetic world's Lambert shading), quaternions normalised by the rasteriser.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SASInputError

PARAMS = ("means", "quats", "log_scales", "opacity_logits", "color_logits")
"""Names of the learnable tensors (the store payload keys of ``gaussians.fit``)."""


@dataclass
class Gaussians:
    """N Gaussians (float32 tensors; see the module docstring for the activations)."""

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacity_logits: torch.Tensor
    color_logits: torch.Tensor

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def scales(self) -> torch.Tensor:
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.opacity_logits)

    @property
    def colors(self) -> torch.Tensor:
        return torch.sigmoid(self.color_logits)

    def tensors(self) -> dict:
        return {k: getattr(self, k) for k in PARAMS}

    def requires_grad_(self, flag: bool = True) -> "Gaussians":
        for t in self.tensors().values():
            t.requires_grad_(flag)
        return self

    def detach(self) -> "Gaussians":
        return Gaussians(**{k: v.detach().clone() for k, v in self.tensors().items()})

    def to_payload(self) -> dict:
        return {k: v.detach().cpu().float().contiguous() for k, v in self.tensors().items()}

    @classmethod
    def from_payload(cls, payload: dict, source=None) -> "Gaussians":
        missing = [k for k in PARAMS if k not in payload]
        if missing:
            raise SASInputError(source, f"Gaussian payload lacks {', '.join(missing)}")
        g = cls(**{k: torch.as_tensor(payload[k]).float() for k in PARAMS})
        n = len(g)
        for k, shape in (("quats", (n, 4)), ("log_scales", (n, 3)), ("opacity_logits", (n,)),
                         ("color_logits", (n, 3)), ("means", (n, 3))):
            if tuple(getattr(g, k).shape) != shape:
                raise SASInputError(source, f"Gaussian payload: {k} is {list(getattr(g, k).shape)}, expected "
                                            f"{list(shape)}")
        return g


def voxel_downsample(points: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """(kept point index of each occupied voxel [M], voxel of each point [N]): the point nearest each voxel's
    centroid represents it. ``voxel`` <= 0 keeps every point."""
    p = np.asarray(points, dtype=np.float64)
    if voxel <= 0:
        return np.arange(len(p)), np.arange(len(p))
    key = np.floor((p - p.min(0)) / voxel).astype(np.int64)
    _, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    m = int(inv.max()) + 1
    cnt = np.bincount(inv, minlength=m).astype(np.float64)
    cen = np.stack([np.bincount(inv, p[:, d], minlength=m) for d in range(3)], 1) / cnt[:, None]
    dist = np.linalg.norm(p - cen[inv], axis=1)
    order = np.lexsort((dist, inv))
    first = np.ones(len(order), dtype=bool)
    first[1:] = inv[order][1:] != inv[order][:-1]
    return order[first], inv


def init_from_points(points: np.ndarray, colors: np.ndarray, voxel: float, opacity: float = 0.8,
                     scale_factor: float = 0.6) -> tuple[Gaussians, np.ndarray]:
    """Gaussians at the reconstruction's points (one per ``voxel``-sized cell), isotropic with a standard deviation of
    ``scale_factor`` x the mean distance to the 3 nearest kept points, the points' colours, opacity ``opacity``.

    Returns (Gaussians, index of the scene point each Gaussian started from [M])."""
    from scipy.spatial import cKDTree

    p = np.asarray(points, dtype=np.float32)
    c = np.asarray(colors)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) < 4:
        raise SASInputError(None, f"Gaussian initialisation needs [N >= 4, 3] points, got {list(p.shape)}")
    keep, _ = voxel_downsample(p, voxel)
    pk = p[keep]
    d, _ = cKDTree(pk).query(pk, k=4)
    s = np.clip(d[:, 1:].mean(1) * scale_factor, 1e-3, 0.5)
    col = np.clip(c[keep].astype(np.float32) / 255.0, 0.02, 0.98)
    m = len(keep)
    g = Gaussians(
        means=torch.from_numpy(pk.copy()),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(m, 1),
        log_scales=torch.from_numpy(np.log(s).astype(np.float32))[:, None].repeat(1, 3),
        opacity_logits=torch.full((m,), float(np.log(opacity / (1 - opacity)))),
        color_logits=torch.from_numpy(np.log(col / (1 - col)).astype(np.float32)),
    )
    return g, keep
