"""Benchmark: MinkUNet18A forward + backward on room-surface scenes with the plain-PyTorch sparse backend.

Prints one JSON object. Per scene size (default 100k and 150k voxels at 2 cm): seconds per forward, backward and
training iteration (kernel maps are rebuilt every iteration, as in training), and the peak RSS of a fresh process
running just that configuration. When ``spconv`` imports, the same network (same weights, permuted to spconv's layout
by the spconv backend adapter) runs in the same process for comparison; spconv's CPU build fails in backward on a
CUDA-enabled torch without GPU (docs/network.md), so on CPU its forward is compared and the backward failure is
reported.
MinkowskiEngine's timings (150k voxels, 13.4-15.4 s/iter on the 2-core machine kind) are not measured here: they are
quoted from docs/network.md under the key ``quoted_not_measured``, apart from this run's measurements.

    python benchmarks/bench_sparse.py [--voxels 100000 150000] [--iters 2] [--threads 2] [--device cpu|cuda] [--batch 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

ME_ANCHOR = {"voxels": 150000, "iter_s": [13.4, 15.4], "forward_s": [5.8, 7.0], "backward_s": [7.6, 8.4]}
"""MinkowskiEngine 0.5.4 CPU build, MinkUNet18A 512-d, 2 cores: quoted, never measured by this script."""
ME_ANCHOR_SOURCE = "docs/network.md: Speed anchors quoted, not measured here"


def room_voxels(target: int, voxel: float = 0.02, seed: int = 0) -> np.ndarray:
    """Unique int32 voxel coordinates [M, 3] of a room surface (floor, 4 walls, boxes) with about ``target`` voxels."""
    def build(scale: float) -> np.ndarray:
        rng = np.random.default_rng(seed)
        length, width, height = 6.0 * scale, 5.0 * scale, 2.6 * min(1.0, scale)
        ex, ey, ez = np.eye(3)
        pts = []

        def plane(o, u, v, nu, nv):
            a, b = np.meshgrid(np.arange(0, nu, voxel / 2), np.arange(0, nv, voxel / 2), indexing="ij")
            pts.append(o + a.reshape(-1, 1) * u + b.reshape(-1, 1) * v)

        zero = np.zeros(3)
        plane(zero, ex, ey, length, width)
        plane(zero, ex, ez, length, height), plane(width * ey, ex, ez, length, height)
        plane(zero, ey, ez, width, height), plane(length * ex, ey, ez, width, height)
        for _ in range(int(6 * scale * scale) + 2):
            sx, sy, sz = rng.uniform(0.3, 1.2, 3)
            o = np.array([rng.uniform(0, length - sx), rng.uniform(0, width - sy), 0.0])
            plane(o + sz * ez, ex, ey, sx, sy), plane(o, ex, ez, sx, sz), plane(o + sy * ey, ex, ez, sx, sz)
            plane(o, ey, ez, sy, sz), plane(o + sx * ex, ey, ez, sy, sz)
        p = np.concatenate(pts) + 0.003
        return np.unique(np.floor(p / voxel).astype(np.int32), axis=0)

    lo, hi = 0.02, 4.0  # bisection on the room scale (wall height capped at 2.6 m)
    best = build(1.0)
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        c = build(mid)
        if abs(len(c) - target) < abs(len(best) - target):
            best = c
        if abs(len(c) - target) <= 0.01 * target:
            break
        lo, hi = (mid, hi) if len(c) < target else (lo, mid)
    return best


def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_one(args) -> dict:
    """One configuration in this process: torch backend (and spconv when available)."""
    import torch

    from sas_engine.models import build_model
    from sas_engine.sparse import available_backends, batch_coords, make_sparse_tensor

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    scenes = [torch.from_numpy(room_voxels(args.single, seed=s)) for s in range(args.batch)]
    coords = batch_coords(scenes).to(device)
    feats = torch.ones(coords.shape[0], 3, device=device)
    model = build_model(args.model, out_channels=args.out_channels).to(device).train()
    target = torch.randn(coords.shape[0], args.out_channels, device=device)
    res = {"voxels": int(coords.shape[0]), "batch": args.batch}

    def iteration(backend):
        t0 = time.perf_counter()
        out = model(make_sparse_tensor(feats, coords, backend=backend))
        loss = (1 - torch.nn.functional.cosine_similarity(out.features, target)).mean()
        _sync(device)
        t1 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        loss.backward()
        _sync(device)
        return t1 - t0, time.perf_counter() - t1, out.features.detach()

    iteration("torch")  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fw, bw = [], []
    for _ in range(args.iters):
        f, b, out_torch = iteration("torch")
        fw.append(f)
        bw.append(b)
    res["torch"] = {"forward_s": min(fw), "backward_s": min(bw), "iter_s": min(f + b for f, b in zip(fw, bw)),
                    "iters": args.iters}
    if device.type == "cuda":
        res["torch"]["peak_cuda_mem_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
        res["torch"]["iters_per_s"] = 1.0 / res["torch"]["iter_s"]
    res["torch"]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if "spconv" in available_backends(device):
        sp: dict = {}
        try:
            model.eval()  # compare outputs with identical BN statistics
            with torch.no_grad():
                a = model(make_sparse_tensor(feats, coords, backend="torch")).features
                b = model(make_sparse_tensor(feats, coords, backend="spconv")).features
            sp["max_abs_diff_vs_torch"] = float((a - b).abs().max())
            model.train()
            times = []
            for _ in range(args.iters):
                t0 = time.perf_counter()
                out = model(make_sparse_tensor(feats, coords, backend="spconv"))
                _sync(device)
                times.append(time.perf_counter() - t0)
            sp["forward_s"] = min(times)
            sp["forward_ratio_spconv_over_torch"] = sp["forward_s"] / res["torch"]["forward_s"]
            try:
                t0 = time.perf_counter()
                out.features.square().mean().backward()
                _sync(device)
                sp["backward_s"] = time.perf_counter() - t0
                sp["iter_s"] = sp["forward_s"] + sp["backward_s"]
                sp["iter_ratio_spconv_over_torch"] = sp["iter_s"] / res["torch"]["iter_s"]
            except Exception as exc:  # spconv CPU backward is known to fail
                sp["backward_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        except Exception as exc:
            sp["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        res["spconv"] = sp
    else:
        res["spconv"] = None
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, nargs="+", default=[100000, 150000])
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--model", default="mink18a")
    ap.add_argument("--out-channels", type=int, default=512)
    ap.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.single is not None:
        print(json.dumps(run_one(args)))
        return 0
    import torch

    runs = []
    for n in args.voxels:  # one fresh process per size, so peak RSS belongs to that size
        cmd = [sys.executable, __file__, "--single", str(n), "--iters", str(args.iters), "--threads", str(args.threads),
               "--device", args.device, "--batch", str(args.batch), "--model", args.model,
               "--out-channels", str(args.out_channels)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                           os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            runs.append({"target_voxels": n, "error": proc.stderr[-1000:]})
            continue
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report = {
        "benchmark": "sparse_minkunet18a", "model": args.model, "out_channels": args.out_channels,
        "device": args.device, "threads": args.threads, "torch": torch.__version__, "cpu": platform.processor() or
        platform.machine(), "runs": runs,
    }
    quoted = {"minkowski_engine_0.5.4_cpu_mink18a_512": ME_ANCHOR, "source": ME_ANCHOR_SOURCE,
              "note": "figures from another run, not a same-run baseline"}
    at_anchor = [r for r in runs if "torch" in r and abs(r["voxels"] - ME_ANCHOR["voxels"]) <= 0.05 * ME_ANCHOR["voxels"]]
    if at_anchor and args.device == "cpu" and args.batch == 1:
        it = at_anchor[0]["torch"]["iter_s"]
        quoted["quoted_iter_s_over_this_run_torch_iter_s"] = [q / it for q in ME_ANCHOR["iter_s"]]
    report["quoted_not_measured"] = quoted
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
