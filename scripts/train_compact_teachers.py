"""Train the demo's two compact teachers on the synthetic training split and write them to checkpoints/.

    python3 scripts/train_compact_teachers.py            # reproduces checkpoints/lseg_compact.pt + seem_compact.pt

Generates the synthetic train/val splits first when missing (cached under data/synthetic). Prints and saves per-class
IoU of both teachers on the validation renders (assets/compact_teachers.md + .json).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import numpy as np
    import torch

    from sas_engine.config import config_dict
    from sas_engine.labels import get_label_set
    from sas_engine.synth import ensure_split
    from sas_engine.teachers.compact import CompactDenseTeacher, CompactMaskTeacher, save_compact
    from sas_engine.teachers.compact_nets import DenseNetConfig, MaskNetConfig
    from sas_engine.teachers.compact_train import (CompactTrainConfig, collect_frames, per_class_iou, proposals_for,
                                                   teacher_label_maps, train_dense, train_mask)
    from sas_engine.teachers.proposals import ProposalConfig
    from sas_engine.teachers.text import get_text_encoder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "checkpoints")
    ap.add_argument("--report", type=Path, default=ROOT / "assets" / "compact_teachers")
    ap.add_argument("--epochs-dense", type=int, default=CompactTrainConfig.epochs_dense)
    ap.add_argument("--epochs-mask", type=int, default=CompactTrainConfig.epochs_mask)
    ap.add_argument("--frame-step", type=int, default=CompactTrainConfig.frame_step)
    ap.add_argument("--train-split", default=CompactTrainConfig.train_split)
    ap.add_argument("--val-split", default=CompactTrainConfig.val_split)
    ap.add_argument("--only", choices=["dense", "mask"], default=None, help="train just one teacher")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = CompactTrainConfig(train_split=args.train_split, val_split=args.val_split, frame_step=args.frame_step,
                             epochs_dense=args.epochs_dense, epochs_mask=args.epochs_mask)
    t0 = time.time()
    ls = get_label_set(cfg.label_set)
    vocab = list(ls.prompt_names)
    text = get_text_encoder("minilm").encode([cfg.template.format(v) for v in vocab])
    images, labels = collect_frames(ensure_split(cfg.train_split), cfg.frame_step)
    vimages, vlabels = collect_frames(ensure_split(cfg.val_split), cfg.frame_step)
    print(f"training frames {len(images)}, validation frames {len(vimages)}")
    base = {"train": config_dict(cfg), "text_encoder": "minilm", "vocabulary": vocab, "template": cfg.template}
    report = {}
    timings = {}
    if args.only in (None, "dense"):
        t = time.time()
        dense = train_dense(images, labels, text, cfg)
        timings["dense_train_s"] = round(time.time() - t, 1)
        p = save_compact(args.out / "lseg_compact.pt", "compact_dense", dense,
                         {**base, "net": dataclasses.asdict(dense.cfg)}, {})
        teacher = CompactDenseTeacher(p)
        iou = per_class_iou(teacher_label_maps(teacher, vimages, text), list(vlabels), len(vocab))
        report["lseg_compact"] = iou
        save_compact(p, "compact_dense", dense, {**base, "net": dataclasses.asdict(dense.cfg)}, _metrics(ls, iou))
    if args.only in (None, "mask"):
        t = time.time()
        pcfg = ProposalConfig()
        regions = proposals_for(images, pcfg)
        mask = train_mask(images, labels, regions, text, cfg)
        timings["mask_train_s"] = round(time.time() - t, 1)
        meta = {**base, "net": dataclasses.asdict(mask.cfg), "proposals": dataclasses.asdict(pcfg)}
        p = save_compact(args.out / "seem_compact.pt", "compact_mask", mask, meta, {})
        teacher = CompactMaskTeacher(p)
        iou = per_class_iou(teacher_label_maps(teacher, vimages, text), list(vlabels), len(vocab))
        report["seem_compact"] = iou
        save_compact(p, "compact_mask", mask, meta, _metrics(ls, iou))
    _write_report(args.report, ls, report, {**timings, "total_s": round(time.time() - t0, 1),
                                            "train_frames": len(images), "val_frames": len(vimages)})
    return 0


def _metrics(ls, iou) -> dict:
    import numpy as np

    return {"val_iou": {n: (None if not np.isfinite(v) else round(float(v) * 100, 2)) for n, v in zip(ls.names, iou)},
            "val_miou": round(float(np.nanmean(iou)) * 100, 2)}


def _write_report(stem: Path, ls, report: dict, timings: dict) -> None:
    import numpy as np

    from sas_engine.store import atomic_write

    names = list(report)
    lines = ["# Compact teachers: per-class IoU (%) on the synthetic validation renders", "",
             "| class | " + " | ".join(names) + " | better |", "|---|" + "---|" * (len(names) + 1)]
    wins = {n: 0 for n in names}
    for k, cname in enumerate(ls.names):
        vals = [report[n][k] for n in names]
        best = names[int(np.nanargmax(vals))] if any(np.isfinite(vals)) else "-"
        if best in wins:
            wins[best] += 1
        lines.append(f"| {cname} | " + " | ".join("-" if not np.isfinite(v) else f"{100 * v:.1f}" for v in vals)
                     + f" | {best} |")
    lines.append("| **mIoU** | " + " | ".join(f"**{100 * np.nanmean(report[n]):.1f}**" for n in names) + " | |")
    lines += ["", "Classes where each teacher is better: " + ", ".join(f"{n}: {w}" for n, w in wins.items()),
              "", f"Timings: {json.dumps(timings)}", ""]
    text = "\n".join(lines)
    print(text)
    atomic_write(stem.with_suffix(".md"), lambda f: f.write(text), mode="w")
    js = {n: {c: (None if not np.isfinite(v) else round(100 * float(v), 2)) for c, v in zip(ls.names, report[n])}
          for n in names}
    atomic_write(stem.with_suffix(".json"), lambda f: f.write(json.dumps({"iou": js, "timings": timings}, indent=1)),
                 mode="w")


if __name__ == "__main__":
    sys.exit(main())
