"""Benchmark: MinkUNet18A forward + backward on room-surface scenes with the plain-PyTorch sparse backend.

Prints one JSON object. Per scene size (default 100k and 150k voxels at 2 cm), in a fresh process, three
implementations run interleaved in every repeat (so they share the machine's load; medians are reported):

- ``torch``: this package's backend as it is (dense-grid kernel maps, grouped forward): forward, backward and
  training-iteration seconds (kernel maps are rebuilt every iteration, as in training);
- ``previous_torch``: the same backend with the previous kernel maps and forward (``searchsorted``, per offset), the
  same-run baseline of the forward speed-up (the backward code is shared, so only the forward is timed);
- ``spconv`` (when it imports): the same network and weights through the spconv adapter. Its CPU build fails in
  backward on a CUDA-enabled torch without GPU (docs/network.md), so its forward is compared and the backward
  failure is reported.

``parity_eval_mode`` gives the largest output difference between the implementations (eval-mode BN, same weights).
``peak_memory`` is the peak RSS (``ru_maxrss``) of a fresh process per implementation that builds the scene and the
model and runs one training iteration (spconv: one forward), with its RSS just before that step; on CUDA also
``torch.cuda.max_memory_allocated``. ``load_at_start`` / ``load_at_end`` record ``uptime``'s load average.
MinkowskiEngine's timings (150k voxels, 13.4-15.4 s/iter on the 2-core machine kind) are not measured here: they are
quoted from docs/network.md under the key ``quoted_not_measured``, apart from this run's measurements.

    python benchmarks/bench_sparse.py [--voxels 100000 150000] [--iters 3] [--threads 2] [--device cpu|cuda] [--batch 1]
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


def load_average() -> dict:
    """This machine's load when a figure was taken: ``os.getloadavg()`` and the ``uptime`` line (if available)."""
    out = {"loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count()}
    try:
        out["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _rss_mb(field: str = "VmRSS") -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _stats(xs: list[float]) -> dict:
    return {"median": float(np.median(xs)), "min": float(min(xs)), "samples": [round(x, 4) for x in xs]}


IMPLS = {"current": ("auto", "grouped"), "previous": ("searchsorted", "offset")}
"""torch implementations: (CoordinateManager.default_map_method, functional.default_forward_method)."""


def _setup(args):
    import torch

    from sas_engine.models import build_model
    from sas_engine.sparse import batch_coords

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    scenes = [torch.from_numpy(room_voxels(args.single, seed=s)) for s in range(args.batch)]
    coords = batch_coords(scenes).to(device)
    feats = torch.ones(coords.shape[0], 3, device=device)
    model = build_model(args.model, out_channels=args.out_channels).to(device).train()
    target = torch.randn(coords.shape[0], args.out_channels, device=device)
    return device, coords, feats, model, target


def peak_one(args) -> dict:
    """Peak memory of one training iteration of one implementation (spconv: one forward) in this fresh process."""
    import torch

    from sas_engine.sparse import functional as spf
    from sas_engine.sparse import make_sparse_tensor
    from sas_engine.sparse.coords import CoordinateManager

    device, coords, feats, model, target = _setup(args)
    impl = args.peak_of
    backend = "spconv" if impl == "spconv" else "torch"
    if impl != "spconv":
        CoordinateManager.default_map_method, spf.default_forward_method = IMPLS[impl]
    before = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    out = model(make_sparse_tensor(feats, coords, backend=backend))
    res = {"impl": impl, "what": "one forward (spconv's CPU backward fails)" if impl == "spconv" else
           "one training iteration (forward + backward)"}
    if impl != "spconv":
        loss = (1 - torch.nn.functional.cosine_similarity(out.features, target)).mean()
        loss.backward()
    _sync(device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res.update({"peak_rss_mb": round(peak, 1), "rss_before_mb": None if before is None else round(before, 1),
                "peak_minus_before_mb": None if before is None else round(peak - before, 1),
                "method": "ru_maxrss of a fresh process (scene + model built, then the measured step); "
                          "rss_before_mb: VmRSS just before the step"})
    if device.type == "cuda":
        res["peak_cuda_mem_mb"] = round((torch.cuda.max_memory_allocated() - base_cuda) / 2 ** 20, 1)
    return res


def run_one(args) -> dict:
    """One configuration in this process: the torch backend as it is now (dense-grid kernel maps + grouped forward),
    the previous torch implementation (searchsorted kernel maps + per-offset forward) and spconv (when it imports),
    interleaved per repeat so that all three see the same machine load."""
    import torch

    from sas_engine.sparse import available_backends, make_sparse_tensor
    from sas_engine.sparse import functional as spf
    from sas_engine.sparse.coords import CoordinateManager

    device, coords, feats, model, target = _setup(args)
    res = {"voxels": int(coords.shape[0]), "batch": args.batch, "load_at_start": load_average()}
    impls = IMPLS

    def use(impl):
        CoordinateManager.default_map_method, spf.default_forward_method = impls[impl]

    def forward(backend):
        t0 = time.perf_counter()
        out = model(make_sparse_tensor(feats, coords, backend=backend))
        _sync(device)
        return out, time.perf_counter() - t0

    def iteration(backend="torch"):
        out, fw = forward(backend)
        loss = (1 - torch.nn.functional.cosine_similarity(out.features, target)).mean()
        t1 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        loss.backward()
        _sync(device)
        return fw, time.perf_counter() - t1

    has_spconv = "spconv" in available_backends(device)
    try:
        # parity first (eval mode: identical BN statistics), on the same weights
        model.eval()
        with torch.no_grad():
            use("previous")
            ref = model(make_sparse_tensor(feats, coords, backend="torch")).features
            use("current")
            cur = model(make_sparse_tensor(feats, coords, backend="torch")).features
            parity = {"max_abs_diff_current_vs_previous": float((cur - ref).abs().max()),
                      "max_abs_output": float(ref.abs().max())}
            if has_spconv:
                try:
                    sp_out = model(make_sparse_tensor(feats, coords, backend="spconv")).features
                    parity["max_abs_diff_spconv_vs_current"] = float((sp_out - cur).abs().max())
                except Exception as exc:
                    parity["spconv_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                    has_spconv = False
            del ref, cur
        model.train()
        res["parity_eval_mode"] = parity

        use("current")
        iteration()  # warm-up
        times = {"current_forward_s": [], "current_backward_s": [], "current_iter_s": [], "previous_forward_s": [],
                 "spconv_forward_s": []}
        spconv_backward_error = None
        def step_current():
            use("current")
            fw, bw = iteration()
            times["current_forward_s"].append(fw)
            times["current_backward_s"].append(bw)
            times["current_iter_s"].append(fw + bw)

        def step_previous():
            use("previous")
            times["previous_forward_s"].append(forward("torch")[1])

        def step_spconv():
            nonlocal spconv_backward_error
            out, fw = forward("spconv")
            times["spconv_forward_s"].append(fw)
            if spconv_backward_error is None:
                try:
                    out.features.square().mean().backward()
                    spconv_backward_error = ""
                except Exception as exc:  # spconv's CPU backward is known to fail
                    spconv_backward_error = f"{type(exc).__name__}: {str(exc)[:200]}"

        steps = [step_current, step_previous] + ([step_spconv] if has_spconv else [])
        for r in range(args.iters):  # rotate the order every repeat: no implementation always runs first
            for step in steps[r % len(steps):] + steps[:r % len(steps)]:
                step()
        use("current")
        tm = {k: _stats(v) for k, v in times.items() if v}
        med = {k: v["median"] for k, v in tm.items()}
        res["torch"] = {"forward_s": med["current_forward_s"], "backward_s": med["current_backward_s"],
                        "iter_s": med["current_iter_s"], "iters": args.iters, "statistic": "median",
                        "kernel_maps": "dense grid (searchsorted fallback)", "forward": "grouped"}
        res["previous_torch"] = {"forward_s": med["previous_forward_s"], "kernel_maps": "searchsorted",
                                 "forward": "per offset",
                                 "forward_speedup_current_vs_previous": med["previous_forward_s"] / med["current_forward_s"]}
        if has_spconv:
            res["spconv"] = {"forward_s": med["spconv_forward_s"],
                             "forward_ratio_spconv_over_torch": med["spconv_forward_s"] / med["current_forward_s"],
                             "forward_ratio_spconv_over_previous_torch": med["spconv_forward_s"] / med["previous_forward_s"],
                             "torch_forward_at_least_as_fast": med["spconv_forward_s"] >= med["current_forward_s"],
                             "backward_error": spconv_backward_error or None}
        else:
            res["spconv"] = {"not_measured": "spconv does not import here"}
        res["timings"] = tm
        res["load_at_end"] = load_average()
    finally:
        use("current")
    return res


def _version(dist: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, nargs="+", default=[100000, 150000])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--model", default="mink18a")
    ap.add_argument("--out-channels", type=int, default=512)
    ap.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--peak-of", default=None, choices=["current", "previous", "spconv"], help=argparse.SUPPRESS)
    ap.add_argument("--no-peak", action="store_true", help="skip the fresh-process peak-memory runs")
    args = ap.parse_args()
    if args.single is not None:
        print(json.dumps(peak_one(args) if args.peak_of else run_one(args)))
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
        run = json.loads(proc.stdout.strip().splitlines()[-1])
        if not args.no_peak:  # peak memory: one fresh process per implementation, after the timings
            peaks = {}
            impls = ["current", "previous"] + (["spconv"] if "forward_s" in (run.get("spconv") or {}) else [])
            for impl in impls:
                p = subprocess.run(cmd + ["--peak-of", impl], capture_output=True, text=True, env=env)
                peaks[impl] = (json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0
                               else {"error": p.stderr[-500:]})
            run["peak_memory"] = peaks
        runs.append(run)
    report = {
        "benchmark": "sparse_minkunet18a", "model": args.model, "out_channels": args.out_channels,
        "device": args.device, "threads": args.threads, "torch": torch.__version__, "cpu": platform.processor() or
        platform.machine(), "spconv_version": _version("spconv"), "runs": runs,
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
