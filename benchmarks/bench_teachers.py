"""Teacher throughput: frames per second of the dense CLIP (MaskCLIP) teacher at ViT-B/32 on 320x240 frames.

Random weights (timing only). Baseline measured in the same run: CLIP's ordinary global image embedding
(``encode_image`` at 224x224) of the same frames, i.e. the cost of one plain CLIP forward per frame.
Prints one JSON object. Usage: ``python benchmarks/bench_teachers.py [--device cuda] [--frames 16] [--batch 4]``.
The compact teachers (lseg_compact / seem_compact) are added here by their issue.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _time(fn, sync, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    from sas_engine.teachers.base import CLIP_MEAN, CLIP_STD, image_to_tensor
    from sas_engine.teachers.clip_dense import build_clip_dense

    dev = args.device
    sync = (lambda: torch.cuda.synchronize()) if dev.startswith("cuda") else (lambda: None)
    teacher = build_clip_dense(None, arch="ViT-B-32", device=dev, allow_random=True)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(args.frames)]
    batches = [frames[i:i + args.batch] for i in range(0, len(frames), args.batch)]
    teacher.predict_batch(batches[0])  # warm-up

    def dense():
        for b in batches:
            teacher.predict_batch(b)

    @torch.no_grad()
    def global_embed():
        for b in batches:
            x = image_to_tensor(b, CLIP_MEAN, CLIP_STD, dev)
            x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
            teacher.model.encode_image(x).float().cpu()

    global_embed()
    reps = 3 if dev.startswith("cuda") else 1
    t_dense = _time(dense, sync, reps)
    t_global = _time(global_embed, sync, reps)
    out_hw = teacher.output_size(240, 320)
    res = {
        "benchmark": "teachers",
        "device": torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"cpu x{args.threads} threads",
        "teacher": "clip_dense ViT-B-32 (random weights)",
        "image": [240, 320], "network_input": list(teacher.input_size(240, 320)), "output": [*out_hw, 512],
        "frames": len(frames), "batch": args.batch,
        "dense_fps": round(len(frames) / t_dense, 2),
        "baseline_global_clip_fps": round(len(frames) / t_global, 2),
        "dense_over_baseline_time": round(t_dense / t_global, 3),
        "cache_mb_per_frame_fp16": round(out_hw[0] * out_hw[1] * 512 * 2 / 2 ** 20, 3),
    }
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
