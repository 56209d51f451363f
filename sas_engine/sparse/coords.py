"""Coordinates, kernel offsets and kernel maps of the plain-PyTorch sparse backend (MinkowskiEngine conventions).

Coordinates are int32 ``[M, 4]`` rows ``(batch, x, y, z)`` in *original voxel units*: a tensor at tensor stride ``s``
only holds multiples of ``s``. A :class:`CoordinateManager` is shared by every tensor of one forward pass; it keeps

- the coordinate set of every tensor stride (``stride -> int32 [M_s, 4]``), the finest one being the input's;
- their int64 keys (batch and offset-shifted xyz packed in mixed radix) sorted once (duplicate check, strided sets and
  the ``searchsorted`` fallback of the kernel maps);
- kernel maps keyed by ``(in_stride, out_stride, kernel_size, dilation)``. A transposed convolution uses the map of the
  matching strided convolution with its two sides swapped, so the decoder reuses the encoder's maps.

A kernel map lists, for each kernel offset ``k``, the pairs ``(in_row, out_row)`` with
``in_coord = out_coord + offset_k * in_stride * dilation``; the convolution is ``out[out_row] += in[in_row] @ W[k]``.
Offsets are ordered with x fastest, then y, then z; odd kernel sizes are centred (``i - K // 2``), even sizes run
``0 .. K-1`` (MinkowskiEngine's region type HYPER_CUBE). Within an offset the pairs are sorted by output row.

Neighbours are found in a dense int32 grid (row index per cell, -1 when empty) over the bounding box of the two sets
plus the kernel's reach, when that grid is small enough (:data:`DENSE_GRID_MAX_CELLS`), else by ``searchsorted`` on
the sorted keys; see :data:`KERNEL_MAP_METHODS`. On the CPU the grid look-up is one numba kernel
(:mod:`._map_kernels`) whose neighbour table and per-row neighbour patterns the grouped forward's plan
(:mod:`.functional`) takes over, when the table fits :data:`NEIGHBOUR_TABLE_MAX`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

MARGIN = 1 << 12
"""Padding (voxel units) around the input's bounding box inside the key space; coarser strides and kernel offsets
that stay within it are looked up without per-axis range checks."""

DENSE_GRID_MAX_CELLS = 1 << 25
"""Largest dense look-up grid (cells, int32: 128 MiB) a kernel map may allocate; larger extents use searchsorted."""

LOOKUP_CHUNK = 1 << 22
"""Kernel offsets are looked up in chunks of about this many (offset, output row) queries (bounds temporary memory)."""

NEIGHBOUR_TABLE_MAX = 1 << 25
"""On the CPU, grid look-ups whose neighbour table (offsets x output rows, int32: 128 MiB at this cap) fits are done by
one numba kernel (:mod:`._map_kernels`), which also hands the table to the grouped forward's plan; larger ones and
CUDA take the chunked torch look-up. Same pairs, same order."""

KERNEL_MAP_METHODS = ("auto", "grid", "searchsorted")
"""How :class:`CoordinateManager` finds neighbours: ``grid`` indexes a dense int32 grid over the bounding box (all
offsets of a chunk in one gather), ``searchsorted`` binary-searches the sorted keys (one pass per offset; the
original method, kept as the fallback and as a same-run baseline), ``auto`` takes ``grid`` when the grid fits
:data:`DENSE_GRID_MAX_CELLS` and the coordinates sit on their stride's lattice, else ``searchsorted``. Both give
identical maps (same pairs, same order)."""


def kernel_offsets(kernel_size: int, dilation: int = 1) -> torch.Tensor:
    """Integer offsets ``[K^3, 3]`` (int64, xyz) in ME order: x fastest; odd sizes centred, even sizes ``0..K-1``."""
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    r = torch.arange(kernel_size, dtype=torch.int64)
    if kernel_size % 2 == 1:
        r = r - kernel_size // 2
    z, y, x = torch.meshgrid(r, r, r, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], dim=1) * dilation


def floor_coords(coords: torch.Tensor, stride: int) -> torch.Tensor:
    """``floor(c / stride) * stride`` on the xyz columns (true floor for negatives); the batch column is kept."""
    out = coords.clone()
    out[:, 1:] = torch.div(coords[:, 1:], stride, rounding_mode="floor") * stride
    return out


@dataclass
class KernelMap:
    """Input/output row pairs of one convolution, grouped by kernel offset.

    ``in_idx`` / ``out_idx`` are int64 ``[P]``; the pairs of offset ``k`` are ``[bounds[k], bounds[k+1])``.
    ``identity`` is the offset whose pairs are ``(i, i)`` for every row (centre of a stride-1 conv), or -1; its pairs
    are not stored (the convolution uses a plain matrix product for it).
    """

    in_idx: torch.Tensor
    out_idx: torch.Tensor
    bounds: list[int]
    n_in: int
    n_out: int
    identity: int = -1
    _swapped: "KernelMap | None" = field(default=None, repr=False)
    _plans: dict = field(default_factory=dict, repr=False)
    """Per-map caches of :mod:`.functional` (the grouped forward plan), built on first use."""

    @property
    def volume(self) -> int:
        return len(self.bounds) - 1

    def pairs(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(in_idx, out_idx) of offset ``k`` (views; the identity offset returns aranges)."""
        if k == self.identity:
            ar = torch.arange(self.n_in, device=self.in_idx.device)
            return ar, ar
        a, b = self.bounds[k], self.bounds[k + 1]
        return self.in_idx[a:b], self.out_idx[a:b]

    def swapped(self) -> "KernelMap":
        """The map of the transposed convolution: inputs and outputs exchanged, offsets kept (cached).

        The pairs are re-sorted by the new output row within each offset, which keeps ``index_add_`` cache friendly.
        """
        if self._swapped is None:
            ins, outs = [], []
            for k in range(self.volume):
                a, b = self.bounds[k], self.bounds[k + 1]
                o = self.in_idx[a:b]
                o_sorted, order = torch.sort(o)
                outs.append(o_sorted)
                ins.append(self.out_idx[a:b][order])
            dev = self.in_idx.device
            self._swapped = KernelMap(
                torch.cat(ins) if ins else torch.empty(0, dtype=torch.int64, device=dev),
                torch.cat(outs) if outs else torch.empty(0, dtype=torch.int64, device=dev),
                list(self.bounds), self.n_out, self.n_in, self.identity)
            self._swapped._swapped = self
        return self._swapped

    def num_pairs(self) -> int:
        return self.bounds[-1] + (self.n_in if self.identity >= 0 else 0)


