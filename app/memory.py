"""What the app keeps in memory, and the bounds on it.

A long-running app is asked for many scenes, layers and texts; everything it caches here is bounded:

* :class:`SceneLRU` holds the *resident* scenes: per scene the loaded :class:`~sas_engine.scene.Scene`, its
  :class:`~app.layers.SceneLayers` (small per-layer payloads, no feature matrices) and one
  :class:`~sas_engine.query.QueryEngine` per feature layer. The engine owns the only in-memory copy of a layer's
  features (L2-normalised float16, made once by ``QueryEngine.set_scene``); nothing else keeps the matrix read
  from the store. Beyond :attr:`MemoryConfig.max_scenes` the least recently used scene is dropped as a whole and
  is read back from the store (and its folder) when it is asked for again.
* :class:`BoundedTextEncoder` keeps at most :attr:`MemoryConfig.max_encoder_strings` strings in the text encoder's
  own cache, through the engine's public API only (see its docstring); the query engines' shared
  :class:`~sas_engine.query.TextEmbeddingCache` is bounded by :attr:`MemoryConfig.max_text_entries`.

Bounding what Python holds is not enough for a flat resident set: memory freed by Python, numpy and torch goes back
to the C allocator, which keeps it. With glibc's default, an array freed after a large ``mmap`` allocation raises the
``mmap`` threshold (up to 32 MB), so later scene loads (feature matrices, points, their float32 temporaries, 10-200
MB each) come from the heap arenas of whichever gradio worker thread ran them and stay there once freed. Measured with
``benchmarks/bench_app_memory.py`` (3 rooms, 2 resident, 5 page clients switching rooms, 1,000 queries), the server
grew from 1.0 GB to 2.6 GB during the 200 warm-up queries and by another 0.9 GB after them, while Python held a
bounded set (the same load in one process without gradio: 0.95 to 2.2 GB in 300 queries, of which ``malloc_trim``
gave 1.0 GB back). :func:`tune_allocator` (called by :class:`~app.state.AppState`) therefore fixes the threshold at
:data:`MMAP_THRESHOLD`, so every large buffer is its own mapping, returned when freed, and
:func:`release_free_heap` hands the arenas' free pages back after a scene is evicted; with both the benchmark's
server stays at 1.2-1.3 GB after the warm-up.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

MMAP_THRESHOLD = 1 << 20
"""Bytes from which glibc serves an allocation with its own ``mmap`` (returned to the system on free), fixed by
:func:`tune_allocator` instead of glibc's adaptive threshold (128 KB rising to 32 MB). A query's per-point columns
(4 bytes x N points: 0.6 MB at 150k points) stay below it, on the heap."""
_M_MMAP_THRESHOLD = -3  # mallopt parameter number (malloc.h)
_LIBC: Optional[Any] = None
_LIBC_LOCK = threading.Lock()
_TUNED = False

EXPORT_PREFIX = "sas_exports_"
"""Name prefix of an app run's export folder under the system's temporary folder (``sas_exports_<pid>_<random>``)."""


@dataclass(frozen=True)
class MemoryConfig:
    """Bounds on what one app process keeps in memory (``AppState(memory=...)``).

    Attributes:
        max_scenes: scenes resident at once (their points, layer payloads and every feature layer's query engine);
            the least recently used one is dropped beyond it and re-read from the store when needed again. At
            150k points and 512-d float16 features one layer costs 150 MB, so a scene with 7 layers about 1 GB.
        max_text_entries: prompt strings whose embeddings the query engines' shared cache keeps (LRU; 4096 x 512-d
            float32 = 8 MB).
        max_encoder_strings: strings the text encoder's own cache may hold before it is replaced by a fresh
            encoder instance on the same (shared) model weights.
        max_segmentations: cached label maps (colour modes and comma-list queries) per resident scene (LRU).
        max_sessions: browser tabs kept; the least recently used one is closed (and its exports deleted) beyond it.
        max_layer_builds: feature layers read from the store into query engines at once, across all tabs and
            scenes (more wait their turn). Each build holds the stored matrix and its normalised copy, 2 x N x C
            float16 (90 MB at 58k points x 384-d), until it finishes; tabs switching rooms at once would otherwise
            stack them.
    """

    max_scenes: int = 3
    max_text_entries: int = 4096
    max_encoder_strings: int = 8192
    max_segmentations: int = 24
    max_sessions: int = 64
    max_layer_builds: int = 1

    def __post_init__(self):
        for f in dataclasses.fields(self):
            name, v = f.name, getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"MemoryConfig.{name} must be a whole number >= 1, got {v!r}")


@dataclass
class Resident:
    """One resident scene: the loaded scene, its layers and its query engines (one per feature layer)."""

    scene: Any
    layers: Any = None
    engines: dict = field(default_factory=dict)
    segs: "OrderedDict[tuple, Any]" = field(default_factory=OrderedDict)
    shapes: dict = field(default_factory=dict)
    """(points, channels) of each engine's float16 feature matrix, by artefact."""
    locks: dict = field(default_factory=dict)
    """One lock per artefact: two tabs asking for the same layer build its engine once."""

    def feature_bytes(self) -> int:
        """Bytes of the feature matrices its engines hold (float16)."""
        return sum(2 * n * c for n, c in list(self.shapes.values()))


