"""Loading OpenScene / SAS MinkUNet checkpoints with strict key and shape checks."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import SASInputError

PREFIXES = ("module.", "net3d.")
"""Wrapper prefixes removed from checkpoint keys: DistributedDataParallel (``module.``) and OpenScene's distillation
wrapper (``net3d.``), in any order and combination."""

MAX_LISTED = 12


def _strip(key: str) -> tuple[str, bool]:
    had_net3d = False
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            if key.startswith(p):
                key = key[len(p):]
                had_net3d |= p == "net3d."
                changed = True
    return key, had_net3d


def extract_state_dict(obj: Any, source: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The network's state dict inside a checkpoint object, prefixes removed.

    Accepts ``{"state_dict": {...}}`` (OpenScene / SAS training checkpoints), ``{"model": {...}}`` or a bare state dict.
    When some keys carry ``net3d.``, only those are kept (other entries belong to other sub-networks).
    """
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        raise SASInputError(source, "checkpoint holds no state dict (expected a dict of tensors or {'state_dict': ...})")
    stripped: dict[str, tuple[torch.Tensor, bool]] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise SASInputError(source, f"checkpoint entry {key!r} is not a tensor ({type(value).__name__})")
        name, had_net3d = _strip(key)
        if name in stripped and stripped[name][1] == had_net3d:
            raise SASInputError(source, f"checkpoint has {key!r} twice after removing prefixes {PREFIXES}")
        if name not in stripped or had_net3d:
            stripped[name] = (value, had_net3d)
    if any(flag for _, flag in stripped.values()):
        return {k: v for k, (v, flag) in stripped.items() if flag}
    return {k: v for k, (v, _) in stripped.items()}


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED]) + (f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")
    return f"{len(items)} {title}: {shown}"


def load_mink_checkpoint(model: torch.nn.Module, path_or_dict: str | Path | Mapping, *,
                         map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a MinkUNet checkpoint into ``model`` with strict key and shape checks.

    Args:
        model: the network (e.g. :func:`~sas_engine.models.mink_unet.MinkUNet18A`).
        path_or_dict: a ``.pth``/``.pt`` file (read with ``weights_only=True``) or an already loaded checkpoint dict.
        map_location: where tensors are loaded before being copied into the model.

    Returns:
        ``{"entries": n, "filled": [...]}`` where ``filled`` lists BatchNorm ``num_batches_tracked`` counters absent
        from old checkpoints (set to 0; they do not affect outputs).

    Raises:
        SASInputError: unreadable file, no state dict, or any missing / unexpected / shape-mismatched key (all listed).
    """
    source: str | Path | None = None
    obj = path_or_dict
    if isinstance(path_or_dict, (str, Path)):
        from ..io.files import torch_load

        source = Path(path_or_dict)
        obj = torch_load(source, what="checkpoint file", map_location=map_location)
    sd = extract_state_dict(obj, source)
    expected = model.state_dict()
    filled = [k for k in expected if k not in sd and k.endswith("num_batches_tracked")]
    for k in filled:
        sd[k] = torch.zeros_like(expected[k])
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [f"{k} {tuple(sd[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
                  if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or mismatched:
        parts = [_listing(t, items) for t, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                                      ("shape mismatches", mismatched)) if items]
        raise SASInputError(source, f"checkpoint does not fit {type(model).__name__} ({len(expected)} entries): "
                                    + "; ".join(parts))
    model.load_state_dict(sd, strict=True)
    return {"entries": len(sd), "filled": filled}


def widen_stem_for_color(sd: dict[str, torch.Tensor], in_channels: int = 4) -> dict[str, torch.Tensor]:
    """A geometry-only student's state dict made to fit a colour student (``in_channels`` = 1 + 3 colours) with the
    same function: the old stem read 3 all-ones channels, so its kernels summed over those channels become the
    weights of the new constant channel and the colour weights start at zero. Other entries are shared, not copied;
    a stem that already has ``in_channels`` inputs is returned as is."""
    key = "conv0p1s1.kernel"
    if key not in sd:
        raise SASInputError(None, f"state dict has no {key}: not a MinkUNet student")
    k = sd[key]
    if k.dim() != 3 or k.shape[1] == in_channels:
        return sd
    new = torch.zeros(k.shape[0], in_channels, k.shape[2], dtype=k.dtype)
    new[:, 0] = k.sum(1)
    return {**sd, key: new}
