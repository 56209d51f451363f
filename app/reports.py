"""Capability plots, synthesized-image galleries and per-scene metrics for the panel."""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from sas_engine.errors import SASInputError
from sas_engine.labels import IGNORE, get_label_set

from .layers import teacher_display_name

if TYPE_CHECKING:  # pragma: no cover
    from .layers import SceneLayers
    from .state import AppState


def capability_plot(table: dict) -> np.ndarray:
    """uint8 [H, W, 3] grouped bar chart: one bar per teacher for every class (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = np.asarray(table["scores"], np.float64)
    teachers, classes = table["teachers"], table["classes"]
    t, k = scores.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * k + 2), 3.6), dpi=100)
    width = 0.8 / max(t, 1)
    x = np.arange(k)
    for i, name in enumerate(teachers):
        ax.bar(x + (i - (t - 1) / 2) * width, scores[i], width, label=teacher_display_name(name))
    ax.set_xticks(x)
    ax.set_xticklabels(classes, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("capability (IoU vs pseudo mask)")
    ax.set_ylim(0, max(1.0, float(np.nanmax(scores)) if scores.size else 1.0))
    mode = table.get("mode")
    ax.set_title(f"per-teacher per-class capability{f' ({mode})' if mode else ''}", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def capability_images(table: dict, store_root: Path, class_name: str, limit: int = 12) -> list[tuple[np.ndarray, str]]:
    """Synthesized images of ``class_name`` with their pseudo masks tinted red, when the table lists them.

    The table may carry ``images``: a list of ``{"class", "image", "mask"[, "ious"]}`` with paths relative to the
    store's shared folder (or absolute paths inside the store). Paths escaping the store are refused.
    """
    from PIL import Image

    items = table.get("images") or []
    root = Path(store_root).resolve()
    out = []
    for it in items:
        if not isinstance(it, dict) or it.get("class") != class_name:
            continue
        try:
            ip = (root / "_shared" / str(it["image"])).resolve()
            mp = (root / "_shared" / str(it["mask"])).resolve()
        except (KeyError, OSError):
            continue
        if not (ip.is_relative_to(root) and mp.is_relative_to(root)) or not (ip.is_file() and mp.is_file()):
            continue
        img = np.asarray(Image.open(ip).convert("RGB")).copy()
        m = np.asarray(Image.open(mp).convert("L").resize(img.shape[1::-1], Image.NEAREST)) > 127
        img[m] = (0.5 * img[m] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
        ious = it.get("ious") or {}
        cap = class_name + ("".join(f" | {teacher_display_name(t)} {v:.2f}" for t, v in ious.items()) if ious else "")
        out.append((img, cap))
        if len(out) >= limit:
            break
    return out


def scene_metrics(state: "AppState", layers: "SceneLayers", template: Optional[str] = None) -> tuple[list[list], str]:
    """Rows (source, mIoU %, accuracy %, coverage %) of every feature layer against the scene's ground truth, with the
    scene's label set as vocabulary. Empty with a note when there is no ground truth."""
    scene = layers.scene
    if scene.labels is None:
        return [], "this scene has no ground truth: no metrics"
    from sas_engine.eval.metrics import confusion_matrix, coverage, miou, overall_acc

    ls = get_label_set(scene.label_set)
    gt = scene.labels.astype(np.int64)
    rows = []
    notes = []
    for l in layers.usable():
        try:
            pred, _ = state.segmentation(scene.scene_id, l.artefact, list(ls.prompt_names), template)
        except SASInputError as e:
            notes.append(str(e))
            continue
        conf = confusion_matrix(pred, gt, len(ls), ignore=IGNORE)
        rows.append([l.label, round(100 * miou(conf), 1), round(100 * overall_acc(conf), 1),
                     round(100 * coverage(conf), 1)])
    if not rows and not notes:
        notes.append("no feature layers in the store for this scene")
    note = (f"{ls.name} ({len(ls)} classes), prompt {template or state.template!r}; mIoU over the classes present; "
            "points without a feature count as misses.")
    return rows, note + ("\n\n" + "\n".join(notes) if notes else "")