class SceneLRU:
    """Thread-safe LRU of :class:`Resident` scenes, at most ``max_scenes`` of them.

    Args:
        max_scenes: the bound.
        on_evict: called with ``(scene_id, resident)`` after a scene was dropped (outside the lock).
    """

    def __init__(self, max_scenes: int, on_evict: Optional[Callable[[str, Resident], None]] = None):
        if max_scenes < 1:
            raise ValueError("max_scenes must be >= 1")
        self.max_scenes = int(max_scenes)
        self.on_evict = on_evict
        self._items: "OrderedDict[str, Resident]" = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    def get(self, sid: str) -> Optional[Resident]:
        """The resident scene (marked most recently used), or ``None``."""
        with self._lock:
            r = self._items.get(sid)
            if r is not None:
                self._items.move_to_end(sid)
            return r

    def peek(self, sid: str) -> Optional[Resident]:
        """The resident scene without touching its recency."""
        with self._lock:
            return self._items.get(sid)

    def put(self, sid: str, resident: Resident) -> Resident:
        """Add ``resident`` unless ``sid`` is resident already (that one is returned); evicts beyond the bound."""
        with self._lock:
            got = self._items.get(sid)
            if got is not None:
                self._items.move_to_end(sid)
                return got
            self._items[sid] = resident
            dropped = []
            while len(self._items) > self.max_scenes:
                dropped.append(self._items.popitem(last=False))
            self.evictions += len(dropped)
        for k, r in dropped:
            if self.on_evict is not None:
                self.on_evict(k, r)
        return resident

    def pop(self, sid: str) -> Optional[Resident]:
        with self._lock:
            return self._items.pop(sid, None)

    def keys(self) -> list[str]:
        """Resident scene ids, least recently used first."""
        with self._lock:
            return list(self._items)

    def items(self) -> list[tuple[str, Resident]]:
        with self._lock:
            return list(self._items.items())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def feature_bytes(self) -> int:
        """Bytes of all resident feature matrices."""
        return sum(r.feature_bytes() for _, r in self.items())


