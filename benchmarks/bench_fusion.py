"""Benchmark: multi-view fusion throughput and peak memory vs the straightforward OpenScene-style loop.

Scene: a 6 x 5 x 2.8 m room with furniture boxes, 150k points sampled on its visible surfaces, 100 camera poses
inside the room, depth images ray-cast analytically from the same geometry (so the occlusion test behaves as on real
data), 320 x 240 images, C = 512 feature maps (a bank of two random float32 maps, handed out without copying, so
feature generation costs nothing to either side).

* ``ours``: :func:`sas_engine.geometry.fuse_features` on all frames.
* ``baseline``: OpenScene's per-frame algorithm in numpy (mapping for every point, gather the features of *every*
  point from the [C, H, W] map, then mask and accumulate). It runs on the first ``--baseline-frames`` frames only
  and its time is extrapolated per frame (the JSON says so).

Each side runs in its own subprocess so that its peak RSS (``ru_maxrss``) is its own. Both results are compared on
the frames the baseline processed. Prints one JSON object.

    python benchmarks/bench_fusion.py [--points 150000] [--frames 100] [--baseline-frames 10] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

W, H, C = 320, 240, 512
FX = FY = 288.935
CX, CY = 159.5, 119.5
ROOM = np.array([6.0, 5.0, 2.8])
BOXES = np.array([  # (min xyz, max xyz) furniture
    [0.2, 0.2, 0.0, 1.4, 2.2, 0.55], [2.5, 1.8, 0.0, 3.7, 2.6, 0.75], [4.8, 0.1, 0.0, 5.9, 0.6, 2.0],
    [0.1, 4.3, 0.0, 2.0, 4.9, 0.9], [4.0, 3.5, 0.0, 4.6, 4.1, 0.45], [2.8, 4.5, 0.0, 3.3, 4.9, 1.6],
])


def _faces_of(lo, hi, interior):
    """Axis-aligned rectangles (axis, value, lo, hi) bounding a box; the room keeps its 6 faces, boxes drop the bottom."""
    out = []
    for ax in range(3):
        for side, val in ((0, lo[ax]), (1, hi[ax])):
            if not interior and ax == 2 and side == 0:
                continue
            out.append((ax, val, lo, hi))
    return out


def make_scene(n_points: int, n_frames: int, seed: int = 0):
    """Points on the room's surfaces, camera poses and intrinsics (deterministic)."""
    rng = np.random.default_rng(seed)
    rects = _faces_of(np.zeros(3), ROOM, True) + [r for b in BOXES for r in _faces_of(b[:3], b[3:], False)]
    areas = np.array([np.prod([r[3][a] - r[2][a] for a in range(3) if a != r[0]]) for r in rects])
    which = rng.choice(len(rects), n_points, p=areas / areas.sum())
    pts = np.empty((n_points, 3))
    for k, (ax, val, lo, hi) in enumerate(rects):
        sel = which == k
        pts[sel] = rng.uniform(lo, hi, (sel.sum(), 3))
        pts[sel, ax] = val
    poses = []
    while len(poses) < n_frames:
        o = rng.uniform([0.5, 0.5, 1.2], ROOM[:2].tolist() + [1.7])
        if any((o >= b[:3] - 0.2).all() and (o <= b[3:] + 0.2).all() for b in BOXES):
            continue
        yaw, pitch = rng.uniform(-np.pi, np.pi), rng.uniform(-0.6, 0.0)
        f = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)])
        right = np.cross(f, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(f, right)
        pose = np.eye(4)
        pose[:3, :3] = np.stack([right, down, f], 1)
        pose[:3, 3] = o
        poses.append(pose)
    K = np.array([[FX, 0, CX], [0, FY, CY], [0, 0, 1.0]])
    return pts.astype(np.float32), poses, K


def render_depth(pose, K):
    """Analytic depth (camera z, metres) of the room + boxes seen from ``pose``: float32 [H, W]."""
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, float)], -1).reshape(-1, 3)
    d = d_cam @ pose[:3, :3].T  # t along d gives camera z directly (d_cam has z = 1)
    o = pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t_room = np.min(np.where(d > 0, (ROOM - o) * inv, np.where(d < 0, (0 - o) * inv, np.inf)), axis=1)
        t = t_room
        for b in BOXES:
            t1, t2 = (b[:3] - o) * inv, (b[3:] - o) * inv
            tmin = np.max(np.minimum(t1, t2), axis=1)
            tmax = np.min(np.maximum(t1, t2), axis=1)
            hit = (tmax >= tmin) & (tmin > 0)
            t = np.where(hit & (tmin < t), tmin, t)
    return t.reshape(H, W).astype(np.float32)


def build(args):
    from sas_engine.scene import Frame

    pts, poses, K = make_scene(args.points, args.frames)
    frames = [Frame(frame_id=str(i), color=np.zeros((1, 1, 3), np.uint8), depth=render_depth(p, K), pose=p,
                    intrinsics=K) for i, p in enumerate(poses)]
    rng = np.random.default_rng(1)
    bank = [rng.standard_normal((H, W, C), dtype=np.float32) for _ in range(2)]
    return pts, frames, bank


