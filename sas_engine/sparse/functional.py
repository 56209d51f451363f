"""Sparse convolution of the plain-PyTorch backend: gather / matrix product / scatter-add per kernel offset.

``out[out_row] += in[in_row] @ W[k]`` over the pairs of each kernel offset ``k`` (see :mod:`.coords`). A custom
autograd function keeps only the input features and the kernel map for the backward pass (no per-offset copies are
held), re-gathering rows there: ``grad_in[in_row] += grad_out[out_row] @ W[k]^T`` and
``grad_W[k] = in[in_rows]^T @ grad_out[out_rows]``. Work buffers are allocated once per call and reused by every
offset; the identity offset of a stride-1 convolution is a plain matrix product without gather or scatter.

Grouped forward (``default_forward_method = "grouped"``): output rows whose neighbours sit at the same set of
offsets (on a surface most rows share a few such patterns, e.g. the 9 in-plane offsets of a floor) are computed per
pattern with one gather of all their neighbours and one matrix product ``[rows, m * C_in] @ [m * C_in, C_out]``,
written with one ``index_copy_``, instead of m gathers, m products and m scatter-adds; the remaining rows take the
per-offset path. Same sums in another order: equal to the per-offset forward up to float rounding. The backward is
per offset either way. The plan is built once per kernel map and reused by every layer sharing the map, from the
map's own neighbour table when its look-up made one (:mod:`.coords`), else from its pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .coords import KernelMap

FORWARD_METHODS = ("grouped", "offset")
default_forward_method = "grouped"
"""``offset``: gather / mm / scatter-add per kernel offset (the original forward, kept as a same-run baseline);
``grouped``: neighbour-pattern groups first (see the module docstring)."""

GROUP_MIN_ROWS = 2048
"""Smallest row group that gets its own fused product (smaller patterns stay on the per-offset path)."""
GROUP_MAX_OFFSETS = 343
"""Largest kernel volume (7^3) whose maps are grouped; patterns are bit masks in ceil(volume / 62) int64 words."""
GROUP_CHUNK = 1 << 22
"""Gathered floats per chunk of a group's product (16 MiB of float32): bounds the work buffer."""


@dataclass
class GroupPlan:
    """Row groups with one neighbour pattern each, and the per-offset pairs of the rows left over."""

    groups: list[tuple[torch.Tensor, list[int], torch.Tensor]]
    """(output rows [n_g] ascending, offsets [m] ascending, input rows [n_g * m] row-major) per group."""
    rest_rows: torch.Tensor
    """Output rows outside every group (their identity product, if any, is computed on them alone)."""
    rest: KernelMap
    """The map's pairs restricted to ``rest_rows`` (no identity offset stored)."""


def group_plan(kmap: KernelMap) -> GroupPlan | None:
    """Grouped-forward plan of ``kmap`` (cached on the map); ``None`` when no pattern is worth a group."""
    if "group" in kmap._plans:
        return kmap._plans["group"]
    plan = _build_group_plan(kmap)
    kmap._plans["group"] = plan
    return plan