class BoundedTextEncoder:
    """A text encoder whose string cache is bounded.

    The engine's :class:`~sas_engine.teachers.text.TextEncoder` keeps up to its ``max_cache`` strings
    (:data:`~sas_engine.teachers.text.DEFAULT_MAX_CACHE`, 4096); the app holds whatever encoder ``factory`` makes to
    the tighter :attr:`MemoryConfig.max_encoder_strings`. This wrapper builds its own encoder instance with
    ``factory()`` (a public constructor: the model weights are shared per process by the engine, so a new instance
    costs no model load) and, once that instance's :meth:`cache_size` passes ``max_strings``, replaces it with a
    fresh one, so at most ``max_strings`` strings (plus one batch) are held. Calls are serialised (tokenizers are not
    safe to call from two threads at once).

    Args:
        factory: returns a new encoder with ``encode(list[str])`` and ``cache_size()``.
        max_strings: the bound.
    """

    def __init__(self, factory: Callable[[], Any], max_strings: int):
        self._factory = factory
        self.max_strings = int(max_strings)
        self._lock = threading.Lock()
        self._enc = factory()
        self.renewals = 0
        self.name = str(getattr(self._enc, "name", type(self._enc).__name__))
        self.dim = getattr(self._enc, "dim", None)
        self.disk_key = getattr(self._enc, "disk_key", None)

    def encode(self, texts):
        with self._lock:
            out = self._enc.encode(texts)
            if self._enc.cache_size() > self.max_strings:
                self._enc = self._factory()
                self.renewals += 1
            return out

    def encode_labels(self, names, template: str):
        return self.encode([template.format(n) for n in names])

    def cache_size(self) -> int:
        with self._lock:
            return int(self._enc.cache_size())


def _glibc() -> Optional[Any]:
    """The C library when it is glibc (has ``malloc_trim`` and ``mallopt``), else ``None`` (macOS, musl...)."""
    global _LIBC
    with _LIBC_LOCK:
        if _LIBC is None:
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _LIBC = lib if hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt") else False
            except OSError:
                _LIBC = False
        return _LIBC or None


def tune_allocator() -> bool:
    """Fix glibc's ``mmap`` threshold at :data:`MMAP_THRESHOLD` for this process (once; see the module docstring).
    Returns whether it is in effect (False where the C library is not glibc)."""
    global _TUNED
    lib = _glibc()
    if lib is None:
        return False
    with _LIBC_LOCK:
        if not _TUNED:
            _TUNED = bool(lib.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
        return _TUNED


def release_free_heap() -> bool:
    """Return the C heap's free pages to the system (glibc ``malloc_trim(0)``: every arena, a few ms); called after
    a scene is evicted. Returns whether anything was released (False where the C library is not glibc)."""
    lib = _glibc()
    return bool(lib.malloc_trim(0)) if lib is not None else False


def encoder_factory(spec: Optional[str], device: str) -> Callable[[], Any]:
    """A factory of fresh engine text encoders for ``spec`` (``None``/``"minilm"`` or ``"openclip:<arch>:<path>"``)
    that share the process's loaded weights (:func:`sas_engine.teachers.text.load_open_clip` and MiniLM's model are
    cached per process by the engine)."""
    from sas_engine.teachers.text import MiniLMTextEncoder, OpenCLIPTextEncoder, load_open_clip, parse_openclip_spec

    if spec in (None, "", "minilm"):
        return lambda: MiniLMTextEncoder(device=device)
    arch, path = parse_openclip_spec(str(spec))
    load_open_clip(arch, path, device=device)  # a bad spec or weights file fails now, with the file named

    def make():
        model, tok = load_open_clip(arch, path, device=device)
        return OpenCLIPTextEncoder(model, tok, name=str(spec), device=device)

    return make


def make_export_root() -> Path:
    """A new, private export folder for this process (``<tmp>/sas_exports_<pid>_<random>``); first removes the
    export folders of app processes that no longer run (a run killed with SIGKILL cannot delete its own)."""
    remove_stale_export_roots()
    return Path(tempfile.mkdtemp(prefix=f"{EXPORT_PREFIX}{os.getpid()}_"))


def remove_stale_export_roots(tmp: Optional[Path] = None) -> list[Path]:
    """Delete ``sas_exports_<pid>_*`` folders under the temporary folder whose process is gone; returns them."""
    root = Path(tmp or tempfile.gettempdir())
    removed = []
    try:
        entries = list(root.glob(f"{EXPORT_PREFIX}*"))
    except OSError:
        return removed
    for d in entries:
        parts = d.name[len(EXPORT_PREFIX):].split("_", 1)
        if len(parts) != 2 or not parts[0].isdigit() or not d.is_dir():
            continue
        pid = int(parts[0])
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            if d.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
