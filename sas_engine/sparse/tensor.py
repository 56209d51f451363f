"""The sparse tensor: feature rows, integer coordinates (batch, x, y, z), a tensor stride and a shared coordinate manager."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from .coords import CoordinateManager


class SparseTensor:
    """Features ``[M, C]`` at integer coordinates ``[M, 4]`` (batch, x, y, z) in original voxel units.

    Args:
        features: float ``[M, C]``.
        coords: int ``[M, 4]`` unique rows; may be omitted when ``manager`` already holds the set at ``tensor_stride``.
        tensor_stride: the spacing of this tensor's coordinates (1 for the input; 2, 4, 8, 16 down the encoder).
        manager: the :class:`CoordinateManager` of the forward pass; a new one is created from ``coords`` if omitted.
        backend: name of the sparse backend running the convolutions (``None``: the current default, see
            :func:`sas_engine.sparse.backends.get_backend`).
        native: backend-specific companion object (e.g. a MinkowskiEngine tensor); ``None`` for the torch backend.

    Tensors derived from one input (by convolutions, batch norm, cat, ...) share the manager, so kernel maps built by
    the encoder are reused by the decoder. Feature-only operations keep coordinates and row order.
    """

    __slots__ = ("features", "coords", "tensor_stride", "manager", "backend", "native")

    def __init__(self, features: torch.Tensor, coords: torch.Tensor | None = None, tensor_stride: int = 1, *,
                 manager: CoordinateManager | None = None, backend: str | None = None, native: Any = None):
        from .backends import get_backend

        tensor_stride = int(tensor_stride)
        if manager is None:
            if coords is None:
                raise ValueError("SparseTensor needs coords or a coordinate manager")
            if coords.device != features.device:
                raise ValueError(f"features on {features.device} but coordinates on {coords.device}")
            manager = CoordinateManager(coords, tensor_stride)
        if coords is None:
            coords = manager.get_coords(tensor_stride)
        if features.dim() != 2 or features.shape[0] != coords.shape[0]:
            raise ValueError(f"features {tuple(features.shape)} do not match {coords.shape[0]} coordinate rows")
        self.features = features
        self.coords = coords
        self.tensor_stride = tensor_stride
        self.manager = manager
        self.backend = get_backend(backend).name
        self.native = native

    # ME-style aliases
    @property
    def F(self) -> torch.Tensor:
        return self.features

    @property
    def C(self) -> torch.Tensor:
        return self.coords

    @property
    def shape(self) -> torch.Size:
        return self.features.shape

    @property
    def device(self) -> torch.device:
        return self.features.device

    def __len__(self) -> int:
        return self.features.shape[0]

    def __repr__(self) -> str:
        return (f"SparseTensor(rows={self.features.shape[0]}, channels={self.features.shape[1]}, "
                f"tensor_stride={self.tensor_stride}, backend={self.backend!r})")

    def replace_feature(self, features: torch.Tensor) -> "SparseTensor":
        """Same coordinates, stride, manager and backend; new feature rows (same row count)."""
        if features.shape[0] != self.features.shape[0]:
            raise ValueError(f"new features have {features.shape[0]} rows, tensor has {self.features.shape[0]}")
        out = SparseTensor.__new__(SparseTensor)
        out.features, out.coords, out.tensor_stride = features, self.coords, self.tensor_stride
        out.manager, out.backend, out.native = self.manager, self.backend, self.native
        return out

    def same_coords(self, other: "SparseTensor") -> bool:
        return (self.manager is other.manager and self.tensor_stride == other.tensor_stride
                and self.coords.shape[0] == other.coords.shape[0])

    def _check_same(self, other: "SparseTensor", what: str) -> None:
        if not self.same_coords(other):
            raise ValueError(f"{what} needs tensors on the same coordinates (same manager and tensor stride); got "
                             f"strides {self.tensor_stride} and {other.tensor_stride}")

    def __add__(self, other: "SparseTensor") -> "SparseTensor":
        self._check_same(other, "addition")
        return self.replace_feature(self.features + other.features)

    def dense(self, shape: Sequence[int] | None = None, min_coord: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Scatter into a dense ``[B, C, X, Y, Z]`` grid at this tensor's stride; returns (grid, min_coord xyz)."""
        c = self.coords.to(torch.int64)
        lo = c[:, 1:].min(0).values if min_coord is None else torch.as_tensor(min_coord, device=c.device)
        idx = torch.div(c[:, 1:] - lo, self.tensor_stride, rounding_mode="floor")
        if shape is None:
            shape = (int(c[:, 0].max()) + 1, self.features.shape[1], *(idx.max(0).values + 1).tolist())
        grid = self.features.new_zeros(tuple(shape))
        grid[c[:, 0], :, idx[:, 0], idx[:, 1], idx[:, 2]] = self.features
        return grid, lo


def cat(*tensors: SparseTensor) -> SparseTensor:
    """Channel concatenation of tensors on the same coordinates, in argument order (MinkUNet: decoder first)."""
    if not tensors:
        raise ValueError("cat needs at least one tensor")
    for t in tensors[1:]:
        tensors[0]._check_same(t, "cat")
    return tensors[0].replace_feature(torch.cat([t.features for t in tensors], dim=1))


def batch_coords(coords_list: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack per-scene int ``[M_i, 3]`` voxel coordinates into int32 ``[sum M_i, 4]`` with the scene index first."""
    rows = []
    for b, c in enumerate(coords_list):
        c = torch.as_tensor(c)
        if c.dim() != 2 or c.shape[1] != 3:
            raise ValueError(f"scene {b}: coordinates must be [M, 3], got {tuple(c.shape)}")
        rows.append(torch.cat([torch.full((c.shape[0], 1), b, dtype=torch.int32, device=c.device), c.to(torch.int32)], 1))
    return torch.cat(rows, 0)
