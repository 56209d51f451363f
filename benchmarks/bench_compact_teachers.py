"""Compact teachers' throughput: frames per second of lseg_compact and seem_compact on CPU at 320x240.

Uses the shipped checkpoints (checkpoints/*.pt) on rendered frames of the synthetic ``tiny`` split (generated when
missing; rendered frames give realistic region-proposal counts). Baseline measured in the same run: the mask
teacher's class-agnostic region proposals alone (the part of seem_compact that is not a network).
Prints one JSON object. Usage: ``python3 benchmarks/bench_compact_teachers.py [--frames 16] [--threads 2]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from sas_engine.io import load_scene
    from sas_engine.synth import ensure_split
    from sas_engine.teachers import build_teacher
    from sas_engine.teachers.proposals import propose_regions

    frames = []
    for path in ensure_split("tiny"):
        scene = load_scene(path)
        step = max(1, len(scene.frames) // args.frames)
        frames += [scene.frames[i].color for i in range(0, len(scene.frames), step)]
    frames = [f for f in frames if f.shape[:2] == (240, 320)][: args.frames]
    if not frames:
        raise SystemExit("no 320x240 frames in the tiny split")
    dense = build_teacher("lseg_compact", device=args.device)
    mask = build_teacher("seem_compact", device=args.device)
    dense.predict(frames[0])
    mask.predict(frames[0])  # warm-up

    def run_dense():
        for f in frames:
            dense.predict(f)

    def run_mask():
        for f in frames:
            mask.predict(f)

    counts = []

    def run_props():
        counts.clear()
        for f in frames:
            counts.append(int(propose_regions(f[::2, ::2], mask.proposals).max()) + 1)

    t_dense = _best(run_dense, args.repeats)
    t_mask = _best(run_mask, args.repeats)
    t_prop = _best(run_props, args.repeats)
    n = len(frames)
    res = {
        "benchmark": "compact_teachers",
        "device": args.device if args.device != "cpu" else f"cpu x{args.threads} threads",
        "image": [240, 320], "frames": n,
        "lseg_compact_fps": round(n / t_dense, 2),
        "seem_compact_fps": round(n / t_mask, 2),
        "baseline_proposals_only_fps": round(n / t_prop, 2),
        "seem_proposal_share_of_time": round(t_prop / t_mask, 3),
        "mean_regions_per_frame": round(float(np.mean(counts)), 1),
        "dense_output": [*dense.output_size(240, 320), dense.text_encoder.dim],
        "checkpoint_mb": {t.name: round(t.checkpoint.stat().st_size / 2 ** 20, 2) for t in (dense, mask)},
    }
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
