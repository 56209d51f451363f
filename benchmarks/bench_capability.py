"""Benchmark of capability construction and fusion; prints one JSON object.

* ``capture_ratio``: wall time of Stable Diffusion sampling with the cross-attention capture installed divided by
  plain sampling (diffusers' default processors), same tiny random pipeline, prompt, seed and steps (target < 1.3);
* ``fusion_s_<C>``: capability-guided fusion of 150k points x 2 teachers x C-d features (float16 inputs, K = 20)
  on the CPU (target < 1 s), with the Add baseline's time for reference.

Usage: python benchmarks/bench_capability.py [--size 64] [--steps 10] [--repeats 3] [--points 150000] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import time


def _best(fn, repeats):
    fn()                                                     # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_capture(size, steps, repeats):
    import torch

    from sas_engine.capability.attention import AttentionCapture, capturing, class_token_indices
    from sas_engine.capability.tiny import build_tiny_sd_pipeline

    pipe = build_tiny_sd_pipeline(0)
    pipe.set_progress_bar_config(disable=True)
    prompt = "a good photo of a shower curtain in a room"
    tokens = class_token_indices(pipe.tokenizer, prompt, "shower curtain")
    f = pipe.vae_scale_factor

    def run():
        with torch.no_grad():
            return pipe(prompt, num_inference_steps=steps, guidance_scale=7.0, height=size, width=size,
                        generator=torch.Generator().manual_seed(0), output_type="np").images

    def run_capture():
        cap = AttentionCapture(tokens, (size // f, size // f), num_cond=1)
        with capturing(pipe.unet, cap):
            out = run()
        cap.aggregate((size, size))
        return out

    run(), run_capture()                                     # warm-up
    plain, captured = [], []
    for _ in range(repeats):                                 # interleaved, so load changes hit both alike
        for fn, acc in ((run, plain), (run_capture, captured)):
            t = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t)
    plain, captured = min(plain), min(captured)
    return {"capture_plain_s": plain, "capture_s": captured, "capture_ratio": captured / plain,
            "capture_image_size": size, "capture_steps": steps}


def bench_fusion(points, dims, repeats):
    import torch

    from sas_engine.capability.fusion import add_fuse, capability_fuse

    out = {"fusion_points": points}
    g = torch.Generator().manual_seed(0)
    for c in dims:
        feats = [torch.nn.functional.normalize(torch.randn(points, c, generator=g), dim=1).half() for _ in range(2)]
        masks = [torch.rand(points, generator=g) > 0.1 for _ in range(2)]
        emb = torch.nn.functional.normalize(torch.randn(20, c, generator=g), dim=1)
        cap = torch.rand(2, 20, generator=g).numpy()
        out[f"fusion_s_{c}"] = _best(lambda: capability_fuse(feats, masks, cap, emb, tau=0.05), repeats)
        out[f"add_s_{c}"] = _best(lambda: add_fuse(feats, masks), repeats)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64, help="image side of the tiny SD pipeline")
    p.add_argument("--steps", type=int, default=10, help="denoising steps")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (min is reported)")
    p.add_argument("--points", type=int, default=150_000, help="points fused")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    res = {"threads": a.threads}
    res.update(bench_capture(a.size, a.steps, a.repeats))
    res.update(bench_fusion(a.points, (384, 512), a.repeats))
    res["capture_target_met"] = res["capture_ratio"] < 1.3
    res["fusion_target_met"] = max(res["fusion_s_384"], res["fusion_s_512"]) < 1.0
    print(json.dumps(res))


if __name__ == "__main__":
    main()
