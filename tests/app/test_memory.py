"""Bounded memory and per-call trust: the scene LRU owns the only copy of each layer's features, the text caches
are bounded, a tab's exports are deleted with its session, and pickles are trusted per loader call (never from the
page)."""
from __future__ import annotations

import fractions
import gc
import subprocess
import tempfile
import types
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from app.layers import SceneLayers
from app.memory import BoundedTextEncoder, MemoryConfig, make_export_root, release_free_heap, tune_allocator
from app.panel import Panel
from app.state import AppState
from sas_engine.errors import SASInputError
from sas_engine.io.ply import write_ply
from sas_engine.store import ArtefactStore
from sas_engine.teachers.text import TextEncoder

from .conftest import HashEncoder, make_scene, populate_store


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's folder moved into tmp_path, so a test sees every export folder the app makes."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _state(tmp_path, encoder, ids, **memory) -> AppState:
    """An app state with ``ids`` registered (fixture scenes, their layers stored); ``encoder=None``: the app builds
    its own (bounded) text encoder."""
    store = ArtefactStore(tmp_path / "store")
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    st = AppState(store, [tmp_path / "data"], text_encoder=encoder, memory=MemoryConfig(**memory))
    for k, sid in enumerate(ids):
        scene = make_scene(seed=k, scene_id=sid)
        populate_store(store, scene, encoder or HashEncoder())
        st.add_scene(scene)
    return st


def test_scene_lru_bounds_features_and_holds_them_once(tmp_path, encoder, monkeypatch):
    ids = ["alpha0000_00", "beta0000_00", "gamma0000_00"]
    st = _state(tmp_path, encoder, ids, max_scenes=2)
    reads = []
    real = SceneLayers.features

    def spy(self, artefact):  # every feature matrix read from the store
        f, m = real(self, artefact)
        reads.append(weakref.ref(f))
        return f, m

    monkeypatch.setattr(SceneLayers, "features", spy)
    first = {}
    for sid in ids:
        s = st.new_session(f"tab{sid[:3]}")
        s.select_scene(sid)
        s.run_query("a chair in a scene")  # distilled layer
        first[sid] = s.query.heat.copy()
        s.set_modes("layer:fused.sas")  # and a fusion layer
    assert st.resident.keys() == ids[1:] and st.resident.evictions == 1
    n, c = 2000, 16
    per_scene = 2 * (2 * n * c)  # two float16 [N, C] matrices (pred3d.demo, fused.sas) per resident scene
    assert st.resident.feature_bytes() == 2 * per_scene
    assert st.memory_report()["resident_scenes"] == ids[1:]
    gc.collect()
    assert len(reads) == 6 and all(r() is None for r in reads)  # nothing kept a matrix read from the store...
    for sid in ids[1:]:  # ...and the payloads keep masks and weights, never features
        lay = st.layers(sid)
        for layer in lay.usable():
            assert "features" not in lay.payload(layer.artefact)
    # the evicted scene comes back on demand (read from the store again) and answers exactly as before
    s = st.session("tabalp")
    s.run_query("a chair in a scene")
    np.testing.assert_array_equal(s.query.heat, first["alpha0000_00"])
    assert st.resident.keys() == ["gamma0000_00", "alpha0000_00"] and len(reads) == 7
    with pytest.raises(ValueError, match="max_scenes"):
        MemoryConfig(max_scenes=0)


def test_freed_memory_goes_back_to_the_system_after_an_eviction(tmp_path, encoder, monkeypatch):
    """The C heap is trimmed once per eviction, after the LRU let go of the scene; large buffers are mmapped."""
    import ctypes.util

    glibc = "libc.so" in (ctypes.util.find_library("c") or "libc.so.6")
    assert tune_allocator() is glibc and tune_allocator() is glibc  # idempotent
    assert isinstance(release_free_heap(), bool)
    ids = ["alpha0000_00", "beta0000_00", "gamma0000_00"]
    st = _state(tmp_path, encoder, ids, max_scenes=2)
    seen = []

    def spy():
        gc.collect()
        seen.append((st.resident.evictions, [r() for r in refs]))
        return True

    monkeypatch.setattr("app.state.release_free_heap", spy)
    for sid in ids[:2]:
        st.scene(sid)
    refs = [weakref.ref(st.resident.peek(sid)) for sid in ids[:2]]  # the resident entries (engines, layers...)
    assert seen == []  # no eviction yet
    st.scene(ids[2])
    assert len(seen) == 1 and seen[0][0] == 1 and seen[0][1][0] is None  # trimmed after the entry was let go
    st.scene(ids[2])
    st.scene(ids[1])
    assert len(seen) == 1  # resident: nothing dropped, no trim


