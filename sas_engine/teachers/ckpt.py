"""Third-party checkpoints (read with :func:`sas_engine.io.files.torch_load`): their state dict and key mismatches."""
from __future__ import annotations

from typing import Sequence

from ..errors import SASInputError


def unwrap_state_dict(obj, path=None, keys: Sequence[str] = ("state_dict", "model")) -> dict:
    """The tensor dict inside a checkpoint (``ckpt["state_dict"]``, ``ckpt["model"]`` or the object itself)."""
    import torch

    for k in keys:
        if isinstance(obj, dict) and isinstance(obj.get(k), dict):
            obj = obj[k]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SASInputError(path, "checkpoint holds no state dict of tensors")
    return obj


def key_report(missing: Sequence[str], unexpected: Sequence[str], show: int = 8) -> str:
    """One-line description of missing / unexpected state-dict keys (first ``show`` of each)."""
    parts = []
    for what, keys in (("missing", list(missing)), ("unexpected", list(unexpected))):
        if keys:
            more = f" ... ({len(keys)} in all)" if len(keys) > show else ""
            parts.append(f"{what} keys: {', '.join(keys[:show])}{more}")
    return "; ".join(parts) or "no key differences"
