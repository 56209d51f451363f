"""How truthful text queries are on scenes with ground truth: heat maps, paraphrases, comma-list segmentations.

Each metric runs twice over the same rooms: with the *plain* behaviour the app had before calibration (cosine as typed,
min-max normalised per scene, threshold 0.5 on that; comma lists by bare argmax through "a {} in a scene") and with
the *calibrated* one (:meth:`sas_engine.query.QueryEngine.relevance` / ``segment_names`` with a
:class:`~sas_engine.query.RelevanceConfig`). ``scripts/tune_relevance.py`` chooses the config on the ``tune`` rooms and
reports both on the ``val`` (demo) rooms.

* **class queries**: each ScanNet-20 prompt name queried alone in every room. *Present* (at least
  :data:`PRESENT_MIN_POINTS` ground-truth points): IoU of the coloured points with the class, and a *hit* when the
  best region (:func:`~sas_engine.query.top_objects`) is mostly that class. *Absent* (no point): *empty* when no
  region passes the threshold - the map is empty and the app says "nothing matches".
* **paraphrases**: descriptions without the class word ("a place to wash hands" -> sink); a hit when the best region
  is mostly one of the target classes, over the rooms holding a target.
* **comma lists**: "chair, table, sofa, bed" scored as a 5-class problem (the 4 names + background = every other
  class); and the 20 class names typed, scored as ScanNet-20 mIoU (background counts as a miss).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..labels import IGNORE, PROMPT_SCENE, SCANNET20, get_label_set
from ..query import (QueryEngine, RelevanceConfig, VocabularyCalibration, find_regions, normalize_heat,
                     top_objects)
from .metrics import class_iou, confusion_matrix, miou

PRESENT_MIN_POINTS = 200
"""A class counts as present in a room from this many ground-truth points (rooms with 1..199 are skipped)."""

PLAIN_THRESHOLD = 0.5
"""The app's old default threshold on the min-max normalised cosine."""

#: Paraphrases the relevance settings were chosen with (``tune`` rooms only): (query, target classes).
PARAPHRASES_TUNE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("somewhere to sleep", ("bed",)),
    ("a seat for one person", ("chair",)),
    ("a long soft seat for several people", ("sofa",)),
    ("where you keep food cold", ("refrigerator",)),
    ("a basin with a tap", ("sink",)),
    ("where you take a bath", ("bathtub",)),
    ("a place to put books", ("bookshelf",)),
    ("a framed painting", ("picture",)),
    ("a glass pane letting light in", ("window",)),
    ("fabric hanging by a window", ("curtain",)),
    ("a surface to write at", ("desk",)),
    ("the ground you walk on", ("floor",)),
    ("a kitchen worktop", ("counter",)),
    ("a storage cupboard", ("cabinet",)),
    ("the way into the room", ("door",)),
    ("a loo", ("toilet",)),
)

#: Paraphrases the results are reported on (never used to choose a setting): (query, target classes).
PARAPHRASES_EVAL: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a place to wash hands", ("sink",)),
    ("somewhere to sit", ("chair", "sofa")),
    ("where I sleep at night", ("bed",)),
    ("a fridge", ("refrigerator",)),
    ("a couch", ("sofa",)),
    ("a cupboard", ("cabinet",)),
    ("shelves full of books", ("bookshelf",)),
    ("a painting", ("picture",)),
    ("drapes", ("curtain",)),
    ("a workstation with a computer", ("desk",)),
    ("a tub to bathe in", ("bathtub",)),
    ("a lavatory", ("toilet",)),
    ("the entrance of the room", ("door",)),
    ("glass to look outside", ("window",)),
    ("somewhere to eat a meal", ("table",)),
    ("the carpet underfoot", ("floor",)),
)

#: A third list, written after the label descriptions (:data:`sas_engine.query_text.NAME_DESCRIPTIONS`) were and
#: before anything was measured with it: the first two lists were known when the descriptions were written, so this is
#: the only paraphrase figure of the descriptions that no wording of theirs was drawn from (query, target classes).
PARAPHRASES_FRESH: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("somewhere to brush my teeth", ("sink",)),
    ("a mattress", ("bed",)),
    ("an armchair", ("chair", "sofa")),
    ("a settee", ("sofa",)),
    ("an exit", ("door",)),
    ("daylight coming in", ("window",)),
    ("a poster", ("picture",)),
    ("something that blocks the sunlight", ("curtain",)),
    ("a cooler for milk", ("refrigerator",)),
    ("a washbasin", ("sink",)),
    ("a WC", ("toilet",)),
    ("a bath", ("bathtub",)),
    ("a place to do homework", ("desk",)),
    ("a chest of drawers", ("cabinet",)),
    ("a collection of novels", ("bookshelf",)),
    ("where you chop vegetables", ("counter",)),
    ("keeps the bathroom floor dry while showering", ("shower curtain",)),
)

