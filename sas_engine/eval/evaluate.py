"""Evaluate named per-point feature sources over a set of scenes -> one results dict.

A *source* is a name plus a loader ``loader(scene) -> FeatureSet | None`` (``None`` = not available for this scene).
:func:`store_source` builds loaders for artefacts of the :class:`~sas_engine.store.ArtefactStore`:

* ``fused.<teacher>``, ``fused.sas``, ``fused.add``, ``fused.linear``: payload ``features`` [N, C] + ``mask`` [N];
* ``pred3d.<run>``: payload ``features`` [N, C] (all points valid unless a ``mask`` is stored), or [A, N, C] for A
  test-time-augmentation passes whose logits are averaged;
* ``A+B`` (e.g. ``fused.lseg_compact+pred3d.run``): OpenScene's 2D-3D ensemble of the two artefacts, per point the
  one with the higher best class score.

:func:`evaluate_sources` is what ``sas eval`` and ``sas ablate`` call: every source is evaluated on every scene
(one pass over the scenes, each loaded once), confusion matrices are summed over scenes, then summarised.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from .. import artefacts
from ..errors import SASInputError
from ..labels import PROMPT_SCENE, LabelSet, get_label_set
from ..scene import Scene
from ..store import ArtefactStore
from .metrics import CONVENTIONS, summarize
from .zeroshot import FeatureSet, as_feature_set, evaluate_features

log = logging.getLogger(__name__)

SourceLoader = Callable[[Scene], Optional[FeatureSet]]
"""``loader(scene) -> FeatureSet | None``: the per-point features of one source for one scene."""

ON_MISSING = ("error", "miss", "skip")
"""What to do when a source has no features for a scene: raise, count every point as a miss, or leave the scene out
of that source's numbers (listed under ``missing_scenes`` either way)."""


EVAL_LABEL_SET = {"nuscenes16": "nuscenes43"}
"""Label set used to evaluate scenes labelled with a given set when none is asked for: nuScenes-16 is queried through
its 43 detailed names (the paper's protocol); every other set evaluates as itself."""


def default_eval_label_set(scene_label_set: str) -> str:
    """The label set to evaluate a scene labelled with ``scene_label_set`` (see :data:`EVAL_LABEL_SET`)."""
    return EVAL_LABEL_SET.get(scene_label_set, scene_label_set)


def _artefact_features(store: ArtefactStore, scene: Scene, name: str) -> Optional[FeatureSet]:
    """The features of a ``fused.*`` / ``pred3d.*`` (any per-point feature kind) artefact made by any config, read
    through :func:`sas_engine.artefacts.read` (format version, kind, shapes and the scene's geometry checked)."""
    obj = artefacts.read(store, scene.scene_id, name, geometry=scene.geometry_digest)
    if obj is None:
        return None
    feats = obj.get("features")
    if feats is None:  # a kind without per-point features (``superpoints``, ``history.*``...)
        raise SASInputError(store.path(scene.scene_id, name), "has no 'features' tensor [N, C] (or [A, N, C])")
    mask = obj.get("mask")
    return as_feature_set(feats, None if mask is None else mask.bool(), name=name)


def store_source(store: ArtefactStore | str | Path, name: str) -> SourceLoader:
    """Loader of a store artefact, or of ``A+B+...`` (2D-3D ensemble, earlier members win ties)."""
    st = store if isinstance(store, ArtefactStore) else ArtefactStore(store)
    parts = [s.strip() for s in name.split("+")]
    if not all(parts):
        raise SASInputError(None, f"bad source name {name!r}")

    def load(scene: Scene) -> Optional[FeatureSet]:
        sets = [_artefact_features(st, scene, p) for p in parts]
        if any(s is None for s in sets):
            return None
        if len(sets) == 1:
            return sets[0]
        return FeatureSet(sets, [None] * len(sets), "max_score", name)

    return load


def _source_list(sources) -> list[tuple[str, SourceLoader]]:
    items = list(sources.items()) if isinstance(sources, Mapping) else list(sources)
    names = [n for n, _ in items]
    if not items:
        raise SASInputError(None, "no sources to evaluate")
    if len(set(names)) != len(names):
        raise SASInputError(None, f"duplicate source names in {names}")
    return items


