"""Small, checked readers for the files every layout shares: images, depth maps, matrices, JSON and torch payloads.

Each reader raises :class:`~sas_engine.errors.SASInputError` naming the file when it is missing or malformed, so
callers never see a traceback from inside numpy, PIL or torch.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SASInputError

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
"""Colour image file suffixes the capture layouts read."""
TRUST_PICKLE_ENV = "SAS_TRUST_PICKLE"
"""Environment variable: set to ``1`` to load trusted legacy torch files that need full unpickling."""


def require_file(path: str | Path, what: str = "file") -> Path:
    """``path`` as a :class:`Path`; raises :class:`SASInputError` when it does not exist or is not a file."""
    p = Path(path)
    if not p.is_file():
        raise SASInputError(p, f"{what} not found" if not p.exists() else f"{what} is not a file")
    return p


_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str | Path) -> str:
    """sha256 (16 hex digits) of a file's bytes: names a checkpoint or input file by content in artefact headers.

    Cached per process by (resolved path, size, modification time), so a large checkpoint is hashed once."""
    import hashlib

    p = require_file(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()[:16]
    return _DIGESTS[key]


def natural_key(name: str) -> tuple:
    """Sort key that orders ``"2" < "10"`` (frame ids are numbers in most layouts)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def read_color(path: str | Path) -> np.ndarray:
    """uint8 [H, W, 3] RGB image (any format PIL reads)."""
    from PIL import Image

    p = require_file(path, "colour image")
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except Exception as e:  # truncated / not an image
        raise SASInputError(p, f"cannot read colour image ({type(e).__name__}: {e})") from None