FOUR_NAMES = ("chair", "table", "sofa", "bed")
"""The issue's comma list."""


@dataclass
class Room:
    """One scene ready for query metrics.

    Attributes:
        scene_id: the scene.
        engine: a :class:`QueryEngine` with the layer's features set.
        points: float32 [N, 3].
        gt: int64 [N] ScanNet-20 index, :data:`IGNORE` where unlabelled.
        groups: int64 [N] superpoint ids (regions snap to them), or ``None``.
        voxel: region connectivity in metres.
        calibration: the layer's fitted softmax temperature and biases (``None``: uncalibrated defaults).
    """

    scene_id: str
    engine: QueryEngine
    points: np.ndarray
    gt: np.ndarray
    groups: Optional[np.ndarray]
    voxel: float
    calibration: Optional[VocabularyCalibration] = None

    def count(self, cls: str) -> int:
        return int((self.gt == SCANNET20.index(cls)).sum())


def vocabulary() -> list[str]:
    """The demo rooms' label vocabulary: ScanNet-20's prompt names ("other" for otherfurniture)."""
    return list(get_label_set("scannet20").prompt_names)


def _class_of(name: str) -> str:
    return "otherfurniture" if name == "other" else name


def heat_regions(room: Room, text: str, cfg: Optional[RelevanceConfig], threshold: Optional[float] = None,
                 vocab: Optional[Sequence[str]] = None):
    """(coloured bool [N], regions) of one heat-map query: calibrated with ``cfg``, plain when ``cfg`` is None."""
    if cfg is None:
        sim = room.engine.similarity(text)
        thr = PLAIN_THRESHOLD if threshold is None else threshold
        heat, _, _ = normalize_heat(sim)
        regions = top_objects(sim, room.points, thr, 5, groups=room.groups, voxel=room.voxel)
        return np.nan_to_num(heat, nan=-1) >= thr, regions
    rel = room.engine.relevance(text, vocabulary() if vocab is None else vocab, cfg, calibration=room.calibration)
    thr = cfg.threshold if threshold is None else threshold
    regions, shown = find_regions(rel.score, room.points, thr, groups=room.groups, voxel=room.voxel)
    return np.nan_to_num(shown, nan=-1) >= thr, regions[:5]  # what the app colours: exactly the regions


def _majority(room: Room, idx: np.ndarray) -> int:
    g = room.gt[idx]
    g = g[g != IGNORE]
    return int(np.bincount(g.astype(np.int64)).argmax()) if g.size else -1


def class_query_metrics(rooms: Sequence[Room], cfg: Optional[RelevanceConfig],
                        threshold: Optional[float] = None) -> dict:
    """Every ScanNet-20 prompt name queried alone in every room (see the module docstring)."""
    ious, hits, empties, coloured_absent, present_rows, absent_rows = [], [], [], [], [], []
    for room in rooms:
        for name in vocabulary():
            if name == "other":
                continue
            k = SCANNET20.index(name)
            n = room.count(name)
            if 0 < n < PRESENT_MIN_POINTS:
                continue
            col, regions = heat_regions(room, name, cfg, threshold)
            if n == 0:
                empties.append(not regions)
                coloured_absent.append(float(col.mean()))
                absent_rows.append((room.scene_id, name, len(regions), float(col.mean())))
            else:
                gt = room.gt == k
                ious.append(float((col & gt).sum() / max(1, (col | gt).sum())))
                hits.append(bool(regions) and _majority(room, regions[0].indices) == k)
                present_rows.append((room.scene_id, name, ious[-1], hits[-1]))
    return {"present_queries": len(ious), "present_iou": float(np.mean(ious)) if ious else float("nan"),
            "present_hit": float(np.mean(hits)) if hits else float("nan"),
            "absent_queries": len(empties), "absent_empty": float(np.mean(empties)) if empties else float("nan"),
            "absent_coloured": float(np.mean(coloured_absent)) if coloured_absent else float("nan"),
            "absent": absent_rows, "present": present_rows}


