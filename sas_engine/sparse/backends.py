"""Sparse-convolution backends behind one interface.

``torch`` (default, CPU and CUDA) is this package's own implementation. ``minkowski`` (MinkowskiEngine 0.5.x) and
``spconv`` (spconv 2.x) are optional adapters used when their package imports; they take the same kernel tensors
(ME layout ``[K, C_in, C_out]``), so the model code never knows which backend runs. A backend is chosen per input
tensor (:meth:`SparseBackend.make_tensor`); every tensor derived from it keeps that backend.

Selection: ``get_backend(None)`` returns the default, which is ``$SAS_SPARSE_BACKEND`` if set, else ``torch``;
``set_default_backend(name)`` changes it; ``get_backend("auto")`` picks the first available of
``AUTO_ORDER`` for the device. An unknown or unavailable name raises :class:`SASInputError` listing the choices.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch

from ..errors import SASInputError


class SparseBackend:
    """Interface: build the input tensor, run (transposed) convolutions. Feature-wise ops (BN, ReLU, cat) are shared."""

    name = "base"
    module = ""
    """Python package the backend needs ("" for none)."""
    devices: tuple[str, ...] = ("cpu", "cuda")

    def available(self, device: str | torch.device = "cpu") -> bool:
        dev = torch.device(device).type
        if dev not in self.devices:
            return False
        return not self.module or importlib.util.find_spec(self.module) is not None

    def make_tensor(self, features: torch.Tensor, coords: torch.Tensor, tensor_stride: int = 1):
        raise NotImplementedError

    def conv(self, x, weight: torch.Tensor, kernel_size: int, stride: int, dilation: int, transposed: bool,
             cache: dict) -> Any:
        raise NotImplementedError


class TorchBackend(SparseBackend):
    """Kernel maps by dense-grid look-up (searchsorted on hashed keys when the grid would be too large, see
    :mod:`.coords`); grouped gather / mm per neighbour pattern, then gather / mm / index_add_ per offset for the other
    rows (see :mod:`.functional`)."""

    name = "torch"

    def make_tensor(self, features, coords, tensor_stride=1):
        from .tensor import SparseTensor
        return SparseTensor(features, coords.to(torch.int32), tensor_stride, backend=self.name)

    def conv(self, x, weight, kernel_size, stride, dilation, transposed, cache):
        from .functional import sparse_conv_features
        from .tensor import SparseTensor
        mgr, s = x.manager, x.tensor_stride
        if transposed:
            if s % stride != 0:
                raise ValueError(f"transposed stride {stride} does not divide tensor stride {s}")
            out_stride = s // stride
            kmap = mgr.kernel_map(out_stride, s, kernel_size, dilation).swapped()
        else:
            out_stride = s * stride
            kmap = mgr.kernel_map(s, out_stride, kernel_size, dilation)
        feats = sparse_conv_features(x.features, weight, kmap)
        return SparseTensor(feats, tensor_stride=out_stride, manager=mgr, backend=self.name)


class MinkowskiBackend(SparseBackend):
    """MinkowskiEngine 0.5.x: ME's own convolution modules, fed our kernel parameters (same layout, no permutation)."""

    name = "minkowski"
    module = "MinkowskiEngine"

    def make_tensor(self, features, coords, tensor_stride=1):
        import MinkowskiEngine as ME  # optional dependency

        from .tensor import SparseTensor
        native = ME.SparseTensor(features, coordinates=coords.to(torch.int32), tensor_stride=tensor_stride)
        return SparseTensor(native.F, native.C.to(torch.int32), tensor_stride, backend=self.name, native=native)

    def conv(self, x, weight, kernel_size, stride, dilation, transposed, cache):
        import MinkowskiEngine as ME  # optional dependency

        from .tensor import SparseTensor
        mod = cache.get("minkowski")
        if mod is None:
            w3 = weight if weight.dim() == 3 else weight.unsqueeze(0)
            cls = ME.MinkowskiConvolutionTranspose if transposed else ME.MinkowskiConvolution
            mod = cls(w3.shape[1], w3.shape[2], kernel_size=kernel_size, stride=stride, dilation=dilation, bias=False,
                      dimension=3)
            cache["minkowski"] = mod
        mod._parameters["kernel"] = weight  # share the caller's parameter (same [K, C_in, C_out] layout)
        native = ME.SparseTensor(x.features, coordinate_map_key=x.native.coordinate_map_key,
                                 coordinate_manager=x.native.coordinate_manager)
        out = mod(native)
        ts = out.tensor_stride[0] if isinstance(out.tensor_stride, (list, tuple)) else int(out.tensor_stride)
        return SparseTensor(out.F, out.C.to(torch.int32), ts, manager=x.manager, backend=self.name, native=out)


SPCONV_GRID = 64
"""spconv needs non-negative indices in a grid whose size every stride divides: coordinates are shifted by a
multiple of this and the grid is rounded up to it (strides up to 64)."""


