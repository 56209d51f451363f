"""The Table 5 analogue: 2D mIoU / mAcc of rendered held-out views of Gaussians labelled with each single teacher's
lifted features (the Semantic Gaussians baseline) and with the SAS fusion, lifted and distilled; plus a rendered
comparison image (``scripts/gaussian_report.py``, ``sas gaussians eval --out``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .pipeline import SAS, VARIANTS


def summaries(confusion: dict, class_names: Sequence[str]) -> dict:
    """``{source: {variant: summarize(...)}}`` of summed confusion matrices (percentages)."""
    from ..eval.metrics import summarize

    return {s: {v: summarize(np.asarray(c), list(class_names)) for v, c in by.items()} for s, by in confusion.items()}


def bar_check(summ: dict, teachers: Sequence[str], variant: str = "distilled") -> dict:
    """The issue's bar: SAS-fused Gaussians above every single-teacher Gaussians (mIoU, ``variant``)."""
    sas = (summ.get(SAS) or {}).get(variant, {}).get("miou")
    single = {t: (summ.get(t) or {}).get(variant, {}).get("miou") for t in teachers}
    ok = sas is not None and all(v is not None and sas > v for v in single.values())
    best = max(((v, t) for t, v in single.items() if v is not None), default=(None, None))
    return {"variant": variant, "sas_miou": sas, "single_miou": single, "best_single": best[1],
            "passed": bool(ok)}


def markdown_rows(summ: dict, names: Optional[dict] = None) -> list[str]:
    rows = ["| Gaussian features | variant | mIoU | mAcc | pixel acc. | pixels |", "|---|---|---|---|---|---|"]
    for s, by in summ.items():
        for v in VARIANTS:
            if v in by:
                r = by[v]
                rows.append(f"| {(names or {}).get(s, s)} | {v} | {r['miou']:.1f} | {r['macc']:.1f} | "
                            f"{r['oacc']:.1f} | {r['points']} |")
    return rows


def comparison_image(store, scene, fit: dict, feats: dict, text, fcfg, sources: Sequence[str], path,
                     frame: Optional[int] = None, variant: str = "distilled", scale: int = 2) -> dict:
    """A PNG: one held-out view's photo, the Gaussians' rendered colours, the ground-truth labels and the rendered
    labels of each of ``sources`` (same colours as the app's class palette). Returns what it shows."""
    from PIL import Image, ImageDraw

    from ..io.colors import colorize
    from ..store import atomic_write
    from .fit import load_views, render_gaussians
    from .pipeline import gaussians_of
    from .semantics import MISSING, class_scores, render_labels

    held = list(fit["heldout_frames"])
    idx = held[len(held) // 2] if frame is None else int(frame)
    v = load_views(scene.frames, [idx], fcfg.width, fcfg.height)[0]
    g = gaussians_of(fit)
    import torch

    with torch.no_grad():
        rgb = render_gaussians(g, g.colors, v.camera, fcfg).channels.clamp(0, 1).numpy()
    k = text.shape[0]
    panels = [("photo (held out)", (v.color.numpy() * 255).astype(np.uint8)), ("Gaussians, RGB", (rgb * 255).astype(
        np.uint8))]
    gt = v.labels.astype(np.int64)
    panels.append(("ground truth", colorize(np.where(gt == 255, 255, gt), k)))
    for s in sources:
        pay = feats[s][variant] or feats[s]["lifted"]
        lab = render_labels(g, class_scores(pay["features"], pay["mask"], text), v, fcfg)
        panels.append((s, colorize(np.where(lab == MISSING, 255, lab), k)))
    w, h = fcfg.width * scale, fcfg.height * scale
    img = Image.new("RGB", (w * len(panels), h + 18), "white")
    d = ImageDraw.Draw(img)
    for i, (title, arr) in enumerate(panels):
        img.paste(Image.fromarray(np.ascontiguousarray(arr[..., :3])).resize((w, h), Image.NEAREST), (i * w, 18))
        d.text((i * w + 4, 3), title, fill="black")
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return {"scene": scene.scene_id, "frame": v.frame_id, "frame_index": idx, "panels": [t for t, _ in panels]}


def write_report(out_dir, results: dict, teachers: Sequence[str], *, settings: dict, image: Optional[dict] = None,
                 notes: Sequence[str] = ()) -> dict:
    """``gaussians.md`` and ``gaussians.json`` in ``out_dir`` (``results``: ``{split_key: run_scenes(...) +
    "summary"}``)."""
    from ..store import atomic_write

    out = Path(out_dir)
    lines = ["# 3D Gaussian segmentation with integrated priors (Table 5 analogue)", ""]
    lines += list(notes)
    for key, r in results.items():
        lines += ["", f"## {key}: {len(r['scenes'])} rooms ({', '.join(r['scenes'])})", ""]
        if r.get("missing"):
            lines += [f"Left out (stages not all computed when this report was written): "
                      f"{', '.join(r['missing'])}.", ""]
        lines += markdown_rows(r["summary"])
        for variant in VARIANTS:
            b = bar_check(r["summary"], teachers, variant)
            if b["sas_miou"] is not None and b["best_single"] is not None:
                lines += ["", f"Bar ({variant}): SAS {b['sas_miou']:.1f} mIoU vs best single teacher "
                              f"{b['best_single']} {b['single_miou'][b['best_single']]:.1f}: "
                              f"{'passed' if b['passed'] else 'NOT passed'}"]
        lines += ["", "Wall seconds of each stage when it was computed, and the CPU seconds of the worker process "
                      "over the room when all its stages ran in one go (`-`: some were cached):", "",
                  "| room | Gaussians | fit PSNR (fitting views, dB) | fit s | lift s (all teachers) | "
                  "encoder s (mean per source) | room CPU s |", "|---|---|---|---|---|---|---|"]
        for sid in r["scenes"]:
            f, t = r["fit"][sid], r["timing"][sid]
            enc = [x for x in t["encoder_s"].values() if x]
            fresh = t.get("fit_this_run_s", 0) > 0.5 * float(f["seconds"] or 0)
            cpu = f"{t['this_run_cpu_s']:.0f}" if fresh and "this_run_cpu_s" in t else "-"
            lines.append(f"| {sid} | {f['num_gaussians']} | {f['fit_psnr']} | {f['seconds']} | "
                         f"{sum(t['lift_s'].values()):.0f} | {np.mean(enc) if enc else 0:.0f} | {cpu} |")
    if image is not None:
        lines += ["", f"![rendered comparison]({image['file']})", "",
                  f"Held-out frame {image['frame']} of {image['scene']}: " + ", ".join(image["panels"]) + "."]
    lines += ["", "Settings:", "", "```json", json.dumps(settings, indent=1), "```", ""]
    md = out / "gaussians.md"
    js = out / "gaussians.json"
    text = "\n".join(lines)
    atomic_write(md, lambda f: f.write(text), mode="w")
    payload = json.dumps({"results": results, "settings": settings, "image": image}, indent=1, default=_default)
    atomic_write(js, lambda f: f.write(payload), mode="w")
    return {"markdown": md, "json": js}


def _default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)
