"""Every pipeline step on one RGB-D capture, timed, with the disk the teachers' per-frame caches take.

Runs in a fresh temporary store (the capture's own ``sas_reconstruction.*`` is removed first with ``--cold``):

  * ``load_cold`` / ``load_warm``: load the capture (cold = TSDF reconstruction, written once; warm = reuse);
  * ``superpoints``;
  * per shipped teacher, the two ways fusion can get the teacher's outputs, in the same run:
    ``cached`` = ``sas extract`` to the per-frame store cache, then fusion reading it (what every fusion did before
    streaming was the default; its disk use is the baseline), and ``streamed`` = the teacher run frame by frame inside
    fusion with nothing kept (the pipeline's default now); both give the same ``fused.<teacher>`` (max abs
    difference reported). Before they are timed, one untimed pass of the teacher over all frames fills the text
    encoder's in-process cache of the mask teacher's sentences, which otherwise favours whichever path runs second
    (``--no-warm-up`` skips it);
  * the capability table (``--capability-images`` per class; shared by every scene, so computed once per store);
  * ``fused.add`` / ``fused.linear`` / ``fused.sas``, and the shipped student's ``pred3d``.

Prints one JSON object: seconds per step, cache bytes per 100 frames (cached vs streamed) and the ratios.
Usage: ``python3 benchmarks/bench_capture.py /path/to/capture [--cold] [--threads 2]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sas_engine.io import load_scene, reconstruct  # noqa: E402
from sas_engine.pipeline import (PipelineConfig, build_teachers, ensure_capability, ensure_student,  # noqa: E402
                                 ensure_superpoints, fuse_combined, fuse_source, teacher_source, vocabulary_text)
from sas_engine.store import ArtefactStore  # noqa: E402
from sas_engine.teachers.cache import (ExtractConfig, cached_feature_source, extract_config,  # noqa: E402
                                      extract_scene, frame_outputs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--cold", action="store_true", help="delete the capture's cached reconstruction first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--capability-images", type=int, default=8, help="synthesized images per class (pipeline: 8)")
    ap.add_argument("--no-warm-up", action="store_true", help="time the teachers without an untimed pass first")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out: dict = {"capture": str(args.capture), "threads": args.threads}
    t = {}
    if args.cold:
        for name in (reconstruct.MESH_NAME, reconstruct.SIDECAR_NAME):
            (args.capture / name).unlink(missing_ok=True)
    t0 = time.perf_counter()
    scene = load_scene(args.capture, progress=False)
    t["load_cold" if args.cold else "load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scene = load_scene(args.capture, progress=False)
    t["load_warm"] = time.perf_counter() - t0
    out.update(points=scene.num_points, frames=len(scene.frames), image=list(scene.frames[0].color.shape[1::-1]))
    cfg = PipelineConfig(capability_images=args.capability_images)
    with tempfile.TemporaryDirectory() as d:
        store = ArtefactStore(Path(d) / "store")
        text = vocabulary_text(scene.label_set, cfg)
        t0 = time.perf_counter()
        ensure_superpoints(store, scene)
        t["superpoints"] = time.perf_counter() - t0
        teachers = build_teachers(cfg)
        fused, caches = [], {}
        for teacher in teachers:
            name = teacher.name
            if not args.no_warm_up:
                t0 = time.perf_counter()
                _, econf, enc, cap = extract_config(teacher, ExtractConfig(), scene=scene)
                for f in scene.frames:
                    frame_outputs(teacher, econf["kind"], [f.color], [str(f.frame_id)], 1, enc, cap)
                t[f"{name}.warm_up"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            src = teacher_source(store, scene, teacher, cfg)
            f_stream = fuse_source(store, scene, name, src, cfg, text, progress=False)
            t[f"{name}.streamed"] = time.perf_counter() - t0
            cached_store = ArtefactStore(Path(d) / f"cached_{name}")
            t0 = time.perf_counter()
            summary = extract_scene(scene, teacher, cached_store, progress=False)
            t[f"{name}.extract"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            f_cache = fuse_source(cached_store, scene, name, cached_feature_source(cached_store, scene, name), cfg,
                                  text, progress=False)
            t[f"{name}.fuse_from_cache"] = time.perf_counter() - t0
            n = len(scene.frames)
            caches[name] = {
                "cached_bytes_per_100_frames": int(summary["bytes_per_frame"] * 100),
                "streamed_bytes_per_100_frames": sum(p.stat().st_size for p in store.scene_dir(scene.scene_id).glob(
                    f"feat2d.{name}.*")) * 100 // max(1, n),
                "max_abs_diff_streamed_vs_cached": float((f_stream["features"].float()
                                                          - f_cache["features"].float()).abs().max()),
                "seconds_ratio_streamed_vs_extract_plus_fuse": round(
                    t[f"{name}.streamed"] / (t[f"{name}.extract"] + t[f"{name}.fuse_from_cache"]), 3)}
            fused.append(f_stream)
        names = [x.name for x in teachers]
        t0 = time.perf_counter()
        table = ensure_capability(store, teachers, cfg)
        t["capability_table"] = time.perf_counter() - t0
        for mode in ("add", "linear", "sas"):
            t0 = time.perf_counter()
            fuse_combined(store, scene, mode, fused, names, table, cfg)
            t[f"fused.{mode}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ensure_student(store, scene, cfg)
        t["student"] = time.perf_counter() - t0
    out["seconds"] = {k: round(v, 2) for k, v in t.items()}
    out["teacher_caches"] = caches
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
