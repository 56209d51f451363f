"""Sparse layers with MinkowskiEngine's parameter names and shapes (so ME checkpoints load unchanged).

- :class:`SparseConv3d` / :class:`SparseConvTranspose3d`: parameter ``kernel`` ``[K^3, C_in, C_out]`` (a 1x1x1
  stride-1 convolution stores ``[C_in, C_out]``), optional ``bias`` ``[1, C_out]`` (off by default).
- :class:`SparseBatchNorm`: a ``torch.nn.BatchNorm1d`` under the attribute ``bn`` (eps 1e-5, momentum 0.1).
- :class:`SparseReLU`.
The convolution runs on the input tensor's backend (see :mod:`.backends`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .backends import BACKENDS
from .tensor import SparseTensor


class _SparseConvBase(nn.Module):
    transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
                 bias: bool = False):
        super().__init__()
        if kernel_size < 1 or stride < 1 or dilation < 1:
            raise ValueError("kernel_size, stride and dilation must be >= 1")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        volume = kernel_size ** 3
        shape = (in_channels, out_channels) if volume == 1 and stride == 1 else (volume, in_channels, out_channels)
        self.kernel = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(1, out_channels)) if bias else None
        self._backend_cache: dict = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform init with ME's bound 1/sqrt(C_in * K) (MinkUNet overrides it with Kaiming normal)."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size ** 3)
        nn.init.uniform_(self.kernel, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"dilation={self.dilation}, bias={self.bias is not None}")

    def forward(self, x: SparseTensor) -> SparseTensor:
        if x.features.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: input has {x.features.shape[1]} channels, expected {self.in_channels}")
        out = BACKENDS[x.backend].conv(x, self.kernel, self.kernel_size, self.stride, self.dilation, self.transposed,
                                       self._backend_cache)
        if self.bias is not None:
            out = out.replace_feature(out.features + self.bias)
        return out


class SparseConv3d(_SparseConvBase):
    """ME ``MinkowskiConvolution``: ``out[q] += in[q + offset_k * s_in * dilation] @ kernel[k]``; output coordinates
    are the input's (stride 1) or ``floor(c / s_out) * s_out`` made unique (stride > 1)."""


class SparseConvTranspose3d(_SparseConvBase):
    """ME ``MinkowskiConvolutionTranspose``: back to ``tensor_stride / stride`` on the coordinates that the encoder
    produced there, along the swapped kernel map of the matching strided convolution."""

    transposed = True


class SparseBatchNorm(nn.Module):
    """ME ``MinkowskiBatchNorm``: ``BatchNorm1d`` over feature rows, stored as attribute ``bn``."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        self.bn = nn.BatchNorm1d(num_features, eps=eps, momentum=momentum, affine=affine,
                                 track_running_stats=track_running_stats)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feature(self.bn(x.features))


class SparseReLU(nn.Module):
    """Element-wise ReLU of the features (``inplace`` overwrites them, saving memory in training)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feature(torch.relu_(x.features) if self.inplace else torch.relu(x.features))