def read_index_image(path: str | Path, what: str = "label image") -> np.ndarray:
    """Single-channel integer image (uint8 / uint16 PNG, or ``.npy``) as stored."""
    p = require_file(path, what)
    if p.suffix == ".npy":
        a = _load_npy(p)
    else:
        from PIL import Image

        try:
            with Image.open(p) as im:
                a = np.asarray(im).copy()
        except Exception as e:
            raise SASInputError(p, f"cannot read {what} ({type(e).__name__}: {e})") from None
    if a.ndim != 2:
        raise SASInputError(p, f"{what} must be single-channel, got shape {list(a.shape)}")
    return a


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file without decoding its pixels (``.npy``: from the array header)."""
    p = require_file(path, "image")
    if p.suffix == ".npy":
        a = _load_npy(p, mmap=True)
        return int(a.shape[1]), int(a.shape[0])
    from PIL import Image

    try:
        with Image.open(p) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception as e:
        raise SASInputError(p, f"cannot read image ({type(e).__name__}: {e})") from None


def read_depth(path: str | Path, depth_scale: float) -> np.ndarray:
    """float32 [H, W] depth in metres, 0 where unknown.

    PNG (uint16) and integer ``.npy`` values are raw units divided by ``depth_scale`` (1000 = millimetres);
    float ``.npy`` arrays are taken as metres. Non-finite and negative values become 0.
    """
    p = require_file(path, "depth image")
    if p.suffix == ".npy":
        a = _load_npy(p)
        d = a.astype(np.float32) if a.dtype.kind == "f" else a.astype(np.float32) / float(depth_scale)
    else:
        from PIL import Image

        try:
            with Image.open(p) as im:
                a = np.asarray(im)
        except Exception as e:
            raise SASInputError(p, f"cannot read depth image ({type(e).__name__}: {e})") from None
        if a.ndim != 2:
            raise SASInputError(p, f"depth image must be single-channel (uint16), got shape {list(a.shape)}")
        d = a.astype(np.float32) / float(depth_scale)
    if d.ndim != 2:
        raise SASInputError(p, f"depth must be [H, W], got shape {list(d.shape)}")
    d[~np.isfinite(d) | (d < 0)] = 0.0
    return d


def read_matrix(path: str | Path, shape: tuple[int, int], what: str) -> np.ndarray:
    """float64 matrix from a whitespace text file or ``.npy``; raises when the shape differs."""
    p = require_file(path, what)
    if p.suffix == ".npy":
        m = _load_npy(p)
    else:
        try:
            text = p.read_text()
            rows = [r.replace(",", " ").split() for r in text.strip().splitlines() if r.strip()]
            m = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
        except (ValueError, UnicodeDecodeError):
            raise SASInputError(p, f"{what} is not a numeric matrix") from None
    if m.dtype == object or m.shape != shape:
        raise SASInputError(p, f"{what} is not a {shape[0]}x{shape[1]} matrix (got shape {list(np.shape(m))})")
    return m.astype(np.float64)


def read_pose(path: str | Path) -> np.ndarray:
    """4x4 camera-to-world matrix (may contain -inf/nan: check with :func:`pose_valid`)."""
    return read_matrix(path, (4, 4), "pose file")


def pose_valid(pose: np.ndarray) -> bool:
    """True when the pose is finite and its last row is (0, 0, 0, 1) (ScanNet marks lost tracking with -inf)."""
    return bool(np.isfinite(pose).all() and np.allclose(pose[3], (0, 0, 0, 1), atol=1e-6))


def read_intrinsics(path: str | Path) -> np.ndarray:
    """3x3 intrinsics from a 3x3 or 4x4 (ScanNet) text file or ``.npy``."""
    p = require_file(path, "intrinsics file")
    try:
        return read_matrix(p, (4, 4), "intrinsics file")[:3, :3]
    except SASInputError:
        pass
    try:
        return read_matrix(p, (3, 3), "intrinsics file")
    except SASInputError:
        raise SASInputError(p, "intrinsics file is neither a 3x3 nor a 4x4 matrix") from None


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    p = require_file(path, what)
    try:
        return json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise SASInputError(p, f"corrupt {what} ({e})") from None


def _load_npy(p: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None)
    except Exception as e:
        raise SASInputError(p, f"cannot read .npy array ({type(e).__name__}: {e})") from None


def numpy_safe_globals() -> list:
    """numpy constructors that plain arrays in torch files need (data only, no code), under numpy 1.x and 2.x
    module names, for ``torch.serialization.safe_globals``."""
    import numpy.dtypes as ndt

    try:
        from numpy._core import multiarray as ma
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray as ma  # type: ignore
    safe: list = [np.ndarray, np.dtype, ma._reconstruct, ma.scalar]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        safe += [(ma._reconstruct, f"{mod}._reconstruct"), (ma.scalar, f"{mod}.scalar")]
    safe += [getattr(ndt, n) for n in dir(ndt) if n.endswith("DType")]
    return safe


class _Opaque:
    """Stand-in for a foreign Python object inside a checkpoint (its pickled state is kept, nothing runs)."""

    def __setstate__(self, state):
        self.state = state


def _first_line(e: BaseException) -> str:
    msg = str(e)
    if "WeightsUnpickler error:" in msg:  # torch's advice to set weights_only=False is not repeated
        msg = msg.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in msg.splitlines() if line.strip()]
    return lines[0][:200] if lines else ""


def torch_load(path: str | Path, trust_pickle: bool | None = None, what: str = "torch file", *,
               map_location: Any = "cpu", inert_objects: bool = False) -> Any:
    """The one way this project reads a torch file: ``torch.load(..., weights_only=True)``, which unpickles tensors,
    plain Python values and plain numpy arrays (old OpenScene files) only, never code.

    Every failure raises :class:`SASInputError` naming the file: missing, truncated / corrupt, or holding Python
    objects that weights-only loading refuses. Two opt-ins for such objects:

    * ``inert_objects``: third-party training checkpoints (PyTorch Lightning's ``.ckpt``) carry hyper-parameter
      containers (``AttributeDict``, ``argparse.Namespace``) next to the tensors; each is mapped to an inert stand-in
      (a ``dict``, or an object keeping the pickled state) so the tensors load and nothing runs;
    * ``trust_pickle=True`` (default: the environment variable ``SAS_TRUST_PICKLE=1``): full unpickling, only for
      legacy files you trust.
    """
    import torch

    p = require_file(Path(path).expanduser(), what)
    if trust_pickle is None:
        trust_pickle = os.environ.get(TRUST_PICKLE_ENV, "") == "1"
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:
        msg = str(e)
        refused = ("Weights only load failed" in msg or "Unsupported global" in msg) \
            and "Unsupported operand" not in msg  # an unknown opcode is a corrupt file, not a refused object
        if not refused:
            raise SASInputError(p, f"cannot read {what} (truncated or corrupt: {type(e).__name__}: "
                                   f"{_first_line(e)})") from None
        first = e
    if inert_objects:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(p))
        except Exception:
            names = []
        attempts = (
            [(dict, n) for n in names],
            [(type(n.rsplit(".", 1)[-1], (_Opaque,), {}), n) for n in names],
            [(dict, n) if "dict" in n.lower() else (type(n.rsplit(".", 1)[-1], (_Opaque,), {}), n) for n in names],
        ) if names else ()
        for stand_ins in attempts:
            try:
                with torch.serialization.safe_globals(numpy_safe_globals() + stand_ins):
                    return torch.load(p, map_location=map_location, weights_only=True)
            except Exception:
                continue
    if not trust_pickle:
        m = re.search(r"Unsupported global: GLOBAL (\S+)", str(first))
        raise SASInputError(p, f"{what} needs unpickling of arbitrary objects"
                               f"{' (' + m.group(1) + ')' if m else ''}, refused for safety; if you trust this "
                               f"file, set {TRUST_PICKLE_ENV}=1 (or pass trust_pickle=True)") from None
    try:
        return torch.load(p, map_location=map_location, weights_only=False)
    except Exception as e:
        raise SASInputError(p, f"cannot read {what} ({type(e).__name__}: {_first_line(e)})") from None


def to_numpy(x, p: Path, what: str) -> np.ndarray:
    """A tensor / array / list as a numpy array; anything else raises naming the file."""
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, (np.ndarray, list, tuple)):
        return np.asarray(x)
    raise SASInputError(p, f"{what} has unexpected type {type(x).__name__}")