class CoordinateManager:
    """Coordinate sets per tensor stride and cached kernel maps, shared by the tensors of one forward pass.

    ``map_method`` (one of :data:`KERNEL_MAP_METHODS`; ``None``: the class attribute ``default_map_method``) selects
    the neighbour look-up; ``max_grid_cells`` caps the dense grid of the ``grid`` / ``auto`` methods.
    """

    default_map_method = "auto"

    def __init__(self, coords: torch.Tensor, tensor_stride: int = 1, map_method: str | None = None,
                 max_grid_cells: int | None = None):
        map_method = self.default_map_method if map_method is None else map_method
        if map_method not in KERNEL_MAP_METHODS:
            raise ValueError(f"map_method must be one of {KERNEL_MAP_METHODS}, got {map_method!r}")
        self.map_method = map_method
        self.max_grid_cells = DENSE_GRID_MAX_CELLS if max_grid_cells is None else int(max_grid_cells)
        self.map_methods_used: dict[tuple[int, int, int, int], str] = {}
        """Which look-up built each cached map: ``partition``, ``grid`` or ``searchsorted``."""
        if coords.dim() != 2 or coords.shape[1] != 4:
            raise ValueError(f"coordinates must be [M, 4] (batch, x, y, z), got {tuple(coords.shape)}")
        coords = coords.to(torch.int32)
        self.device = coords.device
        self.base_stride = int(tensor_stride)
        if coords.shape[0] > 0:
            lo = coords.min(dim=0).values.to(torch.int64).cpu()
            hi = coords.max(dim=0).values.to(torch.int64).cpu()
        else:
            lo = hi = torch.zeros(4, dtype=torch.int64)
        if int(lo[0]) < 0:
            raise ValueError("batch indices must be >= 0")
        self.origin = [int(v) - MARGIN for v in lo[1:]]
        self.sizes = [int(h - l) + 1 + 2 * MARGIN for l, h in zip(lo[1:], hi[1:])]
        self.num_batches = int(hi[0]) + 1
        total = self.num_batches * self.sizes[0] * self.sizes[1] * self.sizes[2]
        if total >= 1 << 62:
            raise ValueError(f"coordinate extent too large to hash into int64 (sizes {self.sizes}, {self.num_batches} batches)")
        self._radix = (self.sizes[1] * self.sizes[2], self.sizes[2], 1)
        self.coords: dict[int, torch.Tensor] = {self.base_stride: coords}
        self._sorted: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._maps: dict[tuple[int, int, int, int], KernelMap] = {}
        self._inverse: dict[tuple[int, int], torch.Tensor] = {}
        self._check_unique(self.base_stride)

    # -- keys ----------------------------------------------------------------------------------------------------
    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """int64 keys of ``[M, 4]`` coordinates inside this manager's key space (no range check)."""
        c = coords.to(torch.int64)
        key = c[:, 0] * self.sizes[0] + (c[:, 1] - self.origin[0])
        key = key * self.sizes[1] + (c[:, 2] - self.origin[1])
        return key * self.sizes[2] + (c[:, 3] - self.origin[2])

    def decode(self, keys: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode` -> int32 ``[M, 4]``."""
        z = keys % self.sizes[2]
        r = keys // self.sizes[2]
        y = r % self.sizes[1]
        r = r // self.sizes[1]
        x = r % self.sizes[0]
        b = r // self.sizes[0]
        return torch.stack([b, x + self.origin[0], y + self.origin[1], z + self.origin[2]], 1).to(torch.int32)

    def offset_key(self, offset: torch.Tensor) -> int:
        """Key difference produced by an xyz offset (valid while the shifted coordinate stays inside the margin)."""
        return int(offset[0]) * self._radix[0] + int(offset[1]) * self._radix[1] + int(offset[2])

    def sorted_keys(self, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sorted keys, permutation to rows) of the coordinate set at ``stride``."""
        if stride not in self._sorted:
            keys = self.encode(self.get_coords(stride))
            self._sorted[stride] = torch.sort(keys)
        return self._sorted[stride]

    def _check_unique(self, stride: int) -> None:
        keys, _ = self.sorted_keys(stride)
        if keys.numel() > 1 and bool((keys[1:] == keys[:-1]).any()):
            raise ValueError("sparse tensor coordinates contain duplicate rows; voxelise (unique) them first")

    # -- coordinate sets -----------------------------------------------------------------------------------------
    def get_coords(self, stride: int) -> torch.Tensor:
        try:
            return self.coords[stride]
        except KeyError:
            raise KeyError(f"no coordinates at tensor stride {stride} (have {sorted(self.coords)}); a transposed "
                           "convolution needs the encoder's coordinates at its output stride") from None

    def stride_coords(self, in_stride: int, out_stride: int) -> torch.Tensor:
        """Coordinates at ``out_stride`` derived from those at ``in_stride`` by flooring (created and cached once)."""
        if out_stride not in self.coords:
            if out_stride % in_stride != 0:
                raise ValueError(f"output stride {out_stride} is not a multiple of input stride {in_stride}")
            keys, inverse = torch.unique(self.encode(floor_coords(self.get_coords(in_stride), out_stride)),
                                         sorted=True, return_inverse=True)
            self.coords[out_stride] = self.decode(keys)
            self._sorted[out_stride] = (keys, torch.arange(keys.numel(), device=keys.device))
            self._inverse[(in_stride, out_stride)] = inverse
        return self.coords[out_stride]

    # -- kernel maps ---------------------------------------------------------------------------------------------
    def kernel_map(self, in_stride: int, out_stride: int, kernel_size: int, dilation: int = 1) -> KernelMap:
        """Map of a convolution from the set at ``in_stride`` to the set at ``out_stride`` (both existing or derivable)."""
        key = (in_stride, out_stride, kernel_size, dilation)
        if key not in self._maps:
            if out_stride != in_stride:
                self.stride_coords(in_stride, out_stride)
            kmap, method = None, "searchsorted"
            if (out_stride == in_stride * kernel_size and kernel_size % 2 == 0 and dilation == 1
                    and (in_stride, out_stride) in self._inverse):
                kmap, method = self._partition_map(in_stride, out_stride, kernel_size), "partition"
            elif self.map_method != "searchsorted":
                kmap, method = self._grid_map(in_stride, out_stride, kernel_size, dilation), "grid"
            if kmap is None:
                kmap, method = self._search_map(in_stride, out_stride, kernel_size, dilation), "searchsorted"
            self._maps[key] = kmap
            self.map_methods_used[key] = method
        return self._maps[key]

    def _partition_map(self, in_stride: int, out_stride: int, kernel_size: int) -> KernelMap:
        """Kernel == stride (even): every input row falls in exactly one output cell; its offset is its cell position."""
        inverse = self._inverse[(in_stride, out_stride)]
        cin = self.get_coords(in_stride).to(torch.int64)
        cout = self.get_coords(out_stride).to(torch.int64)
        rel = torch.div(cin[:, 1:] - cout[inverse, 1:], in_stride, rounding_mode="floor")
        k = rel[:, 0] + kernel_size * rel[:, 1] + kernel_size * kernel_size * rel[:, 2]
        n_out = cout.shape[0]
        order = torch.argsort(k * n_out + inverse)
        counts = torch.bincount(k, minlength=kernel_size ** 3).cpu().tolist()
        bounds = [0]
        for c in counts:
            bounds.append(bounds[-1] + int(c))
        in_idx = torch.arange(cin.shape[0], device=cin.device)[order]
        return KernelMap(in_idx, inverse[order], bounds, cin.shape[0], n_out)

    def _search_map(self, in_stride: int, out_stride: int, kernel_size: int, dilation: int) -> KernelMap:
        offsets = kernel_offsets(kernel_size, dilation) * in_stride
        sorted_in, perm_in = self.sorted_keys(in_stride)
        cout = self.get_coords(out_stride)
        out_keys = self.encode(cout)
        n_in, n_out = self.get_coords(in_stride).shape[0], cout.shape[0]
        same = in_stride == out_stride
        reach = int(offsets.abs().max()) + max(in_stride, out_stride)
        checked = reach >= MARGIN
        cout64 = cout.to(torch.int64) if checked else None
        ins, outs, bounds, identity = [], [], [0], -1
        rows = torch.arange(n_out, device=cout.device)
        for k, off in enumerate(offsets):
            if same and not bool(off.any()):
                identity = k
                bounds.append(bounds[-1])
                continue
            q = out_keys + self.offset_key(off)
            valid = None
            if checked:
                shifted = cout64[:, 1:] + off.to(cout64.device) - torch.tensor(self.origin, device=cout64.device)
                size = torch.tensor(self.sizes, device=cout64.device)
                valid = ((shifted >= 0) & (shifted < size)).all(dim=1)
            pos = torch.searchsorted(sorted_in, q).clamp_(max=max(n_in - 1, 0))
            hit = sorted_in[pos] == q if n_in else torch.zeros_like(q, dtype=torch.bool)
            if valid is not None:
                hit &= valid
            ins.append(perm_in[pos[hit]])
            outs.append(rows[hit])
            bounds.append(bounds[-1] + int(outs[-1].numel()))
        empty = torch.empty(0, dtype=torch.int64, device=cout.device)
        return KernelMap(torch.cat(ins) if ins else empty, torch.cat(outs) if outs else empty, bounds, n_in, n_out,
                         identity)

    def _grid_map(self, in_stride: int, out_stride: int, kernel_size: int, dilation: int) -> KernelMap | None:
        """Kernel map by dense-grid look-up, identical to :meth:`_search_map`; ``None`` when the grid does not fit
        ``max_grid_cells`` or a coordinate is off the input stride's lattice (``map_method="grid"`` then falls back
        to searchsorted as well).

        Grid cells are in units of ``in_stride`` over the bounding box of the input set and of the output set
        widened by the kernel's reach, one block per batch, so every query lands inside the grid: no range checks,
        no aliasing across batches. Each cell holds its input row or -1; a chunk of offsets is looked up with one
        gather, and ``nonzero`` on the hit mask ``[offsets, out rows]`` lists the pairs offset-major, output rows
        ascending -- the order of :meth:`_search_map`.
        """
        cin, cout = self.get_coords(in_stride), self.get_coords(out_stride)
        n_in, n_out = cin.shape[0], cout.shape[0]
        volume = kernel_size ** 3
        dev = cout.device
        empty = torch.empty(0, dtype=torch.int64, device=dev)
        same = in_stride == out_stride
        identity = volume // 2 if same and kernel_size % 2 == 1 else (0 if same else -1)
        if n_in == 0 or n_out == 0:
            return KernelMap(empty, empty.clone(), [0] * (volume + 1), n_in, n_out, identity)
        offsets = kernel_offsets(kernel_size, dilation)  # grid units (in_stride)
        s = in_stride
        ci, co = cin.to(torch.int64), cout.to(torch.int64)
        if s > 1 and bool(((ci[:, 1:] % s) != 0).any() or ((co[:, 1:] % s) != 0).any()):
            return None  # off-lattice coordinates (a user-given coarse set): keys cannot be divided by the stride
        gi = torch.div(ci[:, 1:], s, rounding_mode="floor")
        go = torch.div(co[:, 1:], s, rounding_mode="floor")
        omin, omax = offsets.min(0).values.to(dev), offsets.max(0).values.to(dev)
        lo = torch.minimum(gi.min(0).values, go.min(0).values + omin)
        hi = torch.maximum(gi.max(0).values, go.max(0).values + omax)
        sizes = [int(v) for v in (hi - lo + 1).cpu()]
        batches = int(max(int(ci[:, 0].max()), int(co[:, 0].max()))) + 1
        cells = batches * sizes[0] * sizes[1] * sizes[2]
        if cells > self.max_grid_cells:
            return None

        def lin(b: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            g = g - lo
            return ((b * sizes[0] + g[:, 0]) * sizes[1] + g[:, 1]) * sizes[2] + g[:, 2]

        grid = torch.full((cells,), -1, dtype=torch.int32, device=dev)
        grid[lin(ci[:, 0], gi)] = torch.arange(n_in, dtype=torch.int32, device=dev)
        qbase = lin(co[:, 0], go)
        off_lin = ((offsets[:, 0] * sizes[1] + offsets[:, 1]) * sizes[2] + offsets[:, 2]).to(dev)
        if dev.type == "cpu" and volume * n_out <= NEIGHBOUR_TABLE_MAX:
            from ._map_kernels import grid_pairs

            ins_np, outs_np, counts_np, table, words = grid_pairs(grid.numpy(), qbase.numpy(), off_lin.numpy(),
                                                                  identity)
            bounds = [0]
            for c in counts_np.tolist():
                bounds.append(bounds[-1] + int(c))
            kmap = KernelMap(torch.from_numpy(ins_np), torch.from_numpy(outs_np), bounds, n_in, n_out, identity)
            # for the grouped forward's plan, which takes them over
            kmap._plans["neighbours"] = (torch.from_numpy(table), torch.from_numpy(words))
            return kmap
        ins, outs, counts = [], [], []
        step = max(1, LOOKUP_CHUNK // n_out)
        if step >= kernel_size:
            step -= step % kernel_size  # whole z-runs of offsets per chunk (adjacent cells, see below)
        for k0 in range(0, volume, step):
            k1 = min(volume, k0 + step)
            # row-major gather: the offsets of one row that differ in z only read neighbouring cells (z is the
            # grid's fastest axis), so a row costs about K^2 cache misses instead of K^3; then offset-major.
            nb = grid[qbase[:, None] + off_lin[None, k0:k1]].t().contiguous()  # int32 [chunk, n_out]
            if k0 <= identity < k1:
                nb[identity - k0] = -1  # the centre of a stride-1 conv is a plain matrix product, not stored
            hit = nb >= 0
            pos = hit.nonzero()
            ins.append(nb[hit].to(torch.int64))
            outs.append(pos[:, 1])
            counts.append(hit.sum(1))
        bounds = [0]
        for c in torch.cat(counts).cpu().tolist():
            bounds.append(bounds[-1] + int(c))
        return KernelMap(torch.cat(ins), torch.cat(outs), bounds, n_in, n_out, identity)