@pytest.mark.parametrize("bound", [1, 2])
def test_layer_builds_in_flight_are_bounded(tmp_path, encoder, monkeypatch, bound):
    """Tabs opening different scenes at once read at most max_layer_builds feature matrices at a time."""
    import threading
    import time

    ids = ["alpha0000_00", "beta0000_00", "gamma0000_00", "delta0000_00"]
    st = _state(tmp_path, encoder, ids, max_scenes=4, max_layer_builds=bound)
    real = SceneLayers.features
    now, most = [0], [0]
    lock = threading.Lock()

    def slow(self, artefact):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.2)
        try:
            return real(self, artefact)
        finally:
            with lock:
                now[0] -= 1

    monkeypatch.setattr(SceneLayers, "features", slow)
    for sid in ids:
        st.layers(sid)
    threads = [threading.Thread(target=st.engine, args=(sid, "pred3d.demo")) for sid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == bound and all(st.resident.peek(sid).engines.get("pred3d.demo") for sid in ids)
    with pytest.raises(ValueError, match="max_layer_builds"):
        MemoryConfig(max_layer_builds=0)


def test_evicted_scene_from_a_folder_is_dropped_and_reloaded(tmp_path, encoder):
    scene = make_scene(seed=3, scene_id="scan0001_00")
    d = tmp_path / "data" / "scans" / scene.scene_id
    p = scene.points
    write_ply(d / f"{scene.scene_id}_vh_clean_2.ply",
              {"x": p[:, 0], "y": p[:, 1], "z": p[:, 2], "red": scene.colors[:, 0], "green": scene.colors[:, 1],
               "blue": scene.colors[:, 2]})
    st = _state(tmp_path, encoder, ["other0000_00"], max_scenes=1)
    sid = st.add_scene_path(d, scene_id=scene.scene_id)
    loaded = st.scene(sid)
    ref = weakref.ref(loaded)
    pts = loaded.points.copy()
    del loaded
    st.layers("other0000_00")  # the bound is one scene: the folder's scene is dropped...
    assert st.resident.keys() == ["other0000_00"]
    gc.collect()
    assert ref() is None  # ...really: nothing else holds it
    again = st.scene(sid)  # and read back from its folder when asked for
    np.testing.assert_array_equal(again.points, pts)
    assert st.resident.keys() == [sid]


class CountingEncoder(TextEncoder):
    """The engine's TextEncoder (its real string cache) over a deterministic stand-in model."""

    name = "counting16"
    dim = 16
    made = 0

    def __init__(self):
        super().__init__()
        CountingEncoder.made += 1
        self._hash = HashEncoder()

    def _encode_batch(self, texts):
        return self._hash.encode(list(texts))


def test_text_caches_are_bounded(tmp_path, monkeypatch):
    enc = BoundedTextEncoder(CountingEncoder, max_strings=50)
    ref = CountingEncoder().encode(["query 3"])
    for k in range(400):
        out = enc.encode([f"query {k}", "a chair in a scene"])
        assert out.shape == (2, 16)
        assert enc.cache_size() <= 50
    assert enc.renewals >= 7
    torch.testing.assert_close(enc.encode(["query 3"]), ref)  # a renewed encoder gives the same embeddings

    # the app's own encoder: built through the factory, bounded; the query engines' text cache bounded too
    monkeypatch.setattr("app.state.encoder_factory", lambda spec, device: CountingEncoder)
    st = _state(tmp_path, None, ["fixture0000_00"], max_text_entries=40, max_encoder_strings=30)
    s = st.new_session("tab1")
    s.select_scene("fixture0000_00")
    for k in range(120):
        s.run_query(f"thing number {k}")
    cache = st.text_cache()
    assert isinstance(cache.encoder, BoundedTextEncoder) and cache.encoder.renewals >= 5
    assert cache.encoder.cache_size() <= 30
    assert len(cache._emb) == 40  # the engine's LRU (read here only to check the bound)
    rep = st.memory_report()
    assert rep["text_entries"] == 40 and rep["encoder_strings"] <= 30


def test_exports_are_deleted_with_their_session(fixture_state, private_tmp, tmp_path, encoder):
    st = fixture_state
    s = st.new_session("tabX")
    s.select_scene("fixture0000_00")
    s.set_modes("gt")
    ply, txt, _ = s.export()
    folder = st.export_root / "tabX"
    assert ply.is_file() and txt.is_file() and ply.parent == folder and folder.parent.parent == private_tmp
    Panel(st).unload(types.SimpleNamespace(session_hash="tabX"))  # the page's tab was closed
    assert not folder.exists() and st.export_root.is_dir()
    with pytest.raises(SASInputError, match="expired"):
        s.export()  # a handler still holding the closed session writes nothing
    assert not folder.exists()

    # sessions beyond the bound are closed, least recently used first, and their exports go with them
    st2 = _state(tmp_path / "two", encoder, ["fixture0000_00"], max_sessions=2)
    folders = []
    for tok in ("t1", "t2", "t3"):
        x = st2.new_session(tok)
        x.select_scene("fixture0000_00")
        folders.append(x.export()[0].parent)
    assert list(st2.sessions) == ["t2", "t3"]
    assert [f.exists() for f in folders] == [False, True, True]
    root = st2.export_root
    st2.close()
    assert not root.exists()

    # a state nobody closed still removes its folder when it is collected (interpreter exit)
    st3 = _state(tmp_path / "three", encoder, ["fixture0000_00"])
    root3 = st3.export_root
    del st3
    gc.collect()
    assert not root3.exists()

    # the folder of a run that was killed (its process is gone) is removed when the next run makes its own
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = private_tmp / f"sas_exports_{dead.pid}_x1"
    (stale / "tab").mkdir(parents=True)
    live = make_export_root()
    assert not stale.exists() and live.is_dir()


def _pickled_pth(path: Path) -> Path:
    g = np.random.default_rng(0)
    coords = (g.random((50, 3)) * [4, 3, 2.5]).astype(np.float32)
    colors = (g.integers(0, 256, (50, 3)) / 127.5 - 1).astype(np.float32)
    labels = (np.arange(50) % 20).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save((coords, colors, labels, fractions.Fraction(1, 3)), path)  # a Fraction needs full unpickling
    return path


def test_pickle_trust_is_per_call_and_never_from_the_page(tmp_path, encoder, monkeypatch, private_tmp):
    data = tmp_path / "data"
    p = _pickled_pth(data / "odd.pth")
    monkeypatch.setenv("SAS_TRUST_PICKLE", "1")  # process-wide: it must not reach what the page opens
    st = AppState(tmp_path / "store", [data], text_encoder=encoder, memory=MemoryConfig(max_scenes=1))
    panel = Panel(st)
    st.new_session("tab1")
    out = panel.open_folder("tab1", str(p))
    assert "refused for safety" in out[0] and "odd.pth" in out[0] and st.scene_ids() == []

    # a path named on the command line with --trust-pickle is trusted, for that registration only
    monkeypatch.delenv("SAS_TRUST_PICKLE")
    sid = st.add_scene_path(p, check_roots=False, trust_pickle=True)
    assert st.scene(sid).num_points == 50 and st.scene_entry(sid).trust_pickle
    out = panel.open_folder("tab1", str(p))  # the page still refuses the same file...
    assert "refused for safety" in out[0]
    assert st.scene_entry(sid).trust_pickle  # ...and leaves the command line's registration as it was
    # after an eviction the scene is read back with the trust it was registered with (not from the environment)
    other = make_scene(scene_id="other0000_00")
    st.add_scene(other)
    st.layers("other0000_00")
    assert st.resident.keys() == ["other0000_00"]
    assert st.scene(sid).num_points == 50

    # the launcher: scene arguments are trusted only with --trust-pickle (or SAS_TRUST_PICKLE=1 on its command line)
    from app.cli import parse_args, setup_state

    monkeypatch.setattr("app.state.AppState.warm_text_encoder", lambda self, *a, **k: None)
    base = [str(p), "--store", str(tmp_path / "store2"), "--no-build"]
    with pytest.raises(SASInputError, match="refused for safety") as e:
        setup_state(parse_args(base))
    assert e.value.path == p
    state, _ = setup_state(parse_args(base + ["--trust-pickle"]))
    (sid2,) = state.scene_ids()
    assert state.scene(sid2).num_points == 50 and state.scene_entry(sid2).trust_pickle
    state.close()
    st.close()
