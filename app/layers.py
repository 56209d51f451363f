"""What the artefact store holds for a scene, as layers the viewer may show (and nothing else).

Artefact names (see the project's agreed interfaces): ``fused.<teacher>`` (single-teacher 2D fusion, with
``view_count``), ``fused.add`` / ``fused.linear`` / ``fused.sas`` (multi-teacher fusions with per-point ``weights``
[N, T] over ``teachers``), ``pred3d.<run>`` (distilled 3D features), ``superpoints``; shared ``capability.<name>``
JSON tables. A layer is listed only when its file exists, and refused with a clear message when its payload does not
match the scene (wrong point count, missing key) - a layer is never faked.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from sas_engine.errors import SASInputError
from sas_engine.pipeline import PipelineConfig
from sas_engine.scene import Scene
from sas_engine.store import ArtefactStore

log = logging.getLogger(__name__)

FUSIONS = ("sas", "linear", "add")
STUDENT_LAYER = f"pred3d.{PipelineConfig.student_name}"
"""The pipeline's distilled student, the layer queries prefer (other ``pred3d.*`` layers, e.g. ``sas ablate``'s
rows in the same store, come after it)."""
"""Multi-teacher fusion artefacts, best first."""

FUSION_NAMES = {
    "sas": "SAS-fused (capability-guided)",
    "linear": "Linear-fused (fixed weights)",
    "add": "Add-fused (plain mean)",
}


def teacher_display_name(name: str) -> str:
    """The label of a teacher's layers: the engine's :data:`sas_engine.teachers.DISPLAY_NAMES` entry, else the
    registry name itself (a teacher registered by a user without one)."""
    from sas_engine.teachers import DISPLAY_NAMES

    return DISPLAY_NAMES.get(name, name)


@dataclass(frozen=True)
class Layer:
    """One feature layer of a scene.

    Attributes:
        artefact: store name, e.g. ``fused.lseg_compact``.
        kind: ``teacher``, ``fusion`` or ``pred3d``.
        label: what the panel calls it.
        teacher: the teacher's registry name for ``teacher`` layers.
    """

    artefact: str
    kind: str
    label: str
    teacher: Optional[str] = None


class SceneLayers:
    """The layers of one scene: the scene itself (RGB, ground truth) plus what the store holds for it.

    Args:
        scene: the loaded scene (points, colours, optional labels / superpoints / faces).
        store: the artefact store, or ``None`` for a scene without cached artefacts.
    """

    def __init__(self, scene: Scene, store: Optional[ArtefactStore]):
        self.scene = scene
        self.store = store
        self._lock = threading.Lock()
        self._payloads: dict[str, dict] = {}
        self.broken: dict[str, str] = {}
        names = self._names(scene.scene_id)
        teachers = sorted(n[len("fused."):] for n in names if n.startswith("fused.") and n[6:] not in FUSIONS)
        self.layers: list[Layer] = []
        for t in teachers:
            self.layers.append(Layer(f"fused.{t}", "teacher", teacher_display_name(t), t))
        for f in FUSIONS[::-1]:
            if f"fused.{f}" in names:
                self.layers.append(Layer(f"fused.{f}", "fusion", FUSION_NAMES[f]))
        for r in sorted(n[len("pred3d."):] for n in names if n.startswith("pred3d.")):
            self.layers.append(Layer(f"pred3d.{r}", "pred3d", f"distilled 3D ({r})"))
        self.has_superpoint_artefact = "superpoints" in names

    # -- listing -----------------------------------------------------------------------------------------------
    @property
    def scene_id(self) -> str:
        return self.scene.scene_id

    def _names(self, scene_id: Optional[str]) -> set[str]:
        if self.store is None:
            return set()
        d = self.store.scene_dir(scene_id)
        if not d.is_dir():
            return set()
        return {p.stem for p in d.iterdir() if p.suffix == ".pt" and not p.name.startswith(".")}

    @property
    def teachers(self) -> list[Layer]:
        return [l for l in self.layers if l.kind == "teacher"]

    @property
    def fusions(self) -> list[Layer]:
        return [l for l in self.layers if l.kind == "fusion"]

    @property
    def pred3d(self) -> list[Layer]:
        return [l for l in self.layers if l.kind == "pred3d"]

    def usable(self) -> list[Layer]:
        """Layers not found broken so far."""
        return [l for l in self.layers if l.artefact not in self.broken]

    def layer(self, artefact: str) -> Layer:
        for l in self.layers:
            if l.artefact == artefact:
                return l
        raise SASInputError(None, f"scene {self.scene_id} has no layer {artefact!r} in the store")

    def query_layers(self) -> list[Layer]:
        """Feature layers in the order queries prefer them: distilled 3D (the pipeline's student first, before other
        ``pred3d.*`` layers such as an ablation's rows), SAS, Linear, Add, single teachers."""
        order = {"pred3d": 0, "fusion": 1, "teacher": 2}
        rank = {f"fused.{f}": i for i, f in enumerate(FUSIONS)}
        rank[STUDENT_LAYER] = -1
        return sorted(self.usable(), key=lambda l: (order[l.kind], rank.get(l.artefact, 0), l.artefact))

    def dimmed(self) -> np.ndarray:
        """Packed grey colours of the scene (see :func:`app.colors.dimmed_rgb`), computed once."""
        if getattr(self, "_dimmed", None) is None:
            from .colors import dimmed_rgb

            self._dimmed = dimmed_rgb(self.scene.colors)
        return self._dimmed

    def spacing(self) -> float:
        """Median nearest-neighbour distance of the points (metres; from a sample of at most 4000 points)."""
        if getattr(self, "_spacing", None) is None:
            from scipy.spatial import cKDTree

            pts = self.scene.points
            g = np.random.default_rng(0)
            sample = pts[g.choice(len(pts), min(len(pts), 4000), replace=False)]
            d, _ = cKDTree(pts).query(sample, k=2)
            d = d[:, 1][np.isfinite(d[:, 1]) & (d[:, 1] > 0)]
            self._spacing = float(np.median(d)) if d.size else 0.02
        return self._spacing

    @property
    def has_gt(self) -> bool:
        return self.scene.labels is not None

    def capability_tables(self) -> list[str]:
        """Names of shared ``capability.<synthesizer>`` JSON tables in the store."""
        if self.store is None:
            return []
        d = self.store.scene_dir(None)
        if not d.is_dir():
            return []
        return sorted(p.stem for p in d.iterdir() if p.suffix == ".json" and p.stem.startswith("capability."))

    # -- payloads ----------------------------------------------------------------------------------------------
    def payload(self, artefact: str) -> dict:
        """The artefact's payload without its feature matrix (cached; mask, weights, view counts, teachers, config,
        superpoints); :class:`SASInputError` naming the file when unreadable or inconsistent. The features are
        never kept here: :meth:`features` reads them for the app's query engine, which holds the only copy."""
        with self._lock:
            got = self._payloads.get(artefact)
        if got is not None:
            return got
        return self._load(artefact)[0]

    def _load(self, artefact: str) -> tuple[dict, Optional[torch.Tensor]]:
        """(payload without features, features or None), read from the store; the payload is cached."""
        if artefact in self.broken:
            raise SASInputError(None, self.broken[artefact])
        try:
            full = self._read(artefact)
        except SASInputError as e:
            self.broken[artefact] = str(e)
            raise
        feats = full.pop("features", None)
        with self._lock:
            light = self._payloads.setdefault(artefact, full)
        return light, feats

    def _read(self, artefact: str) -> dict:
        if self.store is None:
            raise SASInputError(None, f"no artefact store configured for {self.scene_id}")
        from sas_engine.artefacts import read

        # one checked read (sas_engine.artefacts): store format version, the scene's geometry digest, and the schema
        # of the kind the name implies (fields, dtypes, shapes: N rows, weights [N, T] over T teachers...)
        obj = read(self.store, self.scene_id, artefact, geometry=self.scene.geometry_digest, required=True,
                   header=True)
        if artefact == "superpoints":
            return {"superpoints": obj["superpoints"].numpy().astype(np.int64)}
        feat = obj.get("features")
        if feat is None or feat.ndim != 2:
            raise SASInputError(self.store.path(self.scene_id, artefact), "has no [N, C] 'features' tensor")
        mask = obj.get("mask")
        out = {"features": feat, "config": obj["__header__"].get("config"),
               "mask": np.ones(self.scene.num_points, bool) if mask is None else mask.numpy().astype(bool)}
        for key in ("view_count", "weights", "votes"):
            if obj.get(key) is not None:
                out[key] = obj[key].numpy()
        if obj.get("teachers") is not None:
            out["teachers"] = list(obj["teachers"])
        return out

    def features(self, artefact: str) -> tuple[torch.Tensor, np.ndarray]:
        """(features [N, C] tensor, mask bool [N]) of a feature layer, read from the store on every call (not
        cached: :meth:`app.state.AppState.engine` keeps the one in-memory copy, inside its query engine)."""
        pl, feats = self._load(artefact)
        if feats is None:
            raise SASInputError(self.store.path(self.scene_id, artefact) if self.store else None,
                                "has no [N, C] 'features' tensor")
        return feats, pl["mask"]

    def superpoints(self) -> Optional[np.ndarray]:
        """int64 [N] superpoint ids: the store's ``superpoints`` artefact, else the scene's own, else ``None``."""
        if self.has_superpoint_artefact and "superpoints" not in self.broken:
            try:
                return self.payload("superpoints")["superpoints"]
            except SASInputError as e:  # recorded in self.broken; the scene's own superpoints are used instead
                log.warning("%s: superpoints artefact not used: %s", self.scene_id, e)
        return self.scene.superpoints

    def capability(self, name: str) -> dict:
        """A shared capability table: {teachers, classes, scores [T][K], mode, provenance, images?}."""
        if self.store is None or name not in self.capability_tables():
            raise SASInputError(None, f"no capability table {name!r} in the store")
        from sas_engine.artefacts import read_json

        # one checked read: format version, kind and schema (teachers T, classes K, scores [T, K])
        obj = read_json(self.store, None, name, required=True)
        p = self.store.path(None, name, ".json")
        scores = np.asarray(obj["scores"], dtype=np.float64)
        teachers, classes = [str(t) for t in obj["teachers"]], [str(c) for c in obj["classes"]]
        obj.update(scores=scores, teachers=teachers, classes=classes, path=str(p))
        return obj
