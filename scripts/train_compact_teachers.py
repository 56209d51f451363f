"""Train the demo's three compact teachers, each on its own data source, and write them to checkpoints/.

Reproduce the shipped weights (every setting is a CompactTrainConfig default or a RECIPES entry, both recorded in
the checkpoints):

    python3 scripts/train_compact_teachers.py --threads 2

writes checkpoints/{lseg_compact,seem_compact,odise_compact}.pt and the per-class IoU report
assets/compact_teachers.md + .json (with each teacher's data card). Each teacher learns from its own synthetic split
annotated with its own label granularity (sas_engine/teachers/sources.py); the splits are generated first when
missing (cached under data/synthetic, or $SAS_DATA). Per-class IoU is measured on the validation renders (report
only; nothing is chosen on it). Deterministic by seed for a given torch version and thread count (CPU).
Smoke run: --train-split tiny --val-split tiny --epochs 1 --frame-step 10 --out /tmp/ct --report /tmp/ct/report
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

    from sas_engine.labels import get_label_set
    from sas_engine.synth import ensure_split
    from sas_engine.teachers import build_teacher
    from sas_engine.teachers.compact import save_compact
    from sas_engine.teachers.compact_nets import DenseNetConfig, MaskNetConfig
    from sas_engine.teachers.compact_train import (RECIPES, CompactTrainConfig, collect_frames, per_class_iou,
                                                   proposals_for, recipe_config, recipe_train_record,
                                                   teacher_label_maps, train_dense, train_mask)
    from sas_engine.teachers.proposals import ProposalConfig
    from sas_engine.teachers.sources import get_source
    from sas_engine.teachers.text import get_text_encoder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "checkpoints")
    ap.add_argument("--report", type=Path, default=ROOT / "assets" / "compact_teachers")
    ap.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs (smoke runs)")
    ap.add_argument("--frame-step", type=int, default=CompactTrainConfig.frame_step)
    ap.add_argument("--val-split", default=CompactTrainConfig.val_split)
    ap.add_argument("--train-split", default=None, help="train every teacher on this split instead of its source's "
                                                        "(smoke runs; the label granularity still applies)")
    ap.add_argument("--only", default=None, help="comma-separated teachers to train (default: all of "
                                                 + ", ".join(RECIPES) + ")")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: rewrite the report from the metrics recorded in the saved checkpoints "
                         "(after teachers were trained by separate --only runs)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    only = [n.strip() for n in args.only.split(",")] if args.only else list(RECIPES)
    if args.report_only:
        only = []
    unknown = [n for n in only if n not in RECIPES]
    if unknown:
        ap.error(f"unknown teacher(s) {unknown}; known: {', '.join(RECIPES)}")
    base_cfg = CompactTrainConfig(val_split=args.val_split, frame_step=args.frame_step)

    ls = get_label_set(base_cfg.label_set)
    vocab = list(ls.prompt_names)
    text = get_text_encoder("minilm").encode([base_cfg.template.format(v) for v in vocab])
    vimages, vlabels = (collect_frames(ensure_split(base_cfg.val_split), base_cfg.frame_step) if only
                        else (np.zeros((0,)), None))
    base = {"text_encoder": "minilm", "vocabulary": vocab, "template": base_cfg.template}
    report, timings, frames = {}, {}, {}
    for name in only:
        recipe = RECIPES[name]
        if args.epochs is not None:
            recipe = dataclasses.replace(recipe, epochs=args.epochs)
        cfg = recipe_config(base_cfg, recipe)
        source = get_source(recipe.source)
        split = args.train_split or source.split
        cfg = dataclasses.replace(cfg, train_split=split)
        images, labels = collect_frames(ensure_split(split), cfg.frame_step)
        labels = source.remap(labels)
        frames[name] = len(images)
        print(f"{name}: {len(images)} training frames from {split} ({source.name}), "
              f"{len(vimages)} validation frames")
        t, c = time.time(), time.process_time()
        meta = {**base, "train": recipe_train_record(cfg, recipe)}
        if recipe.kind == "compact_dense":
            net_cfg = DenseNetConfig(embed_dim=text.shape[1], **dict(recipe.net))
            net = train_dense(images, labels, text, cfg, net_cfg=net_cfg)
        else:
            pcfg = ProposalConfig()
            net = train_mask(images, labels, proposals_for(images, pcfg), text, cfg,
                             net_cfg=MaskNetConfig(embed_dim=text.shape[1], **dict(recipe.net)))
            meta["proposals"] = dataclasses.asdict(pcfg)
        meta["net"] = dataclasses.asdict(net.cfg)
        timings[f"{name}_train_s"] = round(time.time() - t, 1)
        timings[f"{name}_train_cpu_s"] = round(time.process_time() - c, 1)
        path = save_compact(args.out / f"{name}.pt", recipe.kind, net, meta, {})
        teacher = build_teacher(name, checkpoint=path)
        iou = per_class_iou(teacher_label_maps(teacher, vimages, text), list(vlabels), len(vocab))
        report[name] = iou
        save_compact(path, recipe.kind, net, meta, {**_metrics(ls, iou, len(vimages)), "train_frames": len(images),
                                                    "train_s": timings[f"{name}_train_s"],
                                                    "train_cpu_s": timings[f"{name}_train_cpu_s"],
                                                    "threads": args.threads})
    for name, recipe in RECIPES.items():  # --only: report the others as saved, with their recorded timings
        path = args.out / f"{name}.pt"
        if name not in report and path.is_file():
            report[name], rec_timings, rec_frames = _recorded(path, recipe.kind, ls)
            timings.update(rec_timings)
            if rec_frames is not None:
                frames[name] = rec_frames
    report = {n: report[n] for n in RECIPES if n in report}
    sizes = {f"{n}_mb": round((args.out / f"{n}.pt").stat().st_size / 2 ** 20, 2) for n in report}
    run = {"threads": args.threads} if only else {}  # --report-only trains nothing: per-teacher threads only
    _write_report(args.report, ls, report, {**timings, **run, "train_frames": frames, **sizes},
                  "python3 scripts/train_compact_teachers.py --threads 2")
    return 0


def _metrics(ls, iou, val_frames: int) -> dict:
    import numpy as np

    return {"val_iou": {n: (None if not np.isfinite(v) else round(float(v) * 100, 2)) for n, v in zip(ls.names, iou)},
            "val_miou": round(float(np.nanmean(iou)) * 100, 2), "val_frames": int(val_frames)}


def _recorded(path: Path, kind: str, ls):
    """What a saved compact checkpoint's metrics record: per-class IoU (fractions, NaN = unscored), the training
    timings (``<name>_train_s``, ``_train_cpu_s``, ``_threads``) and the training frame count (or None)."""
    import numpy as np

    from sas_engine.teachers.compact import read_compact

    m = read_compact(path, kind)["metrics"]
    val = m.get("val_iou", {})
    iou = np.array([np.nan if val.get(n) is None else val[n] / 100 for n in ls.names])
    name = path.stem
    timings = ({f"{name}_train_s": m["train_s"], f"{name}_train_cpu_s": m["train_cpu_s"],
                f"{name}_threads": m.get("threads")} if "train_s" in m else {})
    return iou, timings, m.get("train_frames")


def _write_report(stem: Path, ls, report: dict, timings: dict, command: str) -> None:
    import itertools

    import numpy as np

    from sas_engine.store import atomic_write
    from sas_engine.teachers.compact_train import RECIPES, strict_wins
    from sas_engine.teachers.sources import get_source

    names = list(report)
    best = {}
    for k in range(len(ls.names)):
        vals = np.array([report[n][k] for n in names], np.float64)
        if np.isfinite(vals).all() and len(names) > 1:
            r = np.round(vals * 100, 1)
            best[k] = names[int(np.argmax(r))] if (r == r.max()).sum() == 1 else "tie"
        else:
            best[k] = "-"
    lines = ["# Compact teachers: per-class IoU (%) on the synthetic validation renders", "",
             f"Reproduce: `{command}`", "",
             "Each teacher learned from its own data source (below; `sas_engine/teachers/sources.py`). The validation "
             "renders are only reported here: no setting was chosen on them.", "",
             "| class | " + " | ".join(names) + " | best |", "|---|" + "---|" * (len(names) + 1)]
    for k, cname in enumerate(ls.names):
        vals = [report[n][k] for n in names]
        lines.append(f"| {cname} | " + " | ".join("-" if not np.isfinite(v) else f"{100 * v:.1f}" for v in vals)
                     + f" | {best[k]} |")
    lines.append("| **mIoU** | " + " | ".join(f"**{100 * np.nanmean(report[n]):.1f}**" for n in names) + " | |")
    pairs = {}
    lines += ["", "Per pair, the classes on which one teacher's IoU exceeds the other's by 15 points or more:", ""]
    for a, b in itertools.combinations(names, 2):
        d = np.round((np.asarray(report[a]) - np.asarray(report[b])) * 100, 1)
        ok = np.isfinite(d)
        ab = [ls.names[k] for k in np.flatnonzero(ok & (d >= 15))]
        ba = [ls.names[k] for k in np.flatnonzero(ok & (d <= -15))]
        wa, wb = strict_wins(report[a], report[b])
        pairs[f"{a}|{b}"] = {"a_plus_15": ab, "b_plus_15": ba, "a_wins": len(wa), "b_wins": len(wb)}
        lines.append(f"* {a} over {b}: {len(ab)} ({', '.join(ab) or 'none'}); {b} over {a}: {len(ba)} "
                     f"({', '.join(ba) or 'none'}); strictly better on {len(wa)} / {len(wb)} classes")
    lines += ["", "'-': class absent from the validation ground truth (not scored).", "", "## Data cards", ""]
    cards = {}
    for n in names:
        src = get_source(RECIPES[n].source)
        cards[n] = src.to_json()
        merges = ", ".join(f"{a} -> {b or 'unannotated'}" for a, b in src.merges)
        lines += [f"**{n}** (`{src.name}`, split `{src.split}`; annotated as: {merges}). {src.card}", ""]
    lines += [f"Timings and sizes: {json.dumps(timings)}", ""]
    text = "\n".join(lines)
    print(text)
    atomic_write(stem.with_suffix(".md"), lambda f: f.write(text), mode="w")
    js = {n: {c: (None if not np.isfinite(v) else round(100 * float(v), 2)) for c, v in zip(ls.names, report[n])}
          for n in names}
    out = {"command": command, "iou": js, "miou": {n: round(100 * float(np.nanmean(report[n])), 2) for n in names},
           "pairs": pairs, "sources": cards, "timings": timings}
    atomic_write(stem.with_suffix(".json"), lambda f: f.write(json.dumps(out, indent=1)), mode="w")


if __name__ == "__main__":
    sys.exit(main())
