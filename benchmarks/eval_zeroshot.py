"""Zero-shot evaluation speed on a ScanNet-sized scene: chunked labelling + bincount confusion.

Baseline (measured in the same run): OpenScene's way, one float32 matrix product over all points followed by argmax,
which holds an [N, Q] logit matrix and a float32 copy of all features at once. Prints one JSON object.
Usage: python benchmarks/eval_zeroshot.py [--device cuda] [--points 150000] [--dim 512]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from sas_engine.eval.metrics import confusion_matrix, miou
from sas_engine.eval.zeroshot import predict_labels
from sas_engine.labels import get_label_set


def timed(fn, repeat=3, sync=None):
    best = float("inf")
    out = None
    for _ in range(repeat):
        if sync:
            sync()
        t0 = time.perf_counter()
        out = fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--points", type=int, default=150_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--label-set", default="scannet20")
    a = ap.parse_args()
    torch.set_num_threads(2)
    ls = get_label_set(a.label_set)
    q2c = ls.query_to_class()
    q = len(q2c)
    rng = np.random.default_rng(0)
    text = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((q, a.dim)).astype(np.float32)), dim=1)
    qi = rng.integers(0, q, a.points)
    gt = q2c[qi]
    feats = (text[qi] + 0.5 * torch.randn(a.points, a.dim) / a.dim ** 0.5).half()
    mask = torch.from_numpy(rng.random(a.points) < 0.9)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else None
    if a.device.startswith("cuda"):
        feats, text, mask = feats.to(a.device), text.to(a.device), mask.to(a.device)

    def ours():
        pred = predict_labels(feats, text, q2c, mask=mask, device=a.device)
        return confusion_matrix(pred, gt, len(ls))

    def baseline():
        logits = feats.float() @ text.T
        pred = torch.as_tensor(q2c, device=logits.device)[logits.argmax(1)]
        pred = torch.where(mask, pred, torch.full_like(pred, -1)).cpu().numpy()
        return confusion_matrix(pred, gt, len(ls))

    t_ours, c1 = timed(ours, sync=sync)
    t_base, c2 = timed(baseline, sync=sync)
    assert (c1 == c2).all(), "chunked and one-shot labelling disagree"
    print(json.dumps({
        "benchmark": "eval_zeroshot", "device": a.device, "points": a.points, "dim": a.dim, "queries": q,
        "ours_s": round(t_ours, 4), "baseline_one_matmul_s": round(t_base, 4),
        "speed_ratio_baseline_over_ours": round(t_base / t_ours, 3),
        "points_per_s": int(a.points / t_ours), "miou_check": round(100 * miou(c1), 2),
    }))


if __name__ == "__main__":
    main()
