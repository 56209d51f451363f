"""Sparse convolution of the plain-PyTorch backend: gather / matrix product / scatter-add per kernel offset.

``out[out_row] += in[in_row] @ W[k]`` over the pairs of each kernel offset ``k`` (see :mod:`.coords`). A custom
autograd function keeps only the input features and the kernel map for the backward pass (no per-offset copies are
held), re-gathering rows there: ``grad_in[in_row] += grad_out[out_row] @ W[k]^T`` and
``grad_W[k] = in[in_rows]^T @ grad_out[out_rows]``. Work buffers are allocated once per call and reused by every
offset; the identity offset of a stride-1 convolution is a plain matrix product without gather or scatter.
"""
from __future__ import annotations

import torch

from .coords import KernelMap


def _weights3d(weight: torch.Tensor) -> torch.Tensor:
    return weight.unsqueeze(0) if weight.dim() == 2 else weight


def conv_forward(x: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """Features ``[n_out, C_out]`` of a sparse convolution (no autograd bookkeeping)."""
    w = _weights3d(weight).to(x.dtype)
    c_out = w.shape[2]
    if kmap.identity >= 0:
        out = torch.mm(x, w[kmap.identity])
    else:
        out = x.new_zeros(kmap.n_out, c_out)
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
