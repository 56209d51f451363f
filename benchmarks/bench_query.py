"""Query latency of the app's engine on a 150k-point scene with 512-d float16 features (2 CPU threads).

Measures, server side:
  * text encoding, cold (first time a string is seen) and cached, for the packaged MiniLM (384-d) and an open_clip
    ViT-B/32 text tower (512-d, random weights: same cost as the real one);
  * one query = cached text embedding + cosine over all points + heat-map colouring (what the app runs before it
    assigns ``handle.colors``), median and p95;
  * the same query done naively (float16 -> float32 copy and per-query normalisation), the baseline of the ratio;
  * the page's actual path: the calibrated relevance over the ScanNet-20 names and LERF's negatives (prompt
    ensembles cached) plus the heat colouring at the default threshold, median and p95;
  * a 20-name labelled segmentation, and the top-k region search;
  * optionally (--app) the time until both servers answer with such a scene registered.
Prints one JSON object. Target: cached query < 20 ms.
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
from sas_engine.query import RELEVANCE, QueryEngine, normalize_heat, top_objects  # noqa: E402


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
    feats = torch.from_numpy(g.normal(size=(n, c)).astype(np.float32)).to(torch.float16)
    mask = g.random(n) > 0.05
    pts = g.uniform(0, 6, (n, 3)).astype(np.float32)
    rgb = g.integers(0, 255, (n, 3), dtype=np.uint8)
    result: dict = {"points": n, "dim": c, "threads": args.threads, "device": "cpu",
                    "load_avg_1m_at_start": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count()}

    result["text_minilm"] = encoder_timings(get_text_encoder("minilm"), 10)
    clip = get_text_encoder("openclip:ViT-B-32")
    result["text_openclip_vitb32"] = encoder_timings(clip, 10)
    if clip.dim != c:
        raise SystemExit(f"open_clip text dim {clip.dim} != feature dim {c}")

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
    vocab = [n if n != "otherfurniture" else "other" for n in SCANNET20]
    eng.relevance(text, vocab, RELEVANCE)  # the ensembles' text embeddings are now cached

    def relevance_query():
        rel = eng.relevance(text, vocab, RELEVANCE)
        return heat_colors(rel.score, RELEVANCE.threshold, dimmed=dimmed)

    result["relevance_query_cached"] = stats(timed(relevance_query, args.repeats))
    result["relevance_over_cosine_query"] = round(result["relevance_query_cached"]["median_ms"]
                                                  / max(result["query_cached"]["median_ms"], 1e-6), 2)
    names = list(SCANNET20)
    eng.segment(names)
    result["segment_20_names"] = stats(timed(lambda: eng.segment(names), 5))
    sim = eng.similarity(text)
    result["top_objects"] = stats(timed(lambda: top_objects(sim, pts, 0.8, 5, voxel=0.05), 3))
    result["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    result["target_ms"] = 20
    result["meets_target"] = result["query_cached"]["median_ms"] < 20
    result["relevance_meets_target"] = result["relevance_query_cached"]["p95_ms"] < 20

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
