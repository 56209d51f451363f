"""QueryEngine: results against a direct float64 computation, caching, bad input, thread safety, top-k regions."""
import hashlib
import threading
import time

import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.query import (MAX_QUERY_CHARS, QueryEngine, TextEmbeddingCache, clean_query, normalize_heat,
                              split_queries, top_objects, voxel_components)

DIM = 16


class HashEncoder:
    """Deterministic fake text encoder: a unit vector seeded by the text's hash. Refuses concurrent calls (like a
    Hugging Face fast tokenizer) so the tests catch unserialised use."""

    name = "hash16"
    dim = DIM

    def __init__(self, delay: float = 0.0):
        self.calls: list[list[str]] = []
        self.delay = delay
        self._busy = threading.Lock()

    def encode(self, texts):
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("encoder called from two threads at once")
        try:
            self.calls.append(list(texts))
            time.sleep(self.delay)
            out = []
            for t in texts:
                seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
                v = torch.randn(DIM, generator=torch.Generator().manual_seed(seed))
                out.append(v / v.norm())
            return torch.stack(out)
        finally:
            self._busy.release()


def _scene(n=600, seed=0):
    g = np.random.default_rng(seed)
    f = g.normal(size=(n, DIM)).astype(np.float32) * g.uniform(0.2, 3.0, size=(n, 1)).astype(np.float32)
    mask = g.random(n) > 0.1
    f[~mask] = 0.0
    return torch.from_numpy(f).to(torch.float16), mask


