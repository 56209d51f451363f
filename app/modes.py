"""Colour modes: RGB, ground truth, each feature layer's segmentation, superpoints, teacher disagreement.

:func:`mode_choices` lists only the modes whose data exist for the scene; :func:`render_mode` turns one into per-point
colours plus a legend. Feature-layer segmentations use the session's editable label set through the query engine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

import numpy as np

from sas_engine.errors import SASInputError
from sas_engine.labels import IGNORE, get_label_set

from .colors import AGREE, NO_FEATURE, TEACHER_COLORS, class_palette, id_colors, label_colors
from .layers import teacher_display_name

if TYPE_CHECKING:  # pragma: no cover
    from .layers import SceneLayers
    from .state import AppState


@dataclass
class Colouring:
    """Per-point colours of one view and what they mean.

    Attributes:
        colors: uint8 [N, 3].
        title: legend title.
        legend: (name, rgb, point count) entries.
        labels: optional int64 [N] class index into ``names`` (-1 = none) when the view is a labelling.
        names: class names of ``labels``.
    """

    colors: np.ndarray
    title: str
    legend: list = field(default_factory=list)
    labels: Optional[np.ndarray] = None
    names: Optional[list[str]] = None


def mode_choices(layers: "SceneLayers") -> list[tuple[str, str]]:
    """(label, key) of every colour mode available for the scene."""
    out = [("RGB", "rgb")]
    if layers.has_gt:
        out.append(("ground truth", "gt"))
    if layers.scene.instances is not None:
        out.append(("ground-truth instances", "instances"))
    for l in layers.usable():
        out.append((f"{l.label} segmentation", f"layer:{l.artefact}"))
    usable_teachers = [l for l in layers.teachers if l.artefact not in layers.broken]
    if len(usable_teachers) >= 2:
        out.append(("teacher disagreement", "disagreement"))
    if layers.superpoints() is not None:
        out.append(("superpoints", "superpoints"))
    return out


def labelled(labels: np.ndarray, names: list[str], title: str) -> Colouring:
    """Colouring of a labelling (index into ``names``, -1 or out-of-range = no feature)."""
    pal = class_palette(names)
    lab = np.asarray(labels).astype(np.int64)
    k = len(names)
    counts = np.bincount(np.where((lab >= 0) & (lab < k), lab, k), minlength=k + 1)
    legend = [(n, pal[i], int(counts[i])) for i, n in enumerate(names)]
    legend.append(("no feature / ignore", NO_FEATURE, int(counts[k])))
    return Colouring(label_colors(lab, pal), title, legend, lab, list(names))


def render_mode(state: "AppState", layers: "SceneLayers", key: str, vocab: list[str], template: str) -> Colouring:
    """Colours of mode ``key`` (see :func:`mode_choices`); bad keys raise :class:`SASInputError`."""
    scene = layers.scene
    valid = {k for _, k in mode_choices(layers)}
    if key not in valid:
        raise SASInputError(None, f"colour mode {key!r} is not available for scene {scene.scene_id}")
    if key == "rgb":
        return Colouring(scene.colors.copy(), "RGB")
    if key == "gt":
        ls = get_label_set(scene.label_set)
        lab = scene.labels.astype(np.int64)
        lab = np.where(lab == IGNORE, -1, lab)
        return labelled(lab, list(ls.names), f"ground truth ({ls.name})")
    if key == "instances":
        inst = scene.instances
        c = id_colors(inst)
        c[inst < 0] = NO_FEATURE
        return Colouring(c, f"ground-truth instances ({len(np.unique(inst[inst >= 0]))})")
    if key == "superpoints":
        sp = layers.superpoints()
        return Colouring(id_colors(sp), f"superpoints ({len(np.unique(sp)):,})")
    if key.startswith("layer:"):
        art = key[len("layer:"):]
        lab, _ = state.segmentation(scene.scene_id, art, vocab, template)
        return labelled(lab, vocab, f"{layers.layer(art).label}: argmax over {len(vocab)} names")
    if key == "disagreement":
        return disagreement(state, layers, vocab, template)
    raise SASInputError(None, f"unknown colour mode {key!r}")  # pragma: no cover - guarded by `valid`


def disagreement(state: "AppState", layers: "SceneLayers", vocab: list[str], template: str) -> Colouring:
    """Points where the teachers' labels differ, coloured by the teacher the fusion weighted most there.

    The weights come from ``fused.sas`` (else ``fused.linear`` / ``fused.add``); without any fusion artefact the
    disagreeing points get one colour and the legend says so.
    """
    sid = layers.scene_id
    teachers = [l for l in layers.teachers if l.artefact not in layers.broken]
    labs = [state.segmentation(sid, l.artefact, vocab, template)[0] for l in teachers]
    stack = np.stack(labs, 1)
    seen = stack >= 0
    n_seen = seen.sum(1)
    first = np.where(seen, stack, np.iinfo(np.int64).max).min(1)
    last = np.where(seen, stack, -1).max(1)
    differ = (n_seen >= 2) & (first != last)
    n = len(stack)
    colors = np.tile(AGREE, (n, 1))
    colors[n_seen == 0] = NO_FEATURE
    legend = [("teachers agree", AGREE, int(((n_seen >= 1) & ~differ).sum())),
              ("no feature", NO_FEATURE, int((n_seen == 0).sum()))]
    from .layers import FUSIONS

    ranked = sorted(layers.fusions, key=lambda f: FUSIONS.index(f.artefact.split(".", 1)[1]))  # SAS first
    fusion = next((f for f in ranked if f.artefact not in layers.broken and _weights(layers, f.artefact)), None)
    if fusion is None:
        colors[differ] = (214, 39, 40)
        legend.insert(0, ("teachers disagree (no fusion weights stored)", (214, 39, 40), int(differ.sum())))
        return Colouring(colors, "teacher disagreement", legend)
    pl = layers.payload(fusion.artefact)
    w = np.asarray(pl["weights"], np.float32)
    trusted = w.argmax(1)
    names = pl.get("teachers") or [f"teacher {i}" for i in range(w.shape[1])]
    for i, t in enumerate(names):
        sel = differ & (trusted == i)
        col = TEACHER_COLORS[i % len(TEACHER_COLORS)]
        colors[sel] = col
        legend.insert(i, (f"disagree, {fusion.label.split(' ')[0]} trusted {teacher_display_name(t)}", col,
                          int(sel.sum())))
    return Colouring(colors, f"teacher disagreement ({int(differ.sum()):,} points)", legend)


def _weights(layers: "SceneLayers", artefact: str) -> bool:
    try:
        return layers.payload(artefact).get("weights") is not None
    except SASInputError:
        return False
