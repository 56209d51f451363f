"""Point inspection: click ray -> nearest point -> what every source says about it."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from sas_engine.errors import SASInputError
from sas_engine.labels import IGNORE, get_label_set

if TYPE_CHECKING:  # pragma: no cover
    from .layers import SceneLayers
    from .state import AppState


def pick_point(points: np.ndarray, origin: Sequence[float], direction: Sequence[float], radius: float) -> Optional[int]:
    """Index of the point hit by a ray, or ``None``.

    Points within ``radius`` of the ray (in front of the origin) are candidates; the one nearest the camera wins. When
    none is that close, the point closest to the ray is taken if it lies within 4 x ``radius``.
    """
    o = np.asarray(origin, np.float64).reshape(3)
    d = np.asarray(direction, np.float64).reshape(3)
    nd = np.linalg.norm(d)
    if not np.isfinite(nd) or nd == 0 or not np.isfinite(o).all():
        return None
    d = d / nd
    v = np.asarray(points, np.float64) - o
    t = v @ d
    perp2 = np.einsum("ij,ij->i", v, v) - t * t
    front = t > 0
    cand = np.nonzero(front & (perp2 <= radius * radius))[0]
    if cand.size:
        return int(cand[np.argmin(t[cand])])
    perp2 = np.where(front, perp2, np.inf)
    i = int(np.argmin(perp2))
    return i if perp2[i] <= (4 * radius) ** 2 else None


def _top3(cos: np.ndarray, names: list[str]) -> list[tuple[str, float]]:
    """The 3 best names of one point's cosine row (float32 [K]; NaN: the point has no feature)."""
    if not np.isfinite(cos).all():
        return []
    order = np.argsort(-cos, kind="stable")[:3]
    return [(names[i], float(cos[i])) for i in order]


def inspect_point(state: "AppState", layers: "SceneLayers", index: int, vocab: list[str], template: str) -> dict:
    """Everything known about point ``index``: teachers' top-3 labels with cosine scores and views seen, fusion
    weights, distilled labels, superpoint id, ground truth.

    The cosines come from each layer's query engine (:meth:`sas_engine.query.QueryEngine.similarities`, whose
    vocabulary columns the colour modes have usually computed already), which holds the only in-memory copy of the
    features."""
    scene = layers.scene
    n = scene.num_points
    if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < n:
        raise SASInputError(None, f"point index {index!r} is outside 0..{n - 1}")
    i = int(index)
    info: dict = {"index": i, "xyz": [round(float(x), 3) for x in scene.points[i]],
                  "rgb": [int(c) for c in scene.colors[i]], "teachers": [], "fusions": [], "distilled": []}
    if scene.labels is not None:
        lab = int(scene.labels[i])
        ls = get_label_set(scene.label_set)
        info["gt"] = "ignore" if lab == IGNORE or lab >= len(ls) else ls.names[lab]
    sp = layers.superpoints()
    if sp is not None:
        info["superpoint"] = int(sp[i])
    for l in layers.usable():
        try:
            pl = layers.payload(l.artefact)
            cos = state.engine(scene.scene_id, l.artefact).similarities(vocab, template)[i]
        except SASInputError as e:
            info.setdefault("errors", []).append(str(e))
            continue
        has = bool(pl["mask"][i]) and bool(np.isfinite(cos).all())
        top = _top3(cos, vocab) if has else []
        entry = {"layer": l.label, "artefact": l.artefact, "top3": top, "has_feature": has}
        if "view_count" in pl:
            entry["views"] = int(np.asarray(pl["view_count"])[i])
        if l.kind == "teacher":
            info["teachers"].append(entry)
        elif l.kind == "fusion":
            if "weights" in pl and "teachers" in pl:
                from .layers import teacher_display_name

                w = np.asarray(pl["weights"])[i]
                entry["weights"] = [(teacher_display_name(t), float(x)) for t, x in zip(pl["teachers"], w)]
            info["fusions"].append(entry)
        else:
            info["distilled"].append(entry)
    return info


def inspection_markdown(info: dict) -> str:
    """Markdown rendering of :func:`inspect_point`'s dict (names escaped)."""
    e = html.escape
    lines = [f"**Point {info['index']}** at {info['xyz']} m, RGB {info['rgb']}"]
    if "gt" in info:
        lines.append(f"- ground truth: **{e(info['gt'])}**")
    if "superpoint" in info:
        lines.append(f"- superpoint id: {info['superpoint']}")

    def top(entry):
        if not entry["has_feature"]:
            return "no feature (seen by no view)"
        return ", ".join(f"{e(n)} {s:.3f}" for n, s in entry["top3"])

    for t in info["teachers"]:
        views = f" - seen in {t['views']} views" if "views" in t else ""
        lines.append(f"- {e(t['layer'])}: {top(t)}{views}")
    for f in info["fusions"]:
        w = ""
        if "weights" in f:
            w = " - weights " + ", ".join(f"{e(n)} {x:.2f}" for n, x in f["weights"])
        lines.append(f"- {e(f['layer'])}: {top(f)}{w}")
    for d in info["distilled"]:
        lab = e(d["top3"][0][0]) if d["top3"] else "none"
        lines.append(f"- {e(d['layer'])}: **{lab}** ({top(d)})")
    if not (info["teachers"] or info["fusions"] or info["distilled"]):
        lines.append("- no feature layers in the store for this scene")
    for err in info.get("errors", []):
        lines.append(f"- unreadable layer: {e(err)}")
    return "\n".join(lines)


def inspection_summary(info: dict) -> str:
    """The short version shown over the 3D view: the point, its ground truth and the distilled label (the full
    :func:`inspection_markdown` is in the page's Inspect tab)."""
    e = html.escape
    lines = [f"**Point {info['index']}**"]
    if "gt" in info:
        lines.append(f"- ground truth: **{e(info['gt'])}**")
    for d in info["distilled"][:1] or info["fusions"][:1]:
        lab = e(d["top3"][0][0]) if d.get("top3") else "no feature"
        lines.append(f"- {e(d['layer'])}: **{lab}**")
    lines.append("- every teacher and weight: Inspect tab")
    return "\n".join(lines)

