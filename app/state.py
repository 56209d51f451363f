"""Process-wide app state: scenes, their layers, query engines, cached segmentations, sessions, build progress.

Heavy objects (scenes, features, engines, the text encoder) live here once per process; each browser tab gets a
small :class:`~app.session.Session` keyed by a token. Everything is guarded by locks: gradio workers and viser's
callback pool call in from many threads.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np

from sas_engine.errors import SASInputError
from sas_engine.labels import PROMPT_SCENE
from sas_engine.query import QueryEngine, TextEmbeddingCache
from sas_engine.scene import Scene
from sas_engine.store import ArtefactStore

from .layers import SceneLayers
from .memory import (BoundedTextEncoder, MemoryConfig, Resident, SceneLRU, encoder_factory, make_export_root,
                     release_free_heap, tune_allocator)

if TYPE_CHECKING:  # pragma: no cover
    from sas_engine.pipeline import Progress

MAX_SESSIONS = MemoryConfig.max_sessions
"""Most browser sessions kept by default (:attr:`MemoryConfig.max_sessions`)."""


@dataclass
class BuildStatus:
    """Progress of the demo build (or of the user's scenes, :mod:`app.build`), polled by the page."""

    running: bool = False
    fraction: float = 0.0
    message: str = ""
    error: Optional[str] = None
    done: bool = False
    started: float = field(default_factory=time.time)
    title: str = ""
    """What is being built, e.g. "Processing your scenes" (empty: the demo)."""

    def markdown(self) -> str:
        if self.title:
            if self.error:
                return f"**{self.title} failed:** {self.error}"
            if self.running:
                return f"**{self.title}** ({self.fraction * 100:.0f}%): {self.message}"
            return self.message
        if self.error:
            return f"**Demo build failed:** {self.error}"
        if self.running:
            return f"**Building the demo** ({self.fraction * 100:.0f}%): {self.message}"
        return self.message


def _scene_key(scene_id: object) -> str:
    if not isinstance(scene_id, str) or not scene_id.strip():
        raise SASInputError(None, "choose a scene")
    return scene_id.strip()


@dataclass(frozen=True)
class SceneEntry:
    """A registered scene: where it is read from, or the scene itself when it was handed over in memory.

    Attributes:
        path: the scene's folder or file (``None`` for an in-memory scene).
        dataset: dataset preset passed to the loader (``None``: detected).
        trust_pickle: whether a legacy pickled ``.pth`` at ``path`` may be fully unpickled. Only a path the user
            named on the command line with ``--trust-pickle`` gets True; scenes opened from the page never do.
        scene: the in-memory scene (``AppState.add_scene``): it cannot be re-read, so it is never evicted.
    """

    path: Optional[Path] = None
    dataset: Optional[str] = None
    trust_pickle: bool = False
    scene: Optional[Scene] = None


class AppState:
    """Everything the panel and the viewer share.

    Args:
        store: artefact store folder (or an :class:`ArtefactStore`).
        data_roots: folders scenes may be opened from; a folder outside all of them is refused.
        text_encoder: an object with ``encode(list[str])`` or ``None`` to build the engine's encoder for
            ``text_encoder_spec`` on first use (wrapped in a :class:`~app.memory.BoundedTextEncoder`).
        text_encoder_spec: spec for the lazily built encoder (``None`` = MiniLM).
        device: torch device for the text encoder.
        template: prompt template for label names.
        up: gravity alignment of the scenes it loads (``load_scene``'s ``up``; None = each layout's default).
        memory: the bounds on scenes, text caches and sessions kept in memory (:class:`~app.memory.MemoryConfig`).
    """

    def __init__(self, store, data_roots: Sequence[str | Path] = (), *, text_encoder=None,
                 text_encoder_spec: Optional[str] = None, device: str = "cpu", template: str = PROMPT_SCENE,
                 up: Optional[str] = None, memory: Optional[MemoryConfig] = None):
        tune_allocator()  # large buffers (a scene's features) go back to the system when freed: app.memory
        self.store = store if isinstance(store, ArtefactStore) else ArtefactStore(store)
        self.data_roots = [Path(r).resolve() for r in data_roots]
        self.device = device
        self.template = template
        self.memory = memory or MemoryConfig()
        self._encoder = text_encoder
        self._encoder_spec = text_encoder_spec
        self._cache: Optional[TextEmbeddingCache] = None
        self._lock = threading.RLock()
        self._entries: "OrderedDict[str, SceneEntry]" = OrderedDict()
        self._alias: dict[str, str] = {}  # a loader's own scene id -> the id the scene was registered under
        self.resident = SceneLRU(self.memory.max_scenes)
        self._load_locks: dict[str, threading.Lock] = {}
        self._layer_builds = threading.BoundedSemaphore(self.memory.max_layer_builds)
        self._layer_serial: dict[str, int] = {}
        self.up = up
        self.sessions: "OrderedDict[str, object]" = OrderedDict()
        self.build = BuildStatus()
        self.viewer = None  # set by app.server when the viser viewer runs
        self.text_ready = False  # set once warm_text_encoder has loaded the model
        self._calibrations: Optional[dict] = None  # layer -> VocabularyCalibration, read on first use
        self._export_root: Optional[Path] = None
        self._export_finalizer = None

    @property
    def export_root(self) -> Path:
        """This run's folder of exported files (``<tmp>/sas_exports_<pid>_*``, made on first use; deleted by
        :meth:`close`, and at interpreter exit when nobody called it). Each tab writes under ``<root>/<token>``,
        which is deleted when the tab's session closes."""
        with self._lock:
            if self._export_root is None:
                root = make_export_root()
                self._export_root = root
                self._export_finalizer = weakref.finalize(self, shutil.rmtree, str(root), ignore_errors=True)
            return self._export_root

    def close(self) -> None:
        """Delete this run's export folder (the launcher calls it on every exit: Ctrl-C, SIGTERM, errors)."""
        with self._lock:
            root, self._export_root = self._export_root, None
            fin, self._export_finalizer = self._export_finalizer, None
        if fin is not None:
            fin.detach()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    # -- scenes ------------------------------------------------------------------------------------------------
    def add_scene(self, scene: Scene) -> str:
        """Register an already loaded scene (kept in memory for the process: it cannot be read back)."""
        with self._lock:
            self._entries[scene.scene_id] = SceneEntry(scene=scene)
        self.resident.pop(scene.scene_id)
        return scene.scene_id

    def add_scene_path(self, path: str | Path, scene_id: Optional[str] = None, dataset: Optional[str] = None,
                       check_roots: bool = True, trust_pickle: bool = False) -> str:
        """Register a scene folder/file, loaded on first use. Without ``scene_id`` the scene is loaded now to learn it.

        Args:
            path: the scene's folder or file.
            scene_id: its id (``None``: load it now and use the loader's).
            dataset: dataset preset of the loader.
            check_roots: refuse a path outside the data roots (the page's "Open" always checks).
            trust_pickle: allow full unpickling of a legacy ``.pth`` at this path (only for a file the user named
                on the command line; see :class:`SASInputError` from ``sas_engine.io.files.torch_load`` otherwise).
        Raises:
            SASInputError: the path is outside the configured data roots, missing, or not a scene.
        """
        p = self.resolve_path(path) if check_roots else Path(path).resolve()
        if not p.exists():
            raise SASInputError(p, "scene folder not found")
        entry = SceneEntry(p, dataset, bool(trust_pickle))
        if scene_id is None:
            scene = self._load(entry)
            with self._lock:
                self._entries[scene.scene_id] = entry
            self.resident.pop(scene.scene_id)
            self.resident.put(scene.scene_id, Resident(scene))
            return scene.scene_id
        with self._lock:
            self._entries.setdefault(scene_id, entry)
        return scene_id

    def resolve_path(self, path: object) -> Path:
        """The resolved path if it lies inside one of the data roots (symlinks and '..' resolved first)."""
        if not isinstance(path, (str, Path)) or not str(path).strip():
            raise SASInputError(None, "type the path of a scene folder")
        if "\x00" in str(path):
            raise SASInputError(None, "the path contains a NUL character")
        p = Path(str(path).strip()).expanduser()
        try:
            rp = p.resolve()
        except (OSError, RuntimeError) as e:
            raise SASInputError(p, f"cannot resolve path ({e})") from None
        for root in self.data_roots:
            if rp == root or rp.is_relative_to(root):
                return rp
        roots = ", ".join(str(r) for r in self.data_roots) or "none configured"
        raise SASInputError(p, f"refused: outside the configured data roots ({roots})")

    def scene_ids(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def scene_entry(self, scene_id: str) -> SceneEntry:
        """How a registered scene is read (path, dataset, whether pickles are trusted)."""
        with self._lock:
            return self._entries[self._resolve(scene_id)]

    def _load(self, entry: SceneEntry) -> Scene:
        from sas_engine.io import load_scene

        return load_scene(entry.path, dataset=entry.dataset, up=self.up, trust_pickle=bool(entry.trust_pickle))

    def _resolve(self, scene_id: object) -> str:
        sid = _scene_key(scene_id)
        with self._lock:
            if sid in self._entries:
                return sid
            alias = self._alias.get(sid)
            if alias is not None:
                return alias
            known = ", ".join(list(self._entries)[:10]) or "none loaded yet"
        raise SASInputError(None, f"unknown scene {sid[:80]!r}; known: {known}")

    def _resident(self, scene_id: object) -> Resident:
        """The scene's resident entry, loading the scene when it is not in memory (LRU; see :class:`SceneLRU`)."""
        sid = self._resolve(scene_id)
        r = self.resident.get(sid)
        if r is not None:
            return r
        with self._lock:
            entry = self._entries[sid]
            load_lock = self._load_locks.setdefault(sid, threading.Lock())
        with load_lock:  # the page and the background build ask for a scene at once: load it once
            r = self.resident.get(sid)
            if r is not None:
                return r
            scene = entry.scene if entry.scene is not None else self._load(entry)
            if scene.scene_id != sid:  # the loader names it differently: answer to both names
                with self._lock:
                    if scene.scene_id not in self._entries:
                        self._alias[scene.scene_id] = sid
            evicted = self.resident.evictions
            r = self.resident.put(sid, Resident(scene))
        if self.resident.evictions != evicted:  # a scene was dropped (and is no longer referenced by the LRU)
            release_free_heap()
        return r

    def scene(self, scene_id: str) -> Scene:
        return self._resident(scene_id).scene

    def layers(self, scene_id: str) -> SceneLayers:
        """The scene's layers (listed from the store once while the scene is resident; :meth:`refresh` re-lists)."""
        return self._resident_layers(scene_id)[1]

    def _resident_layers(self, scene_id: object) -> tuple[Resident, SceneLayers]:
        r = self._resident(scene_id)
        with self._lock:
            lay = r.layers
        if lay is None:
            lay = SceneLayers(r.scene, self.store)
            with self._lock:
                if r.layers is None:
                    r.layers = lay
                lay = r.layers
        return r, lay

    def refresh(self, scene_id: Optional[str] = None) -> None:
        """Forget cached layers / engines / segmentations (all scenes or one), e.g. after the store changed."""
        if scene_id:
            try:
                sids = [self._resolve(scene_id)]
            except SASInputError:
                return
        else:
            sids = self.resident.keys()
        for sid in sids:
            r = self.resident.peek(sid)
            if r is None:
                continue
            with self._lock:
                r.layers = None
                r.engines.clear()
                r.shapes.clear()
                r.segs.clear()

    def layers_changed(self, scene_id: str) -> None:
        """New artefacts of a scene are in the store (a background build finished a stage): forget its cached
        layers and bump :meth:`layer_serial`, which the page polls to refresh its mode lists."""
        self.refresh(scene_id)
        with self._lock:
            self._layer_serial[scene_id] = self._layer_serial.get(scene_id, 0) + 1

    def layer_serial(self, scene_id: Optional[str]) -> int:
        """How many times :meth:`layers_changed` was called for a scene (0 = never)."""
        with self._lock:
            return self._layer_serial.get(scene_id, 0) if scene_id else 0

    def memory_report(self) -> dict:
        """What is held now: resident scenes (LRU order), their feature bytes, text cache sizes, sessions."""
        with self._lock:
            cache = self._cache
            n_sessions = len(self.sessions)
        enc = getattr(cache, "encoder", None)
        return {"resident_scenes": self.resident.keys(), "evictions": self.resident.evictions,
                "feature_mb": round(self.resident.feature_bytes() / 2**20, 1),
                "text_entries": 0 if cache is None else min(cache.misses, cache.max_entries),  # each miss adds one
                "encoder_strings": enc.cache_size() if hasattr(enc, "cache_size") else None,
                "sessions": n_sessions}

    # -- text and queries --------------------------------------------------------------------------------------
    def text_cache(self) -> TextEmbeddingCache:
        """The shared text-embedding cache (builds the text encoder on first use), bounded by
        :attr:`MemoryConfig.max_text_entries`."""
        with self._lock:
            if self._cache is None:
                enc = self._encoder
                if enc is None:
                    enc = BoundedTextEncoder(encoder_factory(self._encoder_spec, self.device),
                                             self.memory.max_encoder_strings)
                self._cache = TextEmbeddingCache(enc, max_entries=self.memory.max_text_entries)
            return self._cache

    def engine(self, scene_id: str, artefact: str) -> QueryEngine:
        """A :class:`QueryEngine` with the layer's features set: the only in-memory copy of them, held while the
        scene is resident (:class:`~app.memory.SceneLRU`)."""
        r, layers = self._resident_layers(scene_id)
        layers.layer(artefact)  # unknown layer -> clear error
        with self._lock:
            eng = r.engines.get(artefact)
            if eng is not None:
                return eng
            build_lock = r.locks.setdefault(artefact, threading.Lock())
        with build_lock:  # two tabs asking for the same layer build it once
            with self._lock:
                eng = r.engines.get(artefact)
            if eng is not None:
                return eng
            with self._layer_builds:  # at most MemoryConfig.max_layer_builds matrices in flight (app.memory)
                feats, mask = layers.features(artefact)
                eng = QueryEngine(self.text_cache())
                eng.set_scene(layers.scene_id, feats, mask)
                shape = (int(feats.shape[0]), int(feats.shape[1]))
                del feats  # the engine's normalised float16 copy is the one kept
            with self._lock:
                if r.layers is layers:  # not refreshed meanwhile (then the engine serves this call only)
                    r.engines[artefact] = eng
                    r.shapes[artefact] = shape
        return eng

    def _seg_get(self, r: Resident, key: tuple):
        with self._lock:
            got = r.segs.get(key)
            if got is not None:
                r.segs.move_to_end(key)
            return got

    def _seg_put(self, r: Resident, key: tuple, value) -> None:
        with self._lock:
            r.segs[key] = value
            while len(r.segs) > self.memory.max_segmentations:
                r.segs.popitem(last=False)

    def segmentation(self, scene_id: str, artefact: str, names: Sequence[str],
                     template: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64 [N], scores float32 [N]) of a layer over ``names`` (cached per label set and template)."""
        template = self.template if template is None else template
        r = self._resident(scene_id)
        key = (artefact, tuple(names), template)
        got = self._seg_get(r, key)
        if got is not None:
            return got
        got = self.engine(scene_id, artefact).segment(list(names), template)
        for a in got:
            a.setflags(write=False)
        self._seg_put(r, key, got)
        return got

    def calibration(self, scene_id: str, artefact: str):
        """The shipped :class:`~sas_engine.query.VocabularyCalibration` of a feature layer
        (``checkpoints/query_calibration.json``), or ``None``: only when it was fitted for this layer and, for a
        model's features, for the checkpoint that made them (the artefact's header records its digest)."""
        from sas_engine.query import CALIBRATION_FILE, load_calibrations

        with self._lock:
            if self._calibrations is None:
                try:
                    self._calibrations = load_calibrations(CALIBRATION_FILE)
                except SASInputError as e:  # a damaged file costs the calibration, not the app
                    import logging

                    logging.getLogger("sas.app").warning("query calibration not used: %s", e)
                    self._calibrations = {}
            cal = self._calibrations.get(artefact)
        if cal is None or cal.checkpoint_sha is None:
            return cal
        conf = self.layers(scene_id).payload(artefact).get("config") or {}
        return cal if conf.get("sha") == cal.checkpoint_sha else None

    def query_segmentation(self, scene_id: str, artefact: str, names: Sequence[str], vocabulary: Sequence[str]):
        """A comma-list query's :class:`~sas_engine.query.NamedSegmentation` with a background (points matching none
        of ``names`` against ``vocabulary``; :data:`sas_engine.query.RELEVANCE` settings), cached per name list."""
        from sas_engine.query import RELEVANCE

        r = self._resident(scene_id)
        key = (artefact, "names", tuple(names), tuple(vocabulary))
        got = self._seg_get(r, key)
        if got is not None:
            return got
        groups = self.layers(scene_id).superpoints() if RELEVANCE.segment_superpoints else None
        got = self.engine(scene_id, artefact).segment_names(list(names), list(vocabulary), RELEVANCE, groups=groups,
                                                            calibration=self.calibration(scene_id, artefact))
        got.labels.setflags(write=False)
        got.scores.setflags(write=False)
        self._seg_put(r, key, got)
        return got

    def warm_text_encoder(self, vocabulary: Sequence[str] = ()) -> threading.Thread:
        """Load the text encoder and embed the vocabulary's prompt ensembles (plus the canonical negatives) in a
        background thread, so the first query does not wait for the model; returns the started thread. A failure is
        logged and left for the first query to report."""
        import logging

        from sas_engine.labels import get_label_set
        from sas_engine.query import RELEVANCE

        words = list(vocabulary) or list(get_label_set("scannet20").prompt_names)

        def run():
            t0 = time.monotonic()
            try:
                QueryEngine(self.text_cache()).ensemble_embeddings(words + list(RELEVANCE.canonical), RELEVANCE)
                self.text_ready = True
                logging.getLogger("sas.app").info("text encoder ready in %.1f s", time.monotonic() - t0)
            except Exception as e:  # noqa: BLE001 - the first query raises it again, with the panel's message
                logging.getLogger("sas.app").warning("text encoder warm-up failed: %s", e)

        t = threading.Thread(target=run, name="text-encoder-warm-up", daemon=True)
        t.start()
        return t

    # -- sessions ----------------------------------------------------------------------------------------------
    def new_session(self, token: Optional[str] = None):
        """Create (or return) the session of a browser tab. Beyond :attr:`MemoryConfig.max_sessions` the least
        recently used session is closed (:meth:`drop_session`)."""
        from .session import Session

        tok = token or uuid.uuid4().hex
        if not isinstance(tok, str) or not tok.isalnum() or len(tok) > 64:
            raise SASInputError(None, "invalid session token")
        dropped = []
        with self._lock:
            s = self.sessions.get(tok)
            if s is None:
                s = Session(self, tok)
                self.sessions[tok] = s
                while len(self.sessions) > self.memory.max_sessions:
                    dropped.append(self.sessions.popitem(last=False)[1])
            self.sessions.move_to_end(tok)
        for old in dropped:
            self._closed(old)
        return s

    def session(self, token: object):
        with self._lock:
            s = self.sessions.get(token) if isinstance(token, str) else None
        if s is None:
            raise SASInputError(None, "this page's session has expired: reload the page")
        return s

    def drop_session(self, token: str) -> None:
        """Close a tab's session (the page was closed, or its viewer-only client left): its exported files are
        deleted and the viewer forgets its pairing."""
        with self._lock:
            s = self.sessions.pop(token, None)
        if s is not None:
            self._closed(s)

    def session_export_dir(self, token: str) -> Path:
        """The folder a session's exports are written to (``<export root>/<token>``)."""
        if not isinstance(token, str) or not token.isalnum():
            raise SASInputError(None, "invalid session token")
        return self.export_root / token

    def _closed(self, s) -> None:
        with s.lock:  # an export or query of this tab in flight finishes first
            s.closed = True
        with self._lock:
            root = self._export_root
        if root is not None:
            shutil.rmtree(root / s.token, ignore_errors=True)
        v = self.viewer
        if v is not None:
            v.forget(s.token)

    # -- demo build --------------------------------------------------------------------------------------------
    def run_build(self, build: Callable[[Progress], Sequence[str]], locate: Callable[[str], Optional[Path]],
                  on_progress: Optional[Progress] = None) -> list[str]:
        """Run ``build(progress)`` (e.g. ``sas_engine.demo.build_demo``), tracking progress in :attr:`build`; then
        register the scene ids it returns, each found on disk with ``locate(scene_id)``.

        ``progress`` is the engine's :data:`sas_engine.pipeline.Progress`: ``progress(fraction, message)``, the
        fraction clamped to [0, 1] (an empty message keeps the previous one). ``on_progress`` (the launcher's
        terminal bar) is called with the same two values after each update."""
        st = self.build
        st.running, st.error, st.done, st.fraction, st.message = True, None, False, 0.0, "starting"

        def progress(fraction: float, message: str) -> None:
            st.fraction = max(0.0, min(1.0, float(fraction)))
            if message:
                st.message = message
            if on_progress is not None:
                on_progress(st.fraction, st.message)

        try:
            ids = list(build(progress))
            added = []
            for sid in ids:
                p = locate(sid)
                if p is None:
                    raise SASInputError(None, f"the demo built scene {sid} but its folder was not found under "
                                              f"{', '.join(map(str, self.data_roots))}")
                added.append(self.add_scene_path(p, scene_id=sid, check_roots=False))
            self.refresh()
            st.message = f"demo ready: {len(added)} scenes"
            st.done = True
            return added
        except Exception as e:  # shown in the page; the launcher prints it too
            st.error = f"{type(e).__name__}: {e}"
            raise
        finally:
            st.running = False


def find_scene_folder(roots: Sequence[Path], scene_id: str, max_depth: int = 4) -> Optional[Path]:
    """First folder named ``scene_id`` under a ``scans`` folder (or directly) within ``roots`` (bounded depth)."""
    for root in roots:  # the usual places first: <root>/<split>/scans/<id>, <root>/scans/<id>, <root>/<id>
        root = Path(root)
        if not root.is_dir():
            continue
        for cand in [*sorted(root.glob(f"*/scans/{scene_id}")), root / "scans" / scene_id, root / scene_id]:
            if cand.is_dir():
                return cand
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(root):
            depth = len(Path(dirpath).relative_to(root).parts)
            if scene_id in dirnames:
                return Path(dirpath) / scene_id
            if depth >= max_depth:
                dirnames[:] = []
    return None
