"""Train the demo's two compact teachers on the synthetic training split and write them to checkpoints/.

Reproduce the shipped weights (every training setting is a CompactTrainConfig default, recorded in the checkpoints):

    python3 scripts/train_compact_teachers.py --threads 2

writes checkpoints/lseg_compact.pt + checkpoints/seem_compact.pt and the per-class IoU report
assets/compact_teachers.md + .json. Generates the synthetic train/val splits first when missing (cached under
data/synthetic, or $SAS_DATA). Deterministic by seed for a given torch version and thread count (CPU).
Smoke run: --train-split tiny --val-split tiny --epochs-dense 1 --epochs-mask 1 --out /tmp/ct --report /tmp/ct/report
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
    import torch

    from sas_engine.labels import get_label_set
    from sas_engine.synth import ensure_split
    from sas_engine.teachers.compact import CompactDenseTeacher, CompactMaskTeacher, save_compact
    from sas_engine.teachers.compact_train import (CompactTrainConfig, collect_frames, per_class_iou, proposals_for,
                                                   teacher_label_maps, teacher_train_config, train_dense,
                                                   train_mask)
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
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    cfg = CompactTrainConfig(train_split=args.train_split, val_split=args.val_split, frame_step=args.frame_step,
                             epochs_dense=args.epochs_dense, epochs_mask=args.epochs_mask)
    t0 = time.time()
    ls = get_label_set(cfg.label_set)
    vocab = list(ls.prompt_names)
    text = get_text_encoder("minilm").encode([cfg.template.format(v) for v in vocab])
    images, labels = collect_frames(ensure_split(cfg.train_split), cfg.frame_step)
    vimages, vlabels = collect_frames(ensure_split(cfg.val_split), cfg.frame_step)
    print(f"training frames {len(images)}, validation frames {len(vimages)}")
    base = {"text_encoder": "minilm", "vocabulary": vocab, "template": cfg.template}
    report = {}
    timings = {}
    if args.only in (None, "dense"):
        t, c = time.time(), time.process_time()
        dense = train_dense(images, labels, text, cfg)
        timings["dense_train_s"] = round(time.time() - t, 1)
        timings["dense_train_cpu_s"] = round(time.process_time() - c, 1)
        p = save_compact(args.out / "lseg_compact.pt", "compact_dense", dense,
                         {**base, "train": teacher_train_config(cfg, "compact_dense"), "net": dataclasses.asdict(dense.cfg)}, {})
        teacher = CompactDenseTeacher(p)
        iou = per_class_iou(teacher_label_maps(teacher, vimages, text), list(vlabels), len(vocab))
        report["lseg_compact"] = iou
        save_compact(p, "compact_dense", dense, {**base, "train": teacher_train_config(cfg, "compact_dense"), "net": dataclasses.asdict(dense.cfg)},
                     _metrics(ls, iou, len(vimages)))
    if args.only in (None, "mask"):
        t, c = time.time(), time.process_time()
        pcfg = ProposalConfig()
        regions = proposals_for(images, pcfg)
        mask = train_mask(images, labels, regions, text, cfg)
        timings["mask_train_s"] = round(time.time() - t, 1)  # proposals included
        timings["mask_train_cpu_s"] = round(time.process_time() - c, 1)
        meta = {**base, "train": teacher_train_config(cfg, "compact_mask"), "net": dataclasses.asdict(mask.cfg), "proposals": dataclasses.asdict(pcfg)}
        p = save_compact(args.out / "seem_compact.pt", "compact_mask", mask, meta, {})
        teacher = CompactMaskTeacher(p)
        iou = per_class_iou(teacher_label_maps(teacher, vimages, text), list(vlabels), len(vocab))
        report["seem_compact"] = iou
        save_compact(p, "compact_mask", mask, meta, _metrics(ls, iou, len(vimages)))
    for name, kind in (("lseg_compact", "compact_dense"), ("seem_compact", "compact_mask")):
        if name not in report and (args.out / f"{name}.pt").is_file():  # --only: report the other one as saved
            report[name] = _recorded_iou(args.out / f"{name}.pt", kind, ls)
    report = {n: report[n] for n in ("lseg_compact", "seem_compact") if n in report}
    sizes = {f"{n}_mb": round((args.out / f"{n}.pt").stat().st_size / 2 ** 20, 2) for n in report}
    command = "python3 scripts/train_compact_teachers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    _write_report(args.report, ls, report, {**timings, "total_s": round(time.time() - t0, 1), "threads": args.threads,
                                            "train_frames": len(images), "val_frames": len(vimages), **sizes},
                  command.strip())
    return 0


def _metrics(ls, iou, val_frames: int) -> dict:
    import numpy as np

    return {"val_iou": {n: (None if not np.isfinite(v) else round(float(v) * 100, 2)) for n, v in zip(ls.names, iou)},
            "val_miou": round(float(np.nanmean(iou)) * 100, 2), "val_frames": int(val_frames)}


def _recorded_iou(path: Path, kind: str, ls):
    """Per-class IoU (fractions, NaN = unscored) recorded in a saved compact checkpoint's metrics."""
    import numpy as np

    from sas_engine.teachers.compact import read_compact

    val = read_compact(path, kind)["metrics"].get("val_iou", {})
    return np.array([np.nan if val.get(n) is None else val[n] / 100 for n in ls.names])


def _write_report(stem: Path, ls, report: dict, timings: dict, command: str) -> None:
    import numpy as np

    from sas_engine.store import atomic_write
    from sas_engine.teachers.compact_train import strict_wins

    names = list(report)
    wins = {n: [] for n in names}
    if len(names) == 2:
        wa, wb = strict_wins(report[names[0]], report[names[1]])
        wins = {names[0]: wa, names[1]: wb}
    lines = ["# Compact teachers: per-class IoU (%) on the synthetic validation renders", "",
             f"Reproduce: `{command}`", "",
             "| class | " + " | ".join(names) + " | better |", "|---|" + "---|" * (len(names) + 1)]
    for k, cname in enumerate(ls.names):
        vals = [report[n][k] for n in names]
        best = next((n for n in names if k in wins[n]), "tie" if all(np.isfinite(vals)) else "-")
        lines.append(f"| {cname} | " + " | ".join("-" if not np.isfinite(v) else f"{100 * v:.1f}" for v in vals)
                     + f" | {best} |")
    lines.append("| **mIoU** | " + " | ".join(f"**{100 * np.nanmean(report[n]):.1f}**" for n in names) + " | |")
    lines += ["", "Strictly better on (IoU compared at 0.1 precision; ties and unscored classes count for neither): "
              + "; ".join(f"{n}: {len(w)} classes" for n, w in wins.items()),
              "", "'-': class absent from the validation ground truth (not scored).",
              "", f"Timings and sizes: {json.dumps(timings)}", ""]
    text = "\n".join(lines)
    print(text)
    atomic_write(stem.with_suffix(".md"), lambda f: f.write(text), mode="w")
    js = {n: {c: (None if not np.isfinite(v) else round(100 * float(v), 2)) for c, v in zip(ls.names, report[n])}
          for n in names}
    out = {"command": command, "iou": js, "miou": {n: round(100 * float(np.nanmean(report[n])), 2) for n in names},
           "wins": {n: [ls.names[k] for k in w] for n, w in wins.items()}, "timings": timings}
    atomic_write(stem.with_suffix(".json"), lambda f: f.write(json.dumps(out, indent=1)), mode="w")


if __name__ == "__main__":
    sys.exit(main())
