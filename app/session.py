"""One browser tab's state and the actions the panel offers (scene, colour modes, label set, queries, inspection,
export). Gradio handlers and the viser viewer both call these; nothing here imports gradio or viser."""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from sas_engine.errors import SASInputError
from sas_engine.labels import IGNORE, SCANNET20, get_label_set
from sas_engine.query import BACKGROUND, RELEVANCE, apply_template, find_regions, split_queries

from . import colors as C
from .modes import Colouring, labelled, mode_choices, render_mode
from .picking import inspect_point, inspection_markdown, inspection_summary

if TYPE_CHECKING:  # pragma: no cover
    from .state import AppState

TIMING = logging.getLogger("sas.timing")
"""Per-query timing log (DEBUG: one JSON object per query, see :meth:`Session.run_query`);
``benchmarks/bench_page_query.py`` reads it."""


@dataclass
class QueryView:
    """The active query: a heat-map (one text) or a labelled segmentation (several comma-separated names).

    ``heat`` is the calibrated relevance in [0, 1] (:meth:`sas_engine.query.QueryEngine.relevance`), shown on an
    absolute scale; ``labels`` uses :data:`~sas_engine.query.BACKGROUND` for points that match none of the names."""

    kind: str
    text: str
    layer: str
    sim: Optional[np.ndarray] = None
    heat: Optional[np.ndarray] = None
    vmin: float = 0.0
    vmax: float = 1.0
    labels: Optional[np.ndarray] = None
    names: Optional[list[str]] = None
    aliases: Optional[list] = None
    peak: float = float("nan")


