"""Sparse 3D convolution with MinkowskiEngine's conventions, in plain PyTorch (CPU and CUDA), plus optional backends.

Public API::

    SparseTensor(features [M, C], coords int32 [M, 4] (batch, x, y, z), tensor_stride=1)
    SparseConv3d, SparseConvTranspose3d, SparseBatchNorm, SparseReLU, cat
    make_sparse_tensor(features, coords, backend=None) / forward_points(model, coords, feats, ...)
    get_backend(name), available_backends(device), set_default_backend(name), BACKENDS
"""
from __future__ import annotations

import torch

from .backends import BACKENDS, available_backends, get_backend, set_default_backend
from .coords import CoordinateManager, KernelMap, floor_coords, kernel_offsets
from .nn import SparseBatchNorm, SparseConv3d, SparseConvTranspose3d, SparseReLU
from .tensor import SparseTensor, batch_coords, cat

__all__ = [
    "BACKENDS", "CoordinateManager", "KernelMap", "SparseBatchNorm", "SparseConv3d", "SparseConvTranspose3d",
    "SparseReLU", "SparseTensor", "available_backends", "batch_coords", "cat", "floor_coords", "forward_points",
    "get_backend", "kernel_offsets", "make_sparse_tensor", "set_default_backend",
]


def _as_batched(coords: torch.Tensor) -> torch.Tensor:
    coords = torch.as_tensor(coords)
    if coords.dim() != 2 or coords.shape[1] not in (3, 4):
        raise ValueError(f"coordinates must be [M, 3] (one scene) or [M, 4] (batch, x, y, z), got {tuple(coords.shape)}")
    if coords.shape[1] == 3:
        coords = torch.cat([torch.zeros(coords.shape[0], 1, dtype=coords.dtype, device=coords.device), coords], 1)
    return coords.to(torch.int32)


def make_sparse_tensor(features: torch.Tensor, coords: torch.Tensor, backend: str | None = None,
                       tensor_stride: int = 1) -> SparseTensor:
    """Input tensor of a network on ``backend`` (``None``: default; ``"auto"``: best for the features' device).

    ``coords`` may be ``[M, 3]`` (one scene, batch 0) or ``[M, 4]``; rows must be unique.
    """
    coords = _as_batched(coords).to(features.device)
    return get_backend(backend, features.device).make_tensor(features, coords, tensor_stride)


def forward_points(model: torch.nn.Module, coords: torch.Tensor, feats: torch.Tensor | None = None, *,
                   inverse: torch.Tensor | None = None, backend: str | None = None) -> torch.Tensor:
    """Run a sparse network on voxels and return its output features as a dense ``[M, C]`` (or ``[N, C]``) tensor.

    Args:
        model: maps a :class:`SparseTensor` to a :class:`SparseTensor` on the same coordinates (e.g. MinkUNet).
        coords: unique voxel coordinates ``[M, 3]`` or ``[M, 4]`` (batch, x, y, z).
        feats: input features ``[M, C_in]``; ``None`` gives all ones with ``model.in_channels`` channels (OpenScene).
        inverse: optional int64 ``[N]`` point -> voxel map (from voxelisation); the output is then per point.
        backend: sparse backend name (see :func:`get_backend`).

    The output rows follow ``coords``' row order (then ``inverse``), on the device of ``feats`` (or of the model).
    """
    device = next(model.parameters()).device
    if feats is None:
        feats = torch.ones(len(coords), int(getattr(model, "in_channels", 3)), device=device)
    coords = _as_batched(coords).to(device)
    x = make_sparse_tensor(feats.to(device), coords, backend)
    out = model(x)
    if out.tensor_stride != 1 or out.features.shape[0] != coords.shape[0]:
        raise ValueError("forward_points: the model must return a tensor on its input coordinates (stride 1)")
    f = out.features
    if not torch.equal(out.coords, coords):  # a backend that reorders rows: map them back by coordinate key
        keys_out, order = torch.sort(x.manager.encode(out.coords))
        f = f[order[torch.searchsorted(keys_out, x.manager.encode(coords))]]
    return f if inverse is None else f[torch.as_tensor(inverse, device=f.device)]
