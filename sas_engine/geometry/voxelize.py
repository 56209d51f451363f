"""Voxelisation for the sparse 3D network with OpenScene / MinkowskiEngine semantics, plus OpenScene's augmentation.

Steps (facts of OpenScene's ``Voxelizer.voxelize`` + ``sparse_quantize`` + ``RandomHorizontalFlip``):

1. optional elastic distortion of the points (OpenScene's training loader, before voxelisation);
2. ``c = floor(R @ (s / voxel_size) * xyz)``: rotation R = product of rotations about x, y, z (angles drawn
   uniformly in their bounds, multiplied in a random order) and scale s drawn in ``scale_bounds``; without
   augmentation R = I, s = 1, i.e. ``floor(xyz * (1 / voxel_size))``;
3. shift so that the minimum coordinate is 0 on every axis;
4. one voxel per distinct coordinate; the *first point in input order* that falls in a voxel represents it
   (``indices``), and ``inverse`` maps every point to its voxel. Voxels are ordered by the 64-bit FNV-1a hash of
   their coordinates, as OpenScene's ``sparse_quantize`` (``order="input"`` orders them by first occurrence instead);
5. random flips (OpenScene's RandomHorizontalFlip): with probability ``flip_prob`` the step runs, and then each
   horizontal axis (x, y) is flipped with probability ``flip_axis_prob`` as ``c = max(c) - c``.

Note: OpenScene's loaders build their Voxelizer with augmentation switched on even for evaluation (the rotation /
scale of step 2 are random at test time too, which its test-time augmentation relies on). Here ``augment=None``
means no transform at all; pass an :class:`AugmentConfig` to reproduce either behaviour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import SASInputError


@dataclass(frozen=True)
class AugmentConfig:
    """Random geometric augmentation applied during voxelisation (OpenScene's training values by default)."""

    rotation_bounds: tuple = ((-math.pi / 64, math.pi / 64), (-math.pi / 64, math.pi / 64), (-math.pi, math.pi))
    """Angle ranges (radians) about x, y, z; ``None`` for an axis means no rotation about it."""
    random_axis_order: bool = True
    """Multiply the three axis rotations in a random order (OpenScene: yes, "to prevent bias")."""
    scale_bounds: Optional[tuple] = (0.9, 1.1)
    """Uniform scale range, or ``None`` for no scaling."""
    flip_prob: float = 0.95
    """Probability that the flip step runs at all (OpenScene's RandomHorizontalFlip: 0.95)."""
    flip_axis_prob: float = 0.5
    """Per horizontal axis (x, y), probability of flipping once the flip step runs."""
    elastic: Optional[tuple] = None
    """Elastic distortion ((granularity, magnitude), ...) in metres, e.g. OpenScene's ((0.2, 0.4), (0.8, 1.6));
    ``None`` (default) skips it."""
    elastic_prob: float = 0.95
    """Probability that the elastic distortion runs (OpenScene: 0.95)."""


@dataclass
class Voxelized:
    """Result of :func:`voxelize`.

    Attributes:
        coords: int32 [M, 3] non-negative voxel coordinates.
        indices: int64 [M] index of the point that represents each voxel (its first point in input order).
        inverse: int64 [N] voxel of every input point (``coords[inverse]`` are the points' voxels).
        transform: float64 [4, 4] map from (distorted) points to continuous voxel coordinates before the floor:
            rotation and scale, then the shift to a zero minimum (flips are applied afterwards on integer coords).
        flipped: per axis, whether the flip was applied.
    """

    coords: np.ndarray
    indices: np.ndarray
    inverse: np.ndarray
    transform: np.ndarray
    flipped: tuple = field(default=(False, False, False))

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])