def _direct(feat16, mask, emb):
    f = feat16.double().numpy()
    e = emb.double().numpy()
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    nrm = np.linalg.norm(f, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (f / nrm) @ e.T
    out[~mask] = np.nan
    return out


def test_similarity_matches_direct_cosine():
    enc = HashEncoder()
    feat, mask = _scene()
    eng = QueryEngine(enc)
    eng.set_scene("s0", feat, mask)
    sim = eng.similarity("somewhere to sit")
    assert sim.dtype == np.float32 and sim.shape == (600,)
    ref = _direct(feat, mask, enc.encode(["somewhere to sit"]))[:, 0]
    assert np.array_equal(np.isnan(sim), ~mask)
    np.testing.assert_allclose(sim[mask], ref[mask], atol=2e-3)
    # the template is applied before encoding
    np.testing.assert_array_equal(eng.similarity("chair", template="a {} in a scene"),
                                  eng.similarity("a chair in a scene"))


def test_segment_matches_direct_argmax():
    enc = HashEncoder()
    feat, mask = _scene(n=5000, seed=1)
    eng = QueryEngine(enc, chunk_rows=777)  # several chunks, last one partial
    names = ["chair", "sofa", "lamp", "table"]
    labels, scores = eng.segment(names) if eng._state else (None, None)  # not set yet
    assert labels is None
    eng.set_scene("s1", feat, mask)
    labels, scores = eng.segment(names)
    ref = _direct(feat, mask, enc.encode([f"a {n} in a scene" for n in names]))
    assert labels.dtype == np.int64 and (labels[~mask] == -1).all() and np.isnan(scores[~mask]).all()
    srt = np.sort(ref[mask], axis=1)
    clear = (srt[:, -1] - srt[:, -2]) > 4e-3  # ties within float16 precision may go either way
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(labels[mask][clear], ref[mask].argmax(1)[clear])
    np.testing.assert_allclose(scores[mask], ref[mask].max(1), atol=2e-3)
    sims = eng.similarities(names)
    np.testing.assert_allclose(sims[mask], ref[mask], atol=2e-3)


def test_text_embeddings_are_cached():
    enc = HashEncoder()
    eng = QueryEngine(enc)
    eng.set_scene("s", *_scene())
    eng.similarity("a red chair")
    eng.similarity("a red chair")
    eng.similarity("  a   red\tchair ")  # same text after clean-up
    eng.segment(["chair", "sofa"])
    eng.segment(["sofa", "chair", "lamp"])
    flat = [t for c in enc.calls for t in c]
    assert flat.count("a red chair") == 1
    assert flat.count("a chair in a scene") == 1 and flat.count("a lamp in a scene") == 1
    assert eng.cache.hits >= 4


def test_cache_eviction_is_bounded():
    cache = TextEmbeddingCache(HashEncoder(), max_entries=3)
    for t in "abcdef":
        cache.embed([t])
    assert len(cache._emb) == 3
    a = cache.embed(["a"])  # evicted, encoded again, same vector
    assert torch.allclose(a, cache.embed(["a"]))
    big = cache.embed(list("ghijkl"))  # more texts than the cache holds in one call
    assert big.shape == (6, DIM) and len(cache._emb) == 3


def test_query_before_set_scene_and_bad_inputs():
    eng = QueryEngine(HashEncoder())
    with pytest.raises(SASInputError, match="set_scene"):
        eng.similarity("chair")
    with pytest.raises(SASInputError, match="set_scene"):
        eng.segment(["chair"])
    eng.set_scene("s", *_scene())
    for bad in ["", "   ", "\x00\x01", "x" * (MAX_QUERY_CHARS + 1)]:
        with pytest.raises(SASInputError):
            eng.similarity(bad)
    with pytest.raises(SASInputError, match="text"):
        eng.similarity(None)  # type: ignore[arg-type]
    with pytest.raises(SASInputError, match="placeholder"):
        eng.segment(["chair"], template="a {} {} scene")
    # non-ASCII text is a valid query
    sim = eng.similarity("chaise longue près de la fenêtre 椅子")
    assert np.isfinite(sim[eng.mask]).all()
    assert clean_query("chair\x00\u200b") == "chair"


def test_dimension_mismatch_is_a_clear_error():
    eng = QueryEngine(HashEncoder())
    with pytest.raises(SASInputError, match="16-d"):
        eng.set_scene("wide", torch.zeros(10, 32, dtype=torch.float16) + 1)
    with pytest.raises(SASInputError, match="mask has"):
        eng.set_scene("s", torch.ones(10, DIM), np.ones(9, bool))


def test_split_queries():
    assert split_queries("chair, sofa,, chair ,lamp\n bed") == ["chair", "sofa", "lamp", "bed"]
    with pytest.raises(SASInputError):
        split_queries(" , ,")
    with pytest.raises(SASInputError):
        split_queries(",".join(f"c{i}" for i in range(100)))


def test_concurrent_queries_and_scene_swaps_are_consistent():
    enc = HashEncoder(delay=0.002)
    fa, ma = _scene(n=500, seed=3)
    fb, mb = _scene(n=700, seed=4)
    texts = [f"query {i}" for i in range(12)]
    ref_eng = QueryEngine(HashEncoder())
    ref = {}
    for sid, f, m in (("a", fa, ma), ("b", fb, mb)):
        ref_eng.set_scene(sid, f, m)
        for t in texts:
            ref[(f.shape[0], t)] = ref_eng.similarity(t)
        ref[(f.shape[0], "seg")] = ref_eng.segment(texts[:5])[0]
    eng = QueryEngine(enc)
    eng.set_scene("a", fa, ma)
    errors: list[BaseException] = []
    stop = threading.Event()

    def swapper():
        i = 0
        while not stop.is_set():
            eng.set_scene(*(("a", fa, ma) if i % 2 else ("b", fb, mb)))
            i += 1

    def worker(k):
        try:
            for j in range(30):
                t = texts[(k + j) % len(texts)]
                s = eng.similarity(t)
                np.testing.assert_array_equal(s, ref[(s.shape[0], t)])
                if j % 10 == 0:
                    lab, _ = eng.segment(texts[:5])
                    np.testing.assert_array_equal(lab, ref[(lab.shape[0], "seg")])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    sw = threading.Thread(target=swapper)
    sw.start()
    ws = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    stop.set()
    sw.join()
    assert not errors, errors[0]
    # every distinct prompt was encoded exactly once although 6 threads asked for it at once
    flat = [t for c in enc.calls for t in c]
    assert sorted(flat) == sorted(set(flat))


def test_normalize_heat_and_top_objects():
    g = np.random.default_rng(0)
    pts = np.concatenate([g.uniform(0, 1, (300, 3)), g.normal((3, 0, 0), 0.05, (60, 3)),
                          g.normal((0, 3, 0), 0.05, (40, 3))]).astype(np.float32)
    sim = np.concatenate([g.uniform(0.0, 0.2, 300), np.full(60, 0.9), np.full(40, 0.7)]).astype(np.float32)
    sim[5] = np.nan
    heat, lo, hi = normalize_heat(sim)
    assert np.isnan(heat[5]) and np.nanmin(heat) == 0 and np.nanmax(heat) == 1
    assert hi == pytest.approx(0.9) and lo >= 0
    hits = top_objects(sim, pts, threshold=0.6, k=5, voxel=0.1)
    assert [h.size for h in hits] == [60, 40]
    assert hits[0].score == pytest.approx(0.9) and hits[1].score == pytest.approx(0.7)
    np.testing.assert_array_equal(np.sort(hits[0].indices), np.arange(300, 360))
    np.testing.assert_allclose(hits[1].center, [0, 3, 0], atol=0.05)
    assert len(top_objects(sim, pts, 0.6, k=1, voxel=0.1)) == 1
    # superpoint averaging: a group with one hot point among cold ones stays below threshold
    groups = np.arange(400)
    groups[:300] = 7
    sim2 = sim.copy()
    sim2[0] = 1.0
    hits2 = top_objects(sim2, pts, 0.6, groups=groups, voxel=0.1, min_points=1)
    assert all(0 not in h.indices for h in hits2)
    assert top_objects(np.full(400, np.nan, np.float32), pts, 0.5) == []


def test_voxel_components_connectivity():
    pts = np.array([[0, 0, 0], [0.04, 0, 0], [0.09, 0.09, 0.09], [1, 1, 1]], dtype=np.float32)
    comp = voxel_components(pts, 0.05)
    assert comp[0] == comp[1] == comp[2] != comp[3]