def me_to_spconv_weight(weight: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """ME kernel ``[K^3, C_in, C_out]`` (x fastest) -> spconv ``[C_out, Kx, Ky, Kz, C_in]`` for indices (b, x, y, z)."""
    w = weight if weight.dim() == 3 else weight.unsqueeze(0)
    k = kernel_size
    return w.reshape(k, k, k, w.shape[1], w.shape[2]).permute(4, 2, 1, 0, 3).contiguous()


class SpconvBackend(SparseBackend):
    """spconv 2.x: SubMConv3d for stride 1, SparseConv3d (kernel == stride) down, SparseInverseConv3d up.

    Kernels are permuted from ME's layout on the fly (gradients flow back to the ME-layout parameter). Only the
    convolutions MinkUNet uses have ME-equivalent semantics in spconv: odd kernels at stride 1, and strided
    convolutions whose kernel equals the stride (and their transposes).
    """

    name = "spconv"
    module = "spconv"

    def make_tensor(self, features, coords, tensor_stride=1):
        import spconv.pytorch as spconv  # optional dependency

        from .coords import CoordinateManager
        from .tensor import SparseTensor
        c = coords.to(torch.int32)
        shift = torch.div(c[:, 1:].min(0).values, SPCONV_GRID, rounding_mode="floor") * SPCONV_GRID
        idx = torch.div(c[:, 1:] - shift, tensor_stride, rounding_mode="floor")
        extent = idx.max(0).values + 1 + 1
        shape = (torch.div(extent + SPCONV_GRID - 1, SPCONV_GRID, rounding_mode="floor") * SPCONV_GRID).tolist()
        native = spconv.SparseConvTensor(features, torch.cat([c[:, :1], idx], 1).contiguous(), shape,
                                         int(c[:, 0].max()) + 1)
        native._sas_shift = shift
        return SparseTensor(features, c, tensor_stride, manager=CoordinateManager(c, tensor_stride), backend=self.name,
                            native=native)

    def conv(self, x, weight, kernel_size, stride, dilation, transposed, cache):
        import spconv.pytorch as spconv  # optional dependency

        from .tensor import SparseTensor
        s = x.tensor_stride
        w3 = weight if weight.dim() == 3 else weight.unsqueeze(0)
        cin, cout = w3.shape[1], w3.shape[2]
        if kernel_size == 1 and stride == 1:  # pointwise: a plain matrix product, no spconv call needed
            return x.replace_feature(torch.mm(x.features, w3[0]))
        mod = cache.get("spconv")
        if mod is None:
            if transposed:
                if kernel_size != stride:
                    raise NotImplementedError("spconv backend: transposed convolutions need kernel == stride")
                mod = spconv.SparseInverseConv3d(cin, cout, kernel_size, indice_key=f"down{s // stride}", bias=False)
            elif stride == 1:
                if kernel_size % 2 == 0:
                    raise NotImplementedError("spconv backend: even kernels at stride 1 are not ME-equivalent")
                mod = spconv.SubMConv3d(cin, cout, kernel_size, dilation=dilation, bias=False,
                                        indice_key=f"subm{s}k{kernel_size}d{dilation}")
            else:
                if kernel_size != stride or dilation != 1:
                    raise NotImplementedError("spconv backend: strided convolutions need kernel == stride, dilation 1")
                mod = spconv.SparseConv3d(cin, cout, kernel_size, stride, bias=False, indice_key=f"down{s}")
            mod = mod.to(weight.device)
            del mod.weight
            cache["spconv"] = mod
        mod.weight = me_to_spconv_weight(weight, kernel_size)
        native = x.native.replace_feature(x.features)
        out = mod(native)
        out_stride = s // stride if transposed else s * stride
        out._sas_shift = x.native._sas_shift
        coords = torch.cat([out.indices[:, :1], out.indices[:, 1:] * out_stride + out._sas_shift], 1).to(torch.int32)
        return SparseTensor(out.features, coords, out_stride, manager=x.manager, backend=self.name, native=out)


BACKENDS: dict[str, SparseBackend] = {b.name: b for b in (TorchBackend(), MinkowskiBackend(), SpconvBackend())}
"""Plain registry of sparse backends."""

AUTO_ORDER: dict[str, tuple[str, ...]] = {"cuda": ("minkowski", "spconv", "torch"), "cpu": ("torch",)}
"""Preference order of ``get_backend("auto", device)``: spconv's CPU build is debug-only, so CPU always uses torch."""

_default: list[str] = []


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    """Names of the backends whose package imports and which support ``device``."""
    return [n for n, b in BACKENDS.items() if b.available(device)]


def get_backend(name: str | None = None, device: str | torch.device = "cpu") -> SparseBackend:
    """Resolve a backend name (``None``: the default; ``"auto"``: best available for ``device``)."""
    if name is None:
        name = _default[-1] if _default else os.environ.get("SAS_SPARSE_BACKEND", "torch")
    if name == "auto":
        dev = torch.device(device).type
        for cand in AUTO_ORDER.get(dev, ("torch",)):
            if BACKENDS[cand].available(device):
                return BACKENDS[cand]
        return BACKENDS["torch"]
    if name not in BACKENDS:
        raise SASInputError(None, f"unknown sparse backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    backend = BACKENDS[name]
    if backend.module and importlib.util.find_spec(backend.module) is None:
        raise SASInputError(None, f"sparse backend {name!r} needs the package {backend.module!r}, which is not "
                                  f"installed; available: {', '.join(available_backends(device))}")
    return backend


def set_default_backend(name: str | None) -> None:
    """Make ``name`` the default of :func:`get_backend` (``None`` restores the environment / ``torch`` default)."""
    _default.clear()
    if name is not None:
        get_backend(name)
        _default.append(name)