def child_ours(args, out_path):
    import torch

    from sas_engine.geometry import FusionConfig, fuse_features

    torch.set_num_threads(args.threads)
    pts, frames, bank = build(args)
    tb = [torch.from_numpy(b) for b in bank]
    if args.device != "cpu":
        tb = [b.to(args.device) for b in tb]
    source = lambda i, f: (tb[i % 2], None)  # noqa: E731
    cfg = FusionConfig(sigma=0.25, cut_bound=10)
    fuse_features(pts, frames[:2], source, cfg, device=args.device, progress=False)  # warm-up
    if args.device != "cpu":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    r = fuse_features(pts, frames, source, cfg, device=args.device, progress=False)
    if args.device != "cpu":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # whole process: inputs + fusion
    point_views = int(r.view_count.sum())
    del r
    rk = fuse_features(pts, frames[:args.baseline_frames], source, cfg, device=args.device, progress=False)
    np.savez(out_path, feat=rk.features[::50].float().numpy(), count=rk.view_count.numpy())
    return {"seconds": dt, "point_views": point_views, "frames": len(frames), "peak_rss_mb": peak,
            "mean_visible_points_per_frame": point_views / len(frames)}


def openscene_mapping(pose, coords, depth, K, sigma, cut):
    """OpenScene's compute_mapping, written the same straightforward way (numpy, all points)."""
    mapping = np.zeros((3, coords.shape[0]), dtype=int)
    coords_new = np.concatenate([coords, np.ones([coords.shape[0], 1])], axis=1).T
    p = np.matmul(np.linalg.inv(pose), coords_new)
    p[0] = (p[0] * K[0][0]) / p[2] + K[0][2]
    p[1] = (p[1] * K[1][1]) / p[2] + K[1][2]
    pi = np.round(p).astype(int)
    inside = (pi[0] >= cut) * (pi[1] >= cut) * (pi[0] < W - cut) * (pi[1] < H - cut)
    d = depth[pi[1][inside], pi[0][inside]]
    inside[inside] = np.abs(d - p[2][inside]) <= sigma * d
    mapping[0][inside] = pi[1][inside]
    mapping[1][inside] = pi[0][inside]
    mapping[2][inside] = 1
    return mapping.T


def child_baseline(args, out_path):
    pts, frames, bank = build(args)
    chw = [np.ascontiguousarray(b.transpose(2, 0, 1)) for b in bank]  # OpenScene's maps are [C, H, W]
    n = len(pts)
    counter = np.zeros((n, 1), np.float32)
    sums = np.zeros((n, C), np.float32)
    nb = args.baseline_frames
    t0 = time.perf_counter()
    for i, fr in enumerate(frames[:nb]):
        mapping = np.ones([n, 4], dtype=int)
        mapping[:, 1:4] = openscene_mapping(fr.pose, pts.astype(np.float64), fr.depth, fr.intrinsics, 0.25, 10)
        mask = mapping[:, 3]
        if mask.sum() == 0:
            continue
        feat_2d_3d = chw[i % 2][:, mapping[:, 1], mapping[:, 2]].T  # every point gathered, then masked
        counter[mask != 0] += 1
        sums[mask != 0] += feat_2d_3d[mask != 0]
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    count = counter[:, 0].astype(np.int32)
    np.savez(out_path, feat=sums[::50] / np.maximum(counter[::50], 1), count=count)
    return {"seconds": dt, "frames": nb, "point_views": int(count.sum()), "peak_rss_mb": peak}


def run_child(part, args, tmp):
    out = os.path.join(tmp, f"{part}.npz")
    cmd = [sys.executable, __file__, "--child", part, "--points", str(args.points), "--frames", str(args.frames),
           "--baseline-frames", str(args.baseline_frames), "--device", args.device, "--threads", str(args.threads), "--out", out]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{part} failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1]), np.load(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=150_000)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--baseline-frames", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads for ours (default 1: the numpy baseline is single-threaded too)")
    ap.add_argument("--child", choices=["ours", "baseline"])
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        fn = child_ours if args.child == "ours" else child_baseline
        print(json.dumps(fn(args, args.out)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        ours, ours_arr = run_child("ours", args, tmp)
        base, base_arr = run_child("baseline", args, tmp)
    ours_spf = ours["seconds"] / ours["frames"]
    base_spf = base["seconds"] / base["frames"]
    pv_per_frame = ours["point_views"] / ours["frames"]
    same_counts = bool(np.array_equal(ours_arr["count"], base_arr["count"]))
    max_diff = float(np.abs(ours_arr["feat"] - base_arr["feat"]).max())
    print(json.dumps({
        "benchmark": "fusion",
        "device": args.device, "torch_threads": args.threads,
        "points": args.points, "frames": args.frames, "image": [W, H], "channels": C,
        "ours_seconds": round(ours["seconds"], 3),
        "ours_seconds_per_frame": round(ours_spf, 5),
        "ours_point_views_per_s": round(ours["point_views"] / ours["seconds"]),
        "ours_points_x_frames_per_s": round(args.points * ours["frames"] / ours["seconds"]),
        "ours_peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "mean_visible_points_per_frame": round(pv_per_frame),
        "baseline": "OpenScene-style numpy per-frame loop (gather every point, then mask)",
        "baseline_frames_measured": base["frames"],
        "baseline_seconds_per_frame": round(base_spf, 4),
        "baseline_seconds_extrapolated_to_all_frames": round(base_spf * args.frames, 2),
        "baseline_extrapolated": args.baseline_frames < args.frames,
        "baseline_point_views_per_s_estimated": round(pv_per_frame / base_spf),
        "baseline_peak_rss_mb": round(base["peak_rss_mb"], 1),
        "speedup_vs_baseline": round(base_spf / ours_spf, 2),
        "target_speedup": 10, "target_peak_rss_mb": 1536,
        "agreement_on_baseline_frames": {"view_counts_equal": same_counts, "max_abs_feature_diff": max_diff},
        "accumulator_mb": round(args.points * C * 4 / 2 ** 20, 1),
    }))


if __name__ == "__main__":
    main()
