"""Benchmark: seconds to generate, render and write one default synthetic scene (60 frames at 320x240).

Target (issue 3): under 20 s on 2 CPU cores. Run as ``taskset -c 0,1 python benchmarks/bench_synth.py`` to pin two
cores. Prints one JSON object with the stage timings, the total, and a baseline measured in the same run: casting
the same 60 frames' rays through open3d alone (no shading, textures, ground truth or files), the floor any
ray-casting renderer pays; ``ratio_vs_raycast`` says how much the full pipeline costs on top of it.
``process_cpu_s`` (CPU seconds of all threads) and the load average tell wall times on a shared machine apart.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1003)
    ap.add_argument("--room", default="office")
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args(argv)

    import numpy as np

    from sas_engine.synth import SynthConfig, generate_scene, intrinsics_matrix, write_scannet
    from sas_engine.synth.render import Renderer, camera_path, render_frames

    cfg = SynthConfig(num_frames=args.frames)
    # warm-up: imports, numba kernel load/compile, open3d initialisation (not counted)
    t = time.perf_counter()
    warm = generate_scene(0, "bathroom", SynthConfig(target_vertices=3000, num_frames=1))
    render_frames(warm, num_frames=1)
    warmup = time.perf_counter() - t

    c0 = time.process_time()
    t0 = time.perf_counter()
    room = generate_scene(args.seed, args.room, cfg)
    t1 = time.perf_counter()
    frames = render_frames(room, cfg=cfg)
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_scannet(room, frames, tmp)
    t3 = time.perf_counter()
    cpu = time.process_time() - c0

    # baseline: the bare ray casts of the same views
    r = Renderer(room, shadows=False)
    K = intrinsics_matrix(cfg)
    w, h = cfg.image_size
    vv, uu = np.mgrid[0:h, 0:w]
    d_cam = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones(uu.shape)], -1).reshape(-1, 3)
    poses = camera_path(room, args.frames, np.random.default_rng([room.seed, 104729]), cfg)
    tb = time.perf_counter()
    for p in poses:
        dirs = (d_cam @ p[:3, :3].T).astype(np.float32)
        r.cast(np.broadcast_to(p[:3, 3].astype(np.float32), dirs.shape), dirs)
    raycast = time.perf_counter() - tb

    total = t3 - t0
    out = {
        "benchmark": "synth_scene",
        "scene": room.scene_id, "room_type": room.room_type, "vertices": room.num_vertices,
        "faces": int(len(room.faces)), "frames": len(frames), "image_size": list(cfg.image_size),
        "cpu_cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "generate_s": round(t1 - t0, 3), "render_s": round(t2 - t1, 3), "write_s": round(t3 - t2, 3),
        "total_s": round(total, 3), "target_s": 20.0, "meets_target": total < 20.0,
        "ms_per_frame": round(1000 * (t2 - t1) / len(frames), 1),
        "baseline_raycast_only_s": round(raycast, 3), "ratio_vs_raycast": round((t2 - t1) / max(raycast, 1e-9), 2),
        "process_cpu_s": round(cpu, 3),
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "warmup_s": round(warmup, 3),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