def _build_group_plan(kmap: KernelMap) -> GroupPlan | None:
    vol, n_out = kmap.volume, kmap.n_out
    made = kmap._plans.pop("neighbours", None)  # the kernel map's own neighbour table and patterns, if it made them
    if vol > GROUP_MAX_OFFSETS or vol < 2 or n_out < GROUP_MIN_ROWS:
        return None
    dev = kmap.out_idx.device
    nw = (vol + 61) // 62
    if made is not None:
        nbr, words = made
    else:
        counts = torch.tensor([kmap.bounds[k + 1] - kmap.bounds[k] for k in range(vol)], device=dev)
        pair_k = torch.repeat_interleave(torch.arange(vol, device=dev), counts)
        nbr = torch.full((vol, n_out), -1, dtype=torch.int64, device=dev)
        nbr.view(-1)[pair_k * n_out + kmap.out_idx] = kmap.in_idx
        words = torch.zeros(nw, n_out, dtype=torch.int64, device=dev)  # neighbour patterns, 62 offsets per word
        for k in range(vol):
            words[k // 62] |= (nbr[k] >= 0).to(torch.int64) << (k % 62)
    if kmap.identity >= 0:
        nbr[kmap.identity] = torch.arange(n_out, device=dev)
        words[kmap.identity // 62] |= 1 << (kmap.identity % 62)
    # patterns ranked lexicographically by their words, one 1-D unique per word (torch's unique(dim=0) compares
    # rows one by one on the CPU: 0.18 s for the 5^3 stem at 100k rows)
    key = torch.unique(words[0], return_inverse=True)[1]
    for w in range(1, nw):
        col = torch.unique(words[w], return_inverse=True)[1]
        key = torch.unique(key * (int(col.max()) + 1) + col, return_inverse=True)[1]
    _, inverse, cnt = torch.unique(key, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)  # rows of each pattern, ascending, pattern after pattern
    starts = torch.cat([cnt.new_zeros(1), torch.cumsum(cnt, 0)]).tolist()
    groups = []
    in_group = torch.zeros(n_out, dtype=torch.bool, device=dev)
    for g in (cnt >= GROUP_MIN_ROWS).nonzero()[:, 0].tolist():
        rows = order[starts[g]:starts[g + 1]]
        offs = (nbr[:, rows[0]] >= 0).nonzero()[:, 0]
        if offs.numel() < 2:
            continue
        in_group[rows] = True
        idx = nbr.view(-1)[rows[:, None] + offs[None, :] * n_out]  # [n_g, m] input rows, row-major
        groups.append((rows, offs.tolist(), idx.reshape(-1).to(torch.int64)))
    if not groups:
        return None
    keep = ~in_group[kmap.out_idx]
    kept = torch.cat([keep.new_zeros(1, dtype=torch.int64), torch.cumsum(keep, 0)])
    bounds = kept[torch.tensor(kmap.bounds, device=dev)].cpu().tolist()
    rest = KernelMap(kmap.in_idx[keep], kmap.out_idx[keep], [int(v) for v in bounds], kmap.n_in, n_out, kmap.identity)
    return GroupPlan(groups, (~in_group).nonzero()[:, 0], rest)


def _weights3d(weight: torch.Tensor) -> torch.Tensor:
    return weight.unsqueeze(0) if weight.dim() == 2 else weight


def conv_forward(x: torch.Tensor, weight: torch.Tensor, kmap: KernelMap, method: str | None = None) -> torch.Tensor:
    """Features ``[n_out, C_out]`` of a sparse convolution (no autograd bookkeeping).

    ``method``: one of :data:`FORWARD_METHODS` (``None``: :data:`default_forward_method`).
    """
    method = default_forward_method if method is None else method
    if method not in FORWARD_METHODS:
        raise ValueError(f"forward method must be one of {FORWARD_METHODS}, got {method!r}")
    w = _weights3d(weight).to(x.dtype)
    plan = group_plan(kmap) if method == "grouped" else None
    if plan is not None:
        return _grouped_forward(x, w, kmap, plan)
    c_out = w.shape[2]
    if kmap.identity >= 0:
        out = torch.mm(x, w[kmap.identity])
    else:
        out = x.new_zeros(kmap.n_out, c_out)
    return _offset_accumulate(x, w, kmap, out)


def _grouped_forward(x: torch.Tensor, w: torch.Tensor, kmap: KernelMap, plan: GroupPlan) -> torch.Tensor:
    c_in, c_out = w.shape[1], w.shape[2]
    out = x.new_empty(kmap.n_out, c_out)
    for rows, offs, idx in plan.groups:
        m = len(offs)
        wg = w[offs].reshape(m * c_in, c_out)
        step = max(1, GROUP_CHUNK // (m * c_in))
        gbuf = x.new_empty(min(step, rows.numel()) * m, c_in)
        obuf = x.new_empty(min(step, rows.numel()), c_out)
        for r0 in range(0, rows.numel(), step):
            r1 = min(rows.numel(), r0 + step)
            g, o = gbuf[:(r1 - r0) * m], obuf[:r1 - r0]
            torch.index_select(x, 0, idx[r0 * m:r1 * m], out=g)
            torch.mm(g.view(r1 - r0, m * c_in), wg, out=o)
            out.index_copy_(0, rows[r0:r1], o)
    rest = plan.rest_rows
    if rest.numel():
        if kmap.identity >= 0:
            out.index_copy_(0, rest, torch.mm(x.index_select(0, rest), w[kmap.identity]))
        else:
            out.index_fill_(0, rest, 0)
    return _offset_accumulate(x, w, plan.rest, out)


def _offset_accumulate(x: torch.Tensor, w: torch.Tensor, kmap: KernelMap, out: torch.Tensor) -> torch.Tensor:
    """``out[out_row] += x[in_row] @ w[k]`` over the stored pairs of every offset, one gather / mm / scatter each."""
    c_out = w.shape[2]
    nmax = max((kmap.bounds[k + 1] - kmap.bounds[k] for k in range(kmap.volume)), default=0)
    if nmax == 0:
        return out
    gbuf = x.new_empty(nmax, x.shape[1])
    obuf = x.new_empty(nmax, c_out)
    for k in range(kmap.volume):
        a, b = kmap.bounds[k], kmap.bounds[k + 1]
        n = b - a
        if n == 0 or k == kmap.identity:
            continue
        g, o = gbuf[:n], obuf[:n]
        torch.index_select(x, 0, kmap.in_idx[a:b], out=g)
        torch.mm(g, w[k], out=o)
        out.index_add_(0, kmap.out_idx[a:b], o)
    return out


def conv_backward(x: torch.Tensor, weight: torch.Tensor, kmap: KernelMap, grad_out: torch.Tensor,
                  need_x: bool = True, need_w: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients (input features, weight) of :func:`conv_forward`."""
    w = _weights3d(weight).to(grad_out.dtype)
    grad_out = grad_out.contiguous()
    grad_x = grad_w = None
    if need_x:
        grad_x = torch.mm(grad_out, w[kmap.identity].t()) if kmap.identity >= 0 else grad_out.new_zeros(kmap.n_in, w.shape[1])
    if need_w:
        grad_w = torch.zeros(w.shape, dtype=grad_out.dtype, device=grad_out.device)
        if kmap.identity >= 0:
            torch.mm(x.t(), grad_out, out=grad_w[kmap.identity])
    nmax = max((kmap.bounds[k + 1] - kmap.bounds[k] for k in range(kmap.volume)), default=0)
    if nmax > 0:
        gobuf = grad_out.new_empty(nmax, w.shape[2])
        xbuf = grad_out.new_empty(nmax, w.shape[1])
        for k in range(kmap.volume):
            a, b = kmap.bounds[k], kmap.bounds[k + 1]
            n = b - a
            if n == 0 or k == kmap.identity:
                continue
            go = gobuf[:n]
            torch.index_select(grad_out, 0, kmap.out_idx[a:b], out=go)
            if need_x:
                xb = xbuf[:n]
                torch.mm(go, w[k].t(), out=xb)
                grad_x.index_add_(0, kmap.in_idx[a:b], xb)
            if need_w:
                xb = xbuf[:n]
                torch.index_select(x, 0, kmap.in_idx[a:b], out=xb)
                torch.mm(xb.t(), go, out=grad_w[k])
    if grad_w is not None:
        grad_w = grad_w.reshape(weight.shape).to(weight.dtype)
    return grad_x, grad_w


class SparseConvFunction(torch.autograd.Function):
    """Autograd wrapper of :func:`conv_forward` (the kernel map is a constant)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
        x = x.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.kmap = kmap
        return conv_forward(x, weight, kmap)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x, grad_w = conv_backward(x, weight, ctx.kmap, grad_out, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return grad_x, grad_w, None


def sparse_conv_features(x: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """Differentiable sparse convolution of feature rows ``x`` along ``kmap``."""
    if x.shape[0] != kmap.n_in:
        raise ValueError(f"features have {x.shape[0]} rows, kernel map expects {kmap.n_in}")
    w3 = _weights3d(weight)
    if w3.shape[0] != kmap.volume or w3.shape[1] != x.shape[1]:
        raise ValueError(f"kernel {tuple(weight.shape)} does not fit {kmap.volume} offsets and {x.shape[1]} input channels")
    return SparseConvFunction.apply(x, weight, kmap)