class Session:
    """State of one tab: chosen scene, colour modes, label set, active query, last inspected point."""

    def __init__(self, state: "AppState", token: str):
        self.state = state
        self.token = token
        self.lock = threading.RLock()
        self.closed = False
        self.scene_id: Optional[str] = None
        self.mode_a = "rgb"
        self.mode_b: Optional[str] = None
        self.compare = False
        self.vocab: list[str] = []
        self.template = state.template
        self.query: Optional[QueryView] = None
        self.query_layer: Optional[str] = None
        self.threshold = RELEVANCE.threshold
        self.topk = 5
        self.view_a: Optional[Colouring] = None
        self.view_b: Optional[Colouring] = None
        self.objects: list = []
        self.regions_found = 0
        self.objects_serial = 0
        self.known_scenes: list[str] = []
        self.inspection = ""
        self.inspection_short = ""
        self.inspect_serial = 0
        self.version = 0
        self._vocab_set: Optional[str] = None
        self.instances: Optional[dict] = None  # the last "where is it?" answer (app/instances.py), boxes in the viewer
        self.instances_serial = 0
        self.focus: Optional[dict] = None  # the instance the camera was last framed on
        self.focus_serial = 0

    # -- helpers -----------------------------------------------------------------------------------------------
    def layers(self):
        if self.scene_id is None:
            raise SASInputError(None, "no scene selected yet")
        return self.state.layers(self.scene_id)

    def modes(self) -> list[tuple[str, str]]:
        return mode_choices(self.layers()) if self.scene_id else []

    def query_layers(self) -> list[tuple[str, str]]:
        return [(l.label, l.artefact) for l in self.layers().query_layers()] if self.scene_id else []

    def _push(self, geometry: bool = False) -> None:
        self.version += 1
        v = self.state.viewer
        if v is not None and not self.closed:
            v.update(self, geometry=geometry)

    def _render(self) -> None:
        lay = self.layers()
        if self.query is not None:
            self.view_a = self._query_colouring(lay)
        else:
            self.view_a = render_mode(self.state, lay, self.mode_a, self.vocab, self.template)
        self.view_b = (render_mode(self.state, lay, self.mode_b, self.vocab, self.template)
                       if self.compare and self.mode_b else None)

    def _query_colouring(self, lay) -> Colouring:
        q = self.query
        if q.kind == "labels":
            col = labelled(q.labels, q.names, f"query: {q.text}")
            bg = q.labels == BACKGROUND
            col.colors[bg] = C.unpack_rgb(lay.dimmed()[bg])  # matches none of the names: the room stays visible
            col.legend[-1] = ("none of these (room colours, greyed)", C.BACKGROUND_SWATCH, int(bg.sum()))
            col.legend.append(("no feature", C.NO_FEATURE, int((q.labels == -1).sum())))
            return col
        cols = C.heat_colors(q.heat, self.threshold, dimmed=lay.dimmed())
        above = int(np.nansum(q.heat >= self.threshold))
        return Colouring(cols, f"query: {q.text}", [("above threshold", C.heat_lut()[255], above)])

    # -- actions -----------------------------------------------------------------------------------------------
    def select_scene(self, scene_id: object) -> str:
        """Show a scene (resets the query; keeps the label set unless the scene's label set differs)."""
        with self.lock:
            lay = self.state.layers(scene_id)  # unknown scene -> SASInputError
            if lay.scene_id == self.scene_id and self.view_a is not None:
                return f"Scene **{lay.scene_id}**"
            ls = get_label_set(lay.scene.label_set)
            self.scene_id = lay.scene_id
            if not self.vocab or self._vocab_set not in ("custom", ls.name):
                self.vocab = list(ls.prompt_names)
                self._vocab_set = ls.name
            keys = {k for _, k in mode_choices(lay)}
            if self.mode_a not in keys:
                self.mode_a = "rgb"
            if self.mode_b not in keys:
                self.mode_b = None
                self.compare = False
            ql = lay.query_layers()
            self.query_layer = ql[0].artefact if ql else None
            self.query, self.objects = None, []
            self.objects_serial += 1
            self.inspection = ""
            self._render()
            self._push(geometry=True)
            n_layers = len(lay.usable())
            return (f"Scene **{lay.scene_id}**: {lay.scene.num_points:,} points, {n_layers} feature layer(s)"
                    + ("" if n_layers else " - only RGB / ground truth can be shown (no features in the store)"))


    def set_modes(self, mode_a: object, compare: bool = False, mode_b: object = None) -> str:
        """Choose the colour mode of the main view and (when ``compare``) of the side-by-side view."""
        with self.lock:
            keys = {k for _, k in self.modes()}
            pending = bool(compare) and mode_b in (None, "")  # ticked before a second mode was chosen
            if pending:
                compare = False
            for m in (mode_a,) + ((mode_b,) if compare else ()):
                if m not in keys:
                    raise SASInputError(None, f"colour mode {m!r} is not available for this scene")
            old = (self.mode_a, self.compare, self.mode_b, self.query)
            self.mode_a = str(mode_a)
            self.compare = bool(compare)
            self.mode_b = str(mode_b) if compare else self.mode_b
            self.query, self.objects = None, []
            self.objects_serial += 1
            try:
                self._render()
            except SASInputError:
                self.mode_a, self.compare, self.mode_b, self.query = old
                raise
            self._push(geometry=old[1] != self.compare)
            return (f"showing {self.view_a.title}" + (f" | {self.view_b.title}" if self.view_b else "")
                    + (": choose a mode under 'Compare with (right)' to see it side by side" if pending else ""))

    def set_vocab(self, text: object, template: object = None) -> str:
        """Replace the label set (comma-separated names) and optionally the prompt template."""
        with self.lock:
            names = split_queries(text)
            tpl = self.template if template in (None, "") else template
            apply_template(tpl, ["x"])  # validates the placeholder
            self.vocab, self.template = names, str(tpl)
            self._vocab_set = "custom"
            if self.scene_id:
                self._render()
                self._push()
            return f"label set: {len(names)} names, prompt template {self.template!r}"

    def run_query(self, text: object, threshold: Optional[float] = None, topk: Optional[int] = None,
                  layer: Optional[str] = None) -> str:
        """Free-text query: one text -> heat-map + top-k regions; several comma-separated names -> labelling.

        Logs its timing to :data:`TIMING` (DEBUG): milliseconds from the entry to the end of each step (engine =
        text encoding + relevance or labelling, regions, colours, push = the new colours handed to the viewer)."""
        t0 = time.perf_counter()
        with self.lock:
            lay = self.layers()
            if layer:
                lay.layer(layer)
                self.query_layer = layer
            if self.query_layer is None:
                raise SASInputError(None, f"scene {self.scene_id} has no feature layer in the store to query")
            if threshold is not None:
                self.threshold = _check_threshold(threshold)
            if topk is not None:
                self.topk = _check_topk(topk)
            names = split_queries(text)
            eng = self.state.engine(self.scene_id, self.query_layer)
            if len(names) == 1:
                rel = eng.relevance(names[0], self.vocab, RELEVANCE,
                                    calibration=self.state.calibration(self.scene_id, self.query_layer))
                fin = rel.score[np.isfinite(rel.score)]
                top = float(fin.max()) if fin.size else float("nan")
                self.query = QueryView("heat", rel.text, self.query_layer, rel.score, rel.score, 0.0, 1.0,
                                       aliases=rel.aliases, peak=top)
                t1 = time.perf_counter()
                self._objects()
            else:
                seg = self.state.query_segmentation(self.scene_id, self.query_layer, names, self.vocab)
                self.query = QueryView("labels", ", ".join(seg.names), self.query_layer, labels=seg.labels,
                                       names=seg.names, aliases=seg.aliases)
                t1 = time.perf_counter()
                self.objects = []
                self.objects_serial += 1
            t2 = time.perf_counter()
            self._render()
            t3 = time.perf_counter()
            self._push()
            t4 = time.perf_counter()
            if TIMING.isEnabledFor(logging.DEBUG):
                TIMING.debug(json.dumps({"text": self.query.text, "kind": self.query.kind, **{
                    f"{k}_ms": round((b - a) * 1000, 2) for k, a, b in (
                        ("engine", t0, t1), ("regions", t1, t2), ("colours", t2, t3), ("push", t3, t4),
                        ("total", t0, t4))}}))
            where = lay.layer(self.query_layer).label
            if self.query.kind == "heat":
                return self._heat_message(where)
            bg = int((self.query.labels == BACKGROUND).sum())
            n = int((self.query.labels != -1).sum())
            return (f"labelled {len(names)} names on {where}; {bg:,} of {n:,} points ({100 * bg / max(1, n):.0f}%) "
                    "match none of them well and stay grey")

    def set_threshold(self, threshold: object, topk: object = None) -> str:
        """Move the heat-map threshold (colours only; the similarity is not recomputed)."""
        with self.lock:
            self.threshold = _check_threshold(threshold)
            if topk is not None:
                self.topk = _check_topk(topk)
            if self.query is None or self.query.kind != "heat":
                return f"threshold {self.threshold:.2f} (applies to the next query)"
            self._objects()
            self._render()
            self._push()
            return self._heat_message(self.layers().layer(self.query.layer).label)

    def _heat_message(self, where: str) -> str:
        q = self.query
        peak = q.peak
        via = f" (answered through the label{'s' if len(q.aliases) > 1 else ''} {', '.join(q.aliases)})" \
            if q.aliases else ""
        if not self.regions_found:
            if np.isfinite(peak) and peak >= self.threshold:
                return (f"Nothing matches '{q.text}' here: no region on {where} reaches the threshold "
                        f"{self.threshold:.2f} (only scattered points do, up to {peak:.2f}){via}")
            return (f"Nothing matches '{q.text}' here: the highest relevance on {where} is {peak:.2f}, below the "
                    f"threshold {self.threshold:.2f}{via}")
        return (f"'{q.text}' on {where}: {self.regions_found} region(s) with relevance ≥ {self.threshold:.2f} "
                f"(highest {peak:.2f}){via}")

    def clear_query(self) -> str:
        with self.lock:
            self.query, self.objects = None, []
            self.objects_serial += 1
            if self.scene_id:
                self._render()
                self._push()
            return "query cleared"

    def _objects(self) -> None:
        """The regions above the threshold; the map shows exactly them (superpoint-averaged relevance), so an empty
        region list is an empty map."""
        lay = self.layers()
        q = self.query
        regions, q.heat = find_regions(q.sim, lay.scene.points, self.threshold, groups=lay.superpoints(),
                                       voxel=max(0.02, 2.5 * lay.spacing()))
        self.objects = regions[: self.topk]
        self.regions_found = len(regions)
        self.objects_serial += 1

    def inspect(self, index: object) -> str:
        """Inspect point ``index``; the markdown is kept for the panel's poll and returned."""
        with self.lock:
            try:
                i = int(index)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise SASInputError(None, f"point index must be a whole number, got {index!r}") from None
            if isinstance(index, float) and index != i:
                raise SASInputError(None, f"point index must be a whole number, got {index!r}")
            info = inspect_point(self.state, self.layers(), i, self.vocab, self.template)
            self.inspection = inspection_markdown(info)
            self.inspection_short = inspection_summary(info)
            self.inspect_serial += 1
            return self.inspection

    # -- panel views -------------------------------------------------------------------------------------------
    def legend_html(self) -> str:
        with self.lock:
            parts = []
            for tag, v in (("left", self.view_a), ("right", self.view_b)):
                if v is not None and v.legend:
                    title = f"{tag}: {v.title}" if self.view_b is not None else v.title
                    parts.append(C.legend_html(title, v.legend))
            return "<div style='display:flex;gap:16px'>" + "".join(parts) + "</div>" if parts else ""

    def colorbar_html(self) -> str:
        with self.lock:
            q = self.query
            if q is None or q.kind != "heat" or not np.isfinite(q.vmin):
                return ""
            return C.colorbar_html(q.vmin, q.vmax, self.threshold, label="relevance")

    def objects_rows(self) -> list[list]:
        """Rows (rank, points, mean relevance, peak relevance, centre) of the top-k regions."""
        with self.lock:
            return [[i + 1, h.size, round(h.score, 4), round(h.peak, 4), [round(float(c), 2) for c in h.center]]
                    for i, h in enumerate(self.objects)]

    # -- instances ("where is it?") ---------------------------------------------------------------------------
    def find_instances(self, text: object, layer: Optional[str] = None) -> str:
        """Answer a text with the scene's matching instances (ranked; their boxes drawn in the viewer) and a
        "how many" line. ``layer``: the features to label with (default: the query layer)."""
        from .instances import answer_instances, question_text, status_line

        with self.lock:
            if self.scene_id is None:
                raise SASInputError(None, "no scene selected yet")
            q = question_text(text)
            ans = answer_instances(self.state, self.scene_id, q, layer or self.query_layer, include_points=False)
            self.instances = ans
            self.instances_serial += 1
            self.focus = None
            self._push()
            return status_line(ans)

    def frame_instance(self, rank: object) -> str:
        """Frame the viewer's camera on instance ``rank`` (1-based) of the last answer."""
        with self.lock:
            ans = self.instances
            if ans is None or ans.get("scene") != self.scene_id or not ans["instances"]:
                raise SASInputError(None, "no instances listed: find some first")
            try:
                r = int(rank)
            except (TypeError, ValueError):
                raise SASInputError(None, f"instance rank must be a number, got {rank!r}") from None
            if not 1 <= r <= len(ans["instances"]):
                raise SASInputError(None, f"instance #{r} is not listed (1..{len(ans['instances'])})")
            self.focus = ans["instances"][r - 1]
            self.focus_serial += 1
            self._push()
            c = ", ".join(f"{v:.2f}" for v in self.focus["centroid"])
            return f"framed instance #{r} ({self.focus['label']}, score {self.focus['score']:.2f}) at ({c}) m"

    def clear_instances(self) -> str:
        with self.lock:
            self.instances, self.focus = None, None
            self.instances_serial += 1
            self._push()
            return "instances cleared"

    def instance_rows(self) -> list[list]:
        from .instances import instance_rows

        with self.lock:
            if self.instances is None or self.instances.get("scene") != self.scene_id:
                return []
            return instance_rows(self.instances)

    # -- export ------------------------------------------------------------------------------------------------
    def export(self) -> tuple[Path, Optional[Path], str]:
        """Write the main view's colouring as PLY (plus ``label`` when it is a labelling) and, for labellings, the
        ScanNet benchmark file (one NYU40 id per vertex). Returns (ply path, txt path or None, message)."""
        from sas_engine.io.ply import write_ply
        from sas_engine.io.writers import write_scannet_submission

        with self.lock:
            lay = self.layers()
            v = self.view_a
            if v is None:
                raise SASInputError(None, "nothing to export yet")
            if self.closed:
                raise SASInputError(None, "this page's session has expired: reload the page")
            scene = lay.scene
            out = self.state.session_export_dir(self.token)  # deleted with the session (AppState.drop_session)
            tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", v.title)[:40].strip("_") or "view"
            xyz = scene.to_source_frame(scene.points).astype(np.float32)  # the user's frame, to overlay their capture
            vertex = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                      "red": v.colors[:, 0], "green": v.colors[:, 1], "blue": v.colors[:, 2]}
            if v.labels is not None:
                vertex["label"] = np.where((v.labels >= 0) & (v.labels < 255), v.labels, IGNORE).astype(np.uint8)
            ply = write_ply(out / f"{scene.scene_id}_{tag}.ply", vertex, scene.faces)
            msg = f"exported {scene.num_points:,} coloured points to {ply.name}"
            if v.labels is None:
                return ply, None, msg + " (this view is not a labelling: no benchmark file)"
            idx20 = scannet20_index(v.names)
            pred = np.where(v.labels >= 0, idx20[np.clip(v.labels, 0, None)], IGNORE)
            txt = write_scannet_submission(out / "benchmark", scene.scene_id, pred.astype(np.int64), ignore_id=0)
            unmapped = [n for n, j in zip(v.names, idx20) if j == IGNORE]
            msg += f"; benchmark labels to benchmark/{txt.name}"
            if unmapped or (pred == IGNORE).any():
                msg += (f" ({int((pred == IGNORE).sum()):,} points without a ScanNet-20 class written as 0"
                        + (f"; names outside ScanNet-20: {', '.join(unmapped[:5])}" if unmapped else "") + ")")
            return ply, txt, msg


def scannet20_index(names: Optional[list[str]]) -> np.ndarray:
    """int64 [K] ScanNet-20 index of each name (``other`` = otherfurniture), 255 where the name is not a class."""
    table = {n: i for i, n in enumerate(SCANNET20)}
    table.update({"other": 19, "other furniture": 19})
    return np.array([table.get(str(n).strip().lower(), IGNORE) for n in names or []], dtype=np.int64)


def _check_threshold(t: object) -> float:
    try:
        v = float(t)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SASInputError(None, f"threshold must be a number in [0, 1], got {t!r}") from None
    if not 0.0 <= v <= 1.0:
        raise SASInputError(None, f"threshold must be in [0, 1], got {v}")
    return v


def _check_topk(k: object) -> int:
    try:
        v = int(k)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SASInputError(None, f"top-k must be a whole number, got {k!r}") from None
    if not 0 <= v <= 50:
        raise SASInputError(None, f"top-k must be in 0..50, got {v}")
    return v
