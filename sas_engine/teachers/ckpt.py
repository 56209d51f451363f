"""Reading third-party checkpoints safely (``weights_only=True``) and reporting key mismatches."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import SASInputError


class _Opaque:
    """Stand-in for a foreign Python object inside a checkpoint (its pickled state is kept, nothing runs)."""

    def __setstate__(self, state):
        self.state = state


def load_weights_file(path: str | Path) -> object:
    """``torch.load(path, map_location="cpu", weights_only=True)``, tolerating foreign metadata objects.

    Training checkpoints (PyTorch Lightning's ``.ckpt``) carry hyper-parameter containers such as
    ``AttributeDict`` or ``argparse.Namespace`` next to the tensors. They are not on torch's weights-only allow-list;
    instead of unpickling them with ``weights_only=False`` (arbitrary code), each is mapped to an inert stand-in
    (a plain ``dict`` or an object holding the pickled state). Tensors load normally.
    """
    import pickle

    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise SASInputError(p, "checkpoint not found")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as first:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(p))
        except Exception:
            names = []
        if not names:
            raise SASInputError(p, f"not a readable weights file ({str(first).splitlines()[0][:200]})") from first
        attempts = (
            [(dict, n) for n in names],
            [(type(n.rsplit(".", 1)[-1], (_Opaque,), {}), n) for n in names],
            [(dict, n) if "dict" in n.lower() else (type(n.rsplit(".", 1)[-1], (_Opaque,), {}), n) for n in names],
        )
        for stand_ins in attempts:
            try:
                with torch.serialization.safe_globals(stand_ins):
                    return torch.load(p, map_location="cpu", weights_only=True)
            except Exception:
                continue
        raise SASInputError(p, f"checkpoint holds Python objects that cannot be read safely: {', '.join(names)}")
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise SASInputError(p, f"not a readable weights file ({type(e).__name__}: {str(e)[:200]})") from e


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