def paraphrase_metrics(rooms: Sequence[Room], cfg: Optional[RelevanceConfig], phrases=PARAPHRASES_EVAL,
                       threshold: Optional[float] = None) -> dict:
    """Hit rate of paraphrase queries (best region mostly a target class) over the rooms that hold a target."""
    rows = []
    for room in rooms:
        for text, targets in phrases:
            if max(room.count(t) for t in targets) < PRESENT_MIN_POINTS:
                continue
            _, regions = heat_regions(room, text, cfg, threshold)
            got = _majority(room, regions[0].indices) if regions else -1
            rows.append((room.scene_id, text, SCANNET20[got] if got >= 0 else None,
                         got in [SCANNET20.index(t) for t in targets]))
    return {"queries": len(rows), "hit": float(np.mean([r[3] for r in rows])) if rows else float("nan"),
            "rows": rows}


def list_labels(room: Room, names: Sequence[str], cfg: Optional[RelevanceConfig], groups: bool = False) -> np.ndarray:
    """int64 [N] labels of a comma list (index into ``names``, :data:`BACKGROUND`, -1 = no feature)."""
    if cfg is None:
        return room.engine.segment(list(names), PROMPT_SCENE)[0]
    return room.engine.segment_names(list(names), vocabulary(), cfg, groups=room.groups if groups else None,
                                     calibration=room.calibration).labels


def four_names_metrics(rooms: Sequence[Room], cfg: Optional[RelevanceConfig], names=FOUR_NAMES,
                       groups: bool = False) -> dict:
    """The comma list as a (len(names) + 1)-class problem: each name, plus background = every other class."""
    k = len(names)
    conf = np.zeros((k + 1, k + 2), dtype=np.int64)
    wall_floor_bg, wall_floor = 0, 0
    bed_rows = []
    for room in rooms:
        lab = list_labels(room, names, cfg, groups)
        gt = np.full(room.gt.shape, k, dtype=np.int64)
        for i, n in enumerate(names):
            gt[room.gt == SCANNET20.index(_class_of(n))] = i
        gt[room.gt == IGNORE] = IGNORE
        pred = np.where(lab >= 0, lab, k)  # background and no feature: nothing coloured
        conf += confusion_matrix(pred, gt, k + 1)
        wf = (room.gt == SCANNET20.index("wall")) | (room.gt == SCANNET20.index("floor"))
        wall_floor += int(wf.sum())
        wall_floor_bg += int((wf & (lab < 0)).sum())
        if "bed" in names and room.count("bed") >= PRESENT_MIN_POINTS:
            bed = room.gt == SCANNET20.index("bed")
            bed_rows.append((room.scene_id, int(bed.sum()), int((lab[bed] == list(names).index("bed")).sum())))
    iou = class_iou(conf)
    return {"miou": float(np.nanmean(iou)), "iou": dict(zip(list(names) + ["background"], iou.tolist())),
            "wall_floor_uncoloured": wall_floor_bg / max(1, wall_floor), "bed": bed_rows}


def typed_vocabulary_miou(rooms: Sequence[Room], cfg: Optional[RelevanceConfig], groups: bool = False) -> dict:
    """ScanNet-20 mIoU when the user types the 20 class names (background and no-feature points are misses)."""
    names = vocabulary()
    conf = np.zeros((20, 21), dtype=np.int64)
    for room in rooms:
        lab = list_labels(room, names, cfg, groups)  # negative labels (background, no feature) count as misses
        conf += confusion_matrix(lab, room.gt.astype(np.int64), 20)
    iou = class_iou(conf)
    return {"miou": miou(conf), "iou": dict(zip(SCANNET20, iou.tolist())),
            "background": float(conf[:, 20].sum() / max(1, conf.sum()))}


def vocabulary_cosines(room: Room, cfg: RelevanceConfig) -> np.ndarray:
    """float32 [N, 20] cosine of every point with each vocabulary name's prompt ensemble (``cfg.templates``)."""
    st = room.engine._snapshot()  # noqa: SLF001 - the engine's own consistent scene snapshot
    return room.engine._cosines(st, room.engine._ensemble(st, vocabulary(), cfg))  # noqa: SLF001