def axis_rotation(axis: int, theta: float) -> np.ndarray:
    """3x3 rotation by ``theta`` radians about coordinate axis ``axis`` (0=x, 1=y, 2=z), right-handed."""
    c, s = math.cos(theta), math.sin(theta)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def fnv1a_hash(coords: np.ndarray) -> np.ndarray:
    """64-bit FNV-1a-style hash of non-negative integer rows (OpenScene's ``fnv_hash_vec``): uint64 [N]."""
    arr = np.asarray(coords).astype(np.uint64)
    h = np.full(arr.shape[0], np.uint64(14695981039346656037), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(arr.shape[1]):
            h = h * np.uint64(1099511628211)
            h = np.bitwise_xor(h, arr[:, j])
    return h


def elastic_distortion(points: np.ndarray, granularity: float, magnitude: float, rng: np.random.Generator):
    """Smooth random displacement field (noise on a ``granularity`` grid, box-blurred, trilinearly interpolated)."""
    from scipy.interpolate import RegularGridInterpolator
    from scipy.ndimage import convolve

    lo = points.min(0)
    dims = ((points - lo).max(0) // granularity).astype(int) + 3
    noise = rng.standard_normal((*dims, 3)).astype(np.float32)
    kernels = [np.ones(s, np.float32) / 3 for s in ((3, 1, 1, 1), (1, 3, 1, 1), (1, 1, 3, 1))]
    for _ in range(2):
        for k in kernels:
            noise = convolve(noise, k, mode="constant", cval=0)
    axes = [np.linspace(a - granularity, a + granularity * (d - 2), d) for a, d in zip(lo, dims)]
    interp = RegularGridInterpolator(axes, noise, bounds_error=False, fill_value=0)
    return points + interp(points) * magnitude


def voxelize(points, voxel_size: float, augment: Optional[AugmentConfig] = None, seed=None,
             order: str = "fnv") -> Voxelized:
    """Quantise points to voxels (OpenScene semantics, see the module docstring).

    Args:
        points: float [N, 3] metres (numpy or torch).
        voxel_size: voxel edge in metres (0.02 indoor, 0.05 outdoor).
        augment: random rotation / scale / flips / elastic distortion, or ``None``.
        seed: seed (int or ``np.random.Generator``) of the augmentation draws; same seed -> same result.
        order: voxel order, ``"fnv"`` (OpenScene's sparse_quantize) or ``"input"`` (by first occurrence).
    """
    p = np.asarray(points.detach().cpu().numpy() if hasattr(points, "detach") else points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] == 0:
        raise SASInputError(None, f"voxelize: points must be a non-empty [N, 3] array, got {list(p.shape)}")
    if not np.isfinite(p).all():
        raise SASInputError(None, "voxelize: points contain NaN or infinite coordinates")
    if not voxel_size > 0:
        raise SASInputError(None, f"voxelize: voxel_size must be > 0, got {voxel_size}")
    if order not in ("fnv", "input"):
        raise SASInputError(None, f"voxelize: order must be 'fnv' or 'input', got {order!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rot, scale = np.eye(3), 1.0 / voxel_size
    if augment is not None:
        if augment.elastic:
            if rng.random() < augment.elastic_prob:
                for gran, mag in augment.elastic:
                    p = elastic_distortion(p, gran, mag, rng)
        mats = []
        for axis, bound in enumerate(augment.rotation_bounds):
            theta = 0.0 if bound is None else float(rng.uniform(bound[0], bound[1]))
            mats.append(axis_rotation(axis, theta))
        if augment.random_axis_order:
            mats = [mats[k] for k in rng.permutation(3)]
        rot = mats[0] @ mats[1] @ mats[2]
        if augment.scale_bounds is not None:
            scale *= float(rng.uniform(augment.scale_bounds[0], augment.scale_bounds[1]))
    m = np.eye(4)
    m[:3, :3] = rot * scale
    c = np.floor(p @ m[:3, :3].T)
    cmin = c.min(0)
    shift = np.eye(4)
    shift[:3, 3] = -cmin
    c = (c - cmin).astype(np.int64)
    if order == "fnv":
        key = fnv1a_hash(c)
    else:
        dims = c.max(0) + 1
        key = np.ravel_multi_index(c.T, dims) if float(np.prod(dims.astype(np.float64))) < 2 ** 62 else fnv1a_hash(c)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    coords = c[first]
    if not np.array_equal(coords[inverse], c):  # hash collision (astronomically rare): exact fallback
        _, first, inverse = np.unique(c, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        coords = c[first]
    if order == "input":
        perm = np.argsort(first, kind="stable")
        rank = np.empty_like(perm)
        rank[perm] = np.arange(perm.size)
        first, coords, inverse = first[perm], coords[perm], rank[inverse]
    flipped = [False, False, False]
    if augment is not None and rng.random() < augment.flip_prob:
        for axis in (0, 1):
            if rng.random() < augment.flip_axis_prob:
                coords[:, axis] = coords[:, axis].max() - coords[:, axis]
                flipped[axis] = True
    return Voxelized(coords=coords.astype(np.int32), indices=first.astype(np.int64),
                     inverse=inverse.astype(np.int64), transform=shift @ m, flipped=tuple(flipped))
