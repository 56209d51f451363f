"""Query latency of the app's engine on a 150k-point scene with 512-d float16 features (2 CPU threads).

Measures, server side:
  * text encoding, cold (first time a string is seen) and cached, for the packaged MiniLM (384-d) and an open_clip
    ViT-B/32 text tower (512-d, random weights: same cost as the real one);
  * one query = cached text embedding + cosine over all points + heat-map colouring (what the app runs before it
    assigns ``handle.colors``), median and p95;
  * the same query done naively (float16 -> float32 copy and per-query normalisation), the baseline of the ratio;
  * the page's actual path: the calibrated relevance over the ScanNet-20 names and LERF's negatives (prompt
    ensembles cached) plus the heat colouring at the default threshold, median and p95, over distinct query texts
    (each needs its own cosine column): the fast path (the label set's cached log-sum-exp + one float16 GEMV,
    ``QueryEngine(fast_relevance=True)``, the default) and, as the same-run baseline, the full softmax over every
    column (``fast_relevance=False``); the fast path's error against it (largest relevance difference, and how many
    points change side of the threshold);
  * an int8 first pass, measured but not used by the engine: the features as int8 rows with one float32 scale each
    (half the float16 bytes) and a numba GEMV (one thread), its time, and the error of the relevance computed from
    it against the full softmax (``int8_first_pass``);
  * a 20-name labelled segmentation, and the top-k region search;
  * optionally (--app) the time until both servers answer with such a scene registered.
Prints one JSON object. Targets: cached query < 20 ms; the relevance path's p95 < 20 ms.

The relevance part uses a word-vector text encoder (:class:`WordVectors`, 512-d: one fixed random direction per
object word, "couch" next to sofa, plus a small prompt-specific part; the random-weight ViT-B/32 tower maps every text
to nearly the same direction, so every name would be an alias of every query) and features clustered around the
prompt-ensemble embeddings of the 20 names and of 12 other objects (cosine about 0.5 with their own name), so
relevances spread over (0, 1) as in a room. Timings do not depend on the values.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.colors import dimmed_rgb, heat_colors  # noqa: E402
from sas_engine.labels import SCANNET20  # noqa: E402
from sas_engine.query import (FAST_RELEVANCE_ATOL, RELEVANCE, QueryEngine, gemv_half,  # noqa: E402
                              normalize_heat, top_objects)


def uptime() -> str:
    """The ``uptime`` line (load averages over 1, 5 and 15 minutes) at the time of the figures."""
    import subprocess

    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


class WordVectors:
    """Deterministic text encoder for the relevance timings: a text's vector is a fixed random direction of the
    object word it names ("couch" = sofa's plus a little of its own), plus a small part of its own."""

    name = "word-vectors"

    def __init__(self, dim: int):
        self.dim = dim

    def _vec(self, key: str) -> torch.Tensor:
        import hashlib

        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        v = torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
        return v / v.norm()

    def encode(self, texts):
        out = []
        for t in texts:
            words = t.replace("couch", "sofa").split()
            obj = next((w for w in reversed(words) if w not in ("a", "in", "scene", "photo", "of")), t)
            v = self._vec(obj) + (0.3 * self._vec("couch") if "couch" in t else 0) + 0.25 * self._vec(t)
            out.append(v / v.norm())
        return torch.stack(out)


def int8_rows(unit: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(int8 [N, C], float32 [N] scale): each float16 row quantised with its own scale max|x| / 127."""
    n, c = unit.shape
    q = np.empty((n, c), np.int8)
    scale = np.empty(n, np.float32)
    for s in range(0, n, 16384):
        blk = unit[s:s + 16384].float().numpy()
        sc = np.abs(blk).max(1) / 127
        sc[sc == 0] = 1.0
        q[s:s + 16384] = np.round(blk / sc[:, None]).astype(np.int8)
        scale[s:s + 16384] = sc
    return q, scale


def int8_gemv_kernel():
    import numba

    @numba.njit(fastmath=True, cache=False)
    def gemv(q, scale, t, out):
        for i in range(q.shape[0]):
            acc = np.float32(0.0)
            for j in range(q.shape[1]):
                acc += np.float32(q[i, j]) * t[j]
            out[i] = acc * scale[i]

    return gemv


def stats(ts: list[float]) -> dict:
    a = np.asarray(ts) * 1000
    return {"median_ms": round(float(np.median(a)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "n": len(ts)}


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def encoder_timings(enc, n: int) -> dict:
    enc.encode(["warm up the model", "a chair in a scene"])  # model load is not a query cost
    cold = timed(lambda: enc.encode([f"a query never seen before {time.perf_counter_ns()}"]), n)
    cached = timed(lambda: enc.encode(["a chair in a scene"]), n)
    return {"name": getattr(enc, "name", "?"), "dim": int(getattr(enc, "dim", 0)), "cold": stats(cold),
            "cached": stats(cached)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=150_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--app", action="store_true", help="also time the servers' start-up")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sas_engine.teachers.text import get_text_encoder

    g = np.random.default_rng(0)
    n, c = args.points, args.dim
    mask = g.random(n) > 0.05
    pts = g.uniform(0, 6, (n, 3)).astype(np.float32)
    rgb = g.integers(0, 255, (n, 3), dtype=np.uint8)
    result: dict = {"points": n, "dim": c, "threads": args.threads, "device": "cpu",
                    "load_avg_1m_at_start": round(os.getloadavg()[0], 2), "uptime_at_start": uptime(),
                    "cpu_count": os.cpu_count()}

    result["text_minilm"] = encoder_timings(get_text_encoder("minilm"), 10)
    clip = get_text_encoder("openclip:ViT-B-32")
    result["text_openclip_vitb32"] = encoder_timings(clip, 10)
    if clip.dim != c:
        raise SystemExit(f"open_clip text dim {clip.dim} != feature dim {c}")

    vocab = [n if n != "otherfurniture" else "other" for n in SCANNET20]
    objects = ["lamp", "plant", "mirror", "pillow", "box", "towel", "shelf", "monitor", "rug", "stool", "vase", "clock"]
    words = WordVectors(c)
    centres = QueryEngine(words).ensemble_embeddings(vocab + objects, RELEVANCE).numpy()
    cls = g.integers(0, len(centres), n)
    feats = torch.from_numpy((centres[cls] + 1.7 * g.normal(size=(n, c)).astype(np.float32) / np.sqrt(c))
                             .astype(np.float32)).to(torch.float16)
    eng = QueryEngine(clip)
    t = time.perf_counter()
    eng.set_scene("bench", feats, mask)
    result["set_scene_s"] = round(time.perf_counter() - t, 3)
    text = "somewhere to sit"
    eng.similarity(text)  # embedding now cached

    dimmed = dimmed_rgb(rgb)  # once per scene in the app

    def query():
        sim = eng.similarity(text)
        heat, _, _ = normalize_heat(sim)
        return heat_colors(heat, 0.5, dimmed=dimmed)

    def sim_only():
        return eng.similarity(text)

    temb = eng.text_embeddings([text])[0]

    def naive():  # per query: float32 copy of the features, norms, product, then the same colouring
        f = feats.float()
        s = (f @ temb) / f.norm(dim=1).clamp_min(1e-12)
        s = s.numpy()
        s[~mask] = np.nan
        heat, _, _ = normalize_heat(s)
        return heat_colors(heat, 0.5, rgb)

    query()
    q = timed(query, args.repeats)
    result["query_cached"] = stats(q)
    result["similarity_only"] = stats(timed(sim_only, args.repeats))
    sim0 = sim_only()
    result["colouring_only"] = stats(timed(lambda: heat_colors(normalize_heat(sim0)[0], 0.5, dimmed=dimmed),
                                           args.repeats))
    b = timed(naive, max(5, args.repeats // 5))
    result["baseline_naive_fp32"] = stats(b)
    result["speedup_vs_naive"] = round(float(np.median(b) / np.median(q)), 2)
    # correctness of the fast path against the naive one
    ref = (feats.double() @ temb.double()) / feats.double().norm(dim=1)
    got = eng.similarity(text)
    result["max_abs_error_vs_float64"] = float(np.nanmax(np.abs(got[mask] - ref.numpy()[mask])))
    fast = QueryEngine(words)
    fast.set_scene("bench", feats, mask)
    exact = QueryEngine(words, fast_relevance=False)  # the full softmax over every column: baseline and reference
    exact.set_scene("bench", feats, mask)
    adjectives = ["small", "wooden", "old", "white", "tall"]
    texts = ["couch"] + objects + [f"a {a} {o}" for a in adjectives for o in objects]
    texts = texts[: max(args.repeats, len(objects) + 1)]
    diffs, flips, fin_total = [], 0, 0
    for tx in texts:  # warms the text cache (and each engine's label-set columns); the error of the fast path
        a = fast.relevance(tx, vocab, RELEVANCE).score
        b = exact.relevance(tx, vocab, RELEVANCE).score
        fin = np.isfinite(b)
        diffs.append(float(np.abs(a[fin] - b[fin]).max()))
        flips += int(((a[fin] >= RELEVANCE.threshold) != (b[fin] >= RELEVANCE.threshold)).sum())
        fin_total += int(fin.sum())
        above = int((b[fin] >= RELEVANCE.threshold).sum())
        result.setdefault("relevance_points_above_threshold_per_query", []).append(above)
    counts = result.pop("relevance_points_above_threshold_per_query")
    result["fast_relevance_error"] = {
        "queries": len(texts), "max_abs_diff": float(max(diffs)), "median_max_abs_diff": float(np.median(diffs)),
        "threshold": RELEVANCE.threshold, "points_changing_side": flips,
        "map_agreement": round(1.0 - flips / max(fin_total, 1), 7),
        "median_points_above_threshold": int(np.median(counts)), "tolerance": FAST_RELEVANCE_ATOL}

    def relevance_runs(engine, with_colours: bool) -> list[float]:
        out = []
        for i in range(args.repeats):  # distinct texts: every query computes its own column, as in the page
            tx = texts[i % len(texts)]
            t0 = time.perf_counter()
            rel = engine.relevance(tx, vocab, RELEVANCE)
            if with_colours:
                heat_colors(rel.score, RELEVANCE.threshold, dimmed=dimmed)
            out.append(time.perf_counter() - t0)
        return out

    result["relevance_query_cached"] = stats(relevance_runs(fast, True))
    result["relevance_engine_only"] = stats(relevance_runs(fast, False))
    base = relevance_runs(exact, True)
    result["baseline_relevance_full_softmax"] = stats(base)
    result["relevance_speedup_vs_full_softmax"] = round(float(np.median(base)) / max(
        result["relevance_query_cached"]["median_ms"] / 1000, 1e-9), 2)
    result["couch_aliases"] = fast.relevance("couch", vocab, RELEVANCE).aliases
    q8, scale8 = int8_rows(fast._snapshot().unit)
    gemv = int8_gemv_kernel()
    col8 = np.empty(n, np.float32)
    t32 = fast.ensemble_embeddings([texts[1]], RELEVANCE)[0].numpy()
    gemv(q8, scale8, t32, col8)  # compiled now, not in the timings
    unit = fast._snapshot().unit
    t16 = torch.from_numpy(t32).to(torch.float16)
    first = {"gemv_int8_numba_1_thread": stats(timed(lambda: gemv(q8, scale8, t32, col8), args.repeats)),
             "gemv_float16_engine": stats(timed(lambda: gemv_half(unit, t16), args.repeats)),
             "gemv_float16_torch_mv": stats(timed(lambda: torch.mv(unit, t16), args.repeats)),
             "extra_memory_mb": round((q8.nbytes + scale8.nbytes) / 2**20, 1)}

    def int8_column(st, emb):  # stands in for the engine's float16 GEMV: relevance from the int8 first pass
        col = np.empty(st.unit.shape[0], np.float32)
        gemv(q8, scale8, emb.to(torch.float32).numpy(), col)
        col[~st.mask] = np.nan
        return col

    fast._gemv_column = int8_column
    try:
        diffs, flips = [], 0
        for tx in texts:
            a = fast.relevance(tx, vocab, RELEVANCE).score
            b = exact.relevance(tx, vocab, RELEVANCE).score
            fin = np.isfinite(b)
            diffs.append(float(np.abs(a[fin] - b[fin]).max()))
            flips += int(((a[fin] >= RELEVANCE.threshold) != (b[fin] >= RELEVANCE.threshold)).sum())
        first["relevance_engine_only"] = stats(relevance_runs(fast, False))
    finally:
        del fast._gemv_column
    first.update({"max_abs_diff_vs_full_softmax": float(max(diffs)), "points_changing_side": flips,
                  "map_agreement": round(1.0 - flips / max(fin_total, 1), 7)})
    result["int8_first_pass"] = first
    del exact, fast
    result["relevance_over_cosine_query"] = round(result["relevance_query_cached"]["median_ms"]
                                                  / max(result["query_cached"]["median_ms"], 1e-6), 2)
    names = list(SCANNET20)
    eng.segment(names)
    result["segment_20_names"] = stats(timed(lambda: eng.segment(names), 5))
    sim = eng.similarity(text)
    result["top_objects"] = stats(timed(lambda: top_objects(sim, pts, 0.8, 5, voxel=0.05), 3))
    result["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    result["uptime"] = uptime()
    # issue 19's figure: the engine's relevance path (what a page query computes), p95 under 20 ms; the colouring
    # and the raw cosine are reported beside it with their own flags
    result["target_ms"] = 20
    result["meets_target"] = result["relevance_engine_only"]["p95_ms"] < 20
    result["relevance_with_colouring_meets_target"] = result["relevance_query_cached"]["p95_ms"] < 20
    result["cosine_with_colouring_meets_target"] = result["query_cached"]["median_ms"] < 20

    if args.app:
        import socket
        import tempfile

        from app.server import start_app
        from app.state import AppState
        from sas_engine.scene import Scene

        def free():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]

        st = AppState(tempfile.mkdtemp(), [], text_encoder=clip)
        st.add_scene(Scene("bench", pts, rgb))
        t = time.perf_counter()
        h = start_app(st, port=free(), viser_port=free())
        result["app_start_s"] = round(time.perf_counter() - t, 2)
        h.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
