"""Write an evaluation results dict (:func:`.evaluate.evaluate_sources`) as Markdown, JSON and PNG plots.

Files written into ``out_dir`` (each atomically):

* ``eval.md``: a table, rows = sources, columns = mIoU, mAcc, coverage and the IoU of every class (percent);
* ``eval.json``: the results dict unchanged (every number, confusion matrices included);
* ``iou_per_class.png``: grouped bars, per-class IoU of each source;
* ``confusion_<source>.png``: row-normalised confusion matrix of each source (last column = no prediction).
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np

from ..store import atomic_write


def _fmt(v, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def markdown_table(results: dict) -> str:
    """The Markdown table of a results dict (absent classes shown as ``-``)."""
    classes = results["classes"]
    head = ["source", "mIoU", "mAcc", "cov."] + list(classes)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for name, s in results["sources"].items():
        row = [f"`{name}`", _fmt(s["miou"]), _fmt(s["macc"]), _fmt(s["coverage"])]
        row += [_fmt(s["iou"][c]) if c in s["present"] else "-" for c in classes]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def markdown_report(results: dict, title: str = "Zero-shot evaluation") -> str:
    """Full Markdown text: a header describing the setting, the table, notes on missing scenes."""
    n_sc = len(results["scenes"])
    first = next(iter(results["sources"].values()))
    lines = [
        f"# {title}",
        "",
        f"- label set: `{results['label_set']}` ({len(results['classes'])} classes, {len(first['present'])} present)",
        f"- scenes: {n_sc} ({', '.join(results['scenes'][:8])}{', ...' if n_sc > 8 else ''})",
        f"- prompt template: `{results['template']}`",
        f"- mIoU / mAcc convention: `{results['convention']}` ({results.get('convention_doc', '')})",
        "- numbers in percent; points without a feature count as misses (cov. = share of evaluated points with one)",
    ]
    for k, v in results.get("meta", {}).items():
        lines.append(f"- {k}: {v}")
    lines += ["", markdown_table(results), ""]
    for name, s in results["sources"].items():
        if s.get("missing_scenes"):
            lines.append(f"- `{name}` had no features for {len(s['missing_scenes'])} scene(s): "
                         f"{', '.join(s['missing_scenes'][:8])}")
    return "\n".join(lines).rstrip() + "\n"


def safe_name(name: str) -> str:
    """A file-name-safe version of a source name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "source"


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes (110 dpi, tight box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def plot_iou_bars(results: dict):
    """Matplotlib figure: grouped bars of per-class IoU (percent), one colour per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = results["classes"]
    names = list(results["sources"])
    k, m = len(classes), len(names)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.32 * k * max(1, m) ** 0.5 + 2), 4.5))
    x = np.arange(k)
    w = 0.8 / m
    for i, n in enumerate(names):
        iou = results["sources"][n]["iou"]
        vals = [iou[c] if iou[c] is not None else 0.0 for c in classes]
        ax.bar(x + (i - (m - 1) / 2) * w, vals, w, label=f"{n} ({_fmt(results['sources'][n]['miou'])})")
    ax.set_xticks(x)
    ax.set_xticklabels(classes, rotation=70, ha="right", fontsize=7 if k > 40 else 8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Per-class IoU, {results['label_set']}, {len(results['scenes'])} scene(s) (legend: mIoU)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_confusion(results: dict, name: str):
    """Matplotlib figure: row-normalised confusion matrix of one source (rows GT, last column = no prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = results["classes"]
    c = np.asarray(results["sources"][name]["confusion"], dtype=np.float64)
    rows = c.sum(1, keepdims=True)
    norm = np.divide(c, rows, out=np.zeros_like(c), where=rows > 0)
    k = len(classes)
    size = max(5.0, 0.28 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    fs = 8 if k <= 25 else 5
    ax.set_xticks(np.arange(k + 1))
    ax.set_xticklabels(list(classes) + ["(none)"], rotation=90, fontsize=fs)
    ax.set_yticks(np.arange(k))
    ax.set_yticklabels(classes, fontsize=fs)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(f"{name}: confusion (row-normalised), mIoU {_fmt(results['sources'][name]['miou'])}")
    fig.colorbar(im, ax=ax, fraction=0.04)
    return fig


def write_report(results: dict, out_dir: str | Path, *, plots: bool = True, title: str = "Zero-shot evaluation",
                 stem: str = "eval") -> dict[str, Path]:
    """Write ``<stem>.md``, ``<stem>.json`` and (``plots``) the PNGs into ``out_dir``; returns ``{label: path}``."""
    out = Path(out_dir)
    files = {
        "markdown": atomic_write(out / f"{stem}.md", lambda f: f.write(markdown_report(results, title)), mode="w"),
        "json": atomic_write(out / f"{stem}.json", lambda f: f.write(json.dumps(results, indent=1)), mode="w"),
    }
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plot_iou_bars(results)
        data = png_bytes(fig)
        plt.close(fig)
        files["iou_bars"] = atomic_write(out / "iou_per_class.png", lambda f: f.write(data))
        for name in results["sources"]:
            fig = plot_confusion(results, name)
            data = png_bytes(fig)
            plt.close(fig)
            files[f"confusion:{name}"] = atomic_write(out / f"confusion_{safe_name(name)}.png",
                                                      lambda f, d=data: f.write(d))
    return files