def evaluate_sources(scenes: Iterable[Scene], sources: Mapping[str, SourceLoader] | Sequence[tuple[str, SourceLoader]],
                     label_set: LabelSet | str, text_emb, *, convention: str = "present", on_missing: str = "error",
                     template: str = PROMPT_SCENE, normalize: bool = True, chunk_size: int = 65536,
                     device: str = "cpu", progress: bool = True, total: Optional[int] = None,
                     meta: Optional[dict] = None) -> dict:
    """Zero-shot evaluation of several feature sources on the same scenes.

    Args:
        scenes: scenes with ground truth (may be a lazy generator; each scene is visited once).
        sources: ``{name: loader}`` or ``[(name, loader), ...]``, in report order.
        label_set: the label set the scenes' labels index into (or its name).
        text_emb: [Q, C] embeddings of ``label_set.prompts(template)`` (see :func:`.zeroshot.text_embeddings`).
        convention: mean convention of ``miou``/``macc`` (``"present"`` or ``"openscene"``; both are always stored).
        on_missing: see :data:`ON_MISSING`.
        template: recorded in the results (the caller built ``text_emb`` with it).
        normalize, chunk_size, device: see :func:`.zeroshot.predict_labels`.
        progress: show a tqdm bar over scenes; ``total`` its length for generators.
        meta: extra JSON-able fields stored under ``"meta"``.

    Returns:
        ``{"label_set", "classes", "template", "convention", "scenes": [ids], "meta", "sources": {name: summary}}``
        where each summary is :func:`.metrics.summarize` of the summed confusion matrix plus ``per_scene``
        (``{scene_id: {"miou", "coverage"}}``) and ``missing_scenes``. Numbers are percentages.
    """
    from tqdm import tqdm

    ls = get_label_set(label_set) if isinstance(label_set, str) else label_set
    if convention not in CONVENTIONS:
        raise SASInputError(None, f"unknown mean convention {convention!r}; known: {', '.join(CONVENTIONS)}")
    if on_missing not in ON_MISSING:
        raise SASInputError(None, f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
    items = _source_list(sources)
    k, q2c = len(ls), ls.query_to_class()
    conf = {n: np.zeros((k, k + 1), np.int64) for n, _ in items}
    per_scene: dict[str, dict] = {n: {} for n, _ in items}
    missing: dict[str, list] = {n: [] for n, _ in items}
    scene_ids: list[str] = []
    if total is None and hasattr(scenes, "__len__"):
        total = len(scenes)  # type: ignore[arg-type]
    for scene in tqdm(scenes, total=total, desc="eval scenes", unit="scene", disable=not progress):
        gt = _scene_gt(scene, ls)
        scene_ids.append(scene.scene_id)
        for name, loader in items:
            fs = loader(scene)
            if fs is None:
                missing[name].append(scene.scene_id)
                if on_missing == "error":
                    raise SASInputError(scene.source or None,
                                        f"source {name!r} has no features for scene {scene.scene_id} (run the stage "
                                        "that produces it, or allow missing scenes)")
                log.warning("source %s has no features for scene %s (%s)", name, scene.scene_id,
                            "counted as misses" if on_missing == "miss" else "skipped")
                if on_missing == "skip":
                    continue
                c = _all_missing(gt, k)
            else:
                if fs.num_points != scene.num_points:
                    raise SASInputError(scene.source or None, f"source {name!r} has {fs.num_points} points, scene "
                                                              f"{scene.scene_id} has {scene.num_points}")
                c = evaluate_features(fs, None, text_emb, gt, num_classes=k, query_to_class=q2c, normalize=normalize,
                                      chunk_size=chunk_size, device=device)
            conf[name] += c
            s = summarize(c, ls.names, convention)
            per_scene[name][scene.scene_id] = {"miou": s["miou"], "coverage": s["coverage"]}
    if not scene_ids:
        raise SASInputError(None, "no scenes to evaluate")
    out_sources = {}
    for name, _ in items:
        s = summarize(conf[name], ls.names, convention)
        s.update(per_scene=per_scene[name], missing_scenes=missing[name])
        out_sources[name] = s
    return {"label_set": ls.name, "classes": list(ls.names), "template": template, "convention": convention,
            "convention_doc": CONVENTIONS[convention], "scenes": scene_ids, "meta": dict(meta or {}),
            "sources": out_sources}


def _scene_gt(scene: Scene, ls: LabelSet) -> np.ndarray:
    if scene.labels is None:
        raise SASInputError(scene.source or None, f"scene {scene.scene_id} has no ground-truth labels to evaluate")
    if scene.label_set != ls.name and tuple(get_label_set(scene.label_set).names) != tuple(ls.names):
        raise SASInputError(scene.source or None, f"scene {scene.scene_id} is labelled with {scene.label_set!r}, "
                                                  f"whose classes differ from {ls.name!r}")
    return scene.labels


def _all_missing(gt: np.ndarray, k: int) -> np.ndarray:
    from .metrics import confusion_matrix

    return confusion_matrix(np.full(gt.shape, -1, np.int64), gt, k)
