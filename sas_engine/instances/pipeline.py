"""Instance stages over the artefact store: proposals, labelling, evaluation (``sas instances``, ``sas eval --task
instances``, ``scripts/instance_report.py``).

Artefacts (per scene, every one stamped with the scene's geometry digest):

* ``instances.proposals`` (kind ``instance_proposals``): the class-agnostic proposals
  (:class:`~sas_engine.instances.proposals.Proposals` payload), made from the scene's ``superpoints`` artefact, the
  mask teacher's regions (teacher weights by content, frames by digest) and the feature cue's artefact (by header
  hash), or read from a file of masks made elsewhere (then named by the file's content);
* ``instances.<features>`` (kind ``instance_labels``): those proposals labelled with a per-point feature artefact
  (:func:`sas_engine.instances.labelling.ensure_labelled`).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from ..errors import SASInputError, StaleArtefactError
from .labelling import LabelConfig, benchmark_predictions, ensure_labelled, labelled_as_numpy
from .metrics import InstanceEvalConfig, evaluate_instances, gt_instance_ids
from .proposals import ARTEFACT, KIND, ProposalConfig, Proposals, compute_proposals

log = logging.getLogger(__name__)

FEATURE_CUES = ("pred3d.student", "fused.sas", "fused.add")
"""Per-point features of the proposals' feature cue, in order of preference: the first the scene has is used (the
same for every labelling source, so that a comparison of sources compares labellings of one proposal set)."""


def label_config_for(features: str) -> LabelConfig:
    """The labelling settings used for a feature source (one setting for all; chosen on the ``tune`` rooms)."""
    return LabelConfig()


def _superpoints(store, scene) -> tuple[np.ndarray, dict]:
    from ..pipeline import ensure_superpoints

    sp = ensure_superpoints(store, scene)
    return sp, store.header(scene.scene_id, "superpoints") or {}


def ensure_proposals(store, scene, cfg: Optional[ProposalConfig] = None, *, compute: bool = True,
                     recompute: bool = False, feature_cues: Sequence[str] = FEATURE_CUES, masks_file=None,
                     timings: Optional[dict] = None, progress: bool = False) -> dict:
    """The scene's ``instances.proposals`` payload with its header (``"__header__"``): read from the store when it
    matches, else computed (``compute``) and saved. ``masks_file`` takes the proposals from a file of masks made
    elsewhere (benchmark / Mask3D ``.txt``, OpenMask3D ``.pt`` / ``.npy``; see :mod:`.adapters`) instead."""
    from ..io.files import file_digest
    from ..scene import frames_digest

    cfg = cfg or ProposalConfig()
    if masks_file is not None:
        from .adapters import read_proposal_file

        mf = Path(masks_file)
        conf = {"file": mf.name, "min_points": cfg.min_points}
        inputs = {"sha": file_digest(mf) if mf.is_file() else None, "scene": scene.scene_id}
        return store.get_or_compute(
            scene.scene_id, ARTEFACT, lambda: read_proposal_file(mf, scene.num_points, cfg.min_points).to_payload(),
            kind=KIND, config=conf, inputs=inputs, geometry=scene.geometry_digest, recompute=recompute, header=True)
    cue = next((c for c in feature_cues if store.header(scene.scene_id, c) is not None), None) \
        if cfg.feature_levels else None
    use_regions = bool(cfg.mask_teacher and len(scene.frames) > 0
                       and (cfg.region_levels or (cfg.region_weight and cue)))
    if not cue and not use_regions:
        raise SASInputError(store.path(scene.scene_id, ARTEFACT),
                            f"no proposal cue for scene {scene.scene_id}: it has none of the feature artefacts "
                            f"{', '.join(feature_cues)} (`sas infer` makes pred3d.student) and no frames for the "
                            "mask teacher's regions")
    sp, sp_header = _superpoints(store, scene)
    teacher = None
    teacher_conf = {}
    if use_regions:
        from ..teachers import build_teacher

        teacher = build_teacher(cfg.mask_teacher)
        teacher_conf = teacher.config()
    conf = {"proposals": dataclasses.asdict(cfg), "teacher": teacher_conf, "feature_cue": cue,
            "dataset": scene.dataset}
    inputs = {"scene": scene.scene_id, "superpoints": sp_header.get("hash"),
              "frames": frames_digest(scene.frames) if use_regions else None,
              "features": (store.header(scene.scene_id, cue) or {}).get("hash") if cue else None}
    key = dict(kind=KIND, config=conf, inputs=inputs, geometry=scene.geometry_digest, header=True)
    if not recompute:
        try:
            got = store.load(scene.scene_id, ARTEFACT, **key)
        except StaleArtefactError as e:
            log.warning("recomputing %s: %s", ARTEFACT, e)
            got = None
        if got is not None:
            return got
    if not compute:
        raise SASInputError(store.path(scene.scene_id, ARTEFACT), "no current instance proposals: run `sas instances "
                                                                  f"{scene.source or scene.scene_id}`")

    def run():
        from .labelling import load_point_features
        from .proposals import _region_map

        feats = mask = None
        if cue:
            feats, mask = load_point_features(store, scene, cue)
        region_fn = (lambda i, frame: _region_map(teacher, np.asarray(frame.color))) if teacher is not None else None
        c = cfg if use_regions else dataclasses.replace(cfg, region_levels=(), region_weight=0.0)
        return compute_proposals(scene, sp, c, region_fn=region_fn, features=feats, feature_mask=mask,
                                 timings=timings, progress=progress).to_payload()

    return store.get_or_compute(scene.scene_id, ARTEFACT, run, recompute=True, **key)


def scene_instances(store, scene, features: str, *, proposal_config: Optional[ProposalConfig] = None,
                    label_config: Optional[LabelConfig] = None, masks_file=None, compute: bool = True,
                    text_encoder=None, feature_cues: Sequence[str] = FEATURE_CUES) -> tuple[Proposals, dict]:
    """(proposals, labelled numpy dict) of one scene for one feature source (both cached in the store)."""
    pp = ensure_proposals(store, scene, proposal_config, compute=compute, masks_file=masks_file,
                          feature_cues=feature_cues)
    lcfg = label_config or label_config_for(features)
    lab = ensure_labelled(store, scene, features, pp, lcfg, text_encoder=text_encoder)
    return Proposals.from_payload(pp, store.path(scene.scene_id, ARTEFACT)), labelled_as_numpy(lab)


def scene_gt(scene) -> np.ndarray:
    """Benchmark ground-truth ids of a scene (needs per-point labels and instances)."""
    if scene.labels is None or scene.instances is None:
        raise SASInputError(scene.source or None, f"scene {scene.scene_id} has no instance ground truth (labels and "
                                                  "instances) to evaluate")
    from ..labels import get_label_set
    from .labelling import benchmark_ids

    lut = benchmark_ids(get_label_set(scene.label_set).names)
    return gt_instance_ids(scene.labels, scene.instances, lut)


def evaluate_instance_sources(scenes: Iterable, store, sources: Sequence[str], *,
                              proposal_config: Optional[ProposalConfig] = None,
                              label_configs: Optional[dict] = None, masks_dir=None,
                              eval_config: InstanceEvalConfig = InstanceEvalConfig(), compute: bool = True,
                              on_missing: str = "error", text_encoder: Optional[str] = None,
                              progress: bool = True) -> dict:
    """AP / AP50 / AP25 of each labelling source over the scenes (one pass, each scene loaded once).

    ``label_configs``: optional ``{source: LabelConfig}``; ``masks_dir``: a folder of ``<scene>.txt`` / ``.pt`` /
    ``.npy`` masks used as the proposals instead of computing them. ``on_missing``: ``error`` or ``skip`` a scene
    whose source artefact is missing (listed under ``missing_scenes``).
    Returns ``{"scenes", "sources": {name: evaluate_instances(...) + missing_scenes + num_predictions}}``."""
    from tqdm import tqdm

    per: dict[str, list] = {s: [] for s in sources}
    missing: dict[str, list] = {s: [] for s in sources}
    npred: dict[str, int] = {s: 0 for s in sources}
    ids = []
    nprops = []
    for scene in tqdm(scenes, desc="instances", unit="scene", disable=not progress):
        gt = scene_gt(scene)
        ids.append(scene.scene_id)
        mf = _masks_file(masks_dir, scene.scene_id) if masks_dir else None
        pp = ensure_proposals(store, scene, proposal_config, compute=compute, masks_file=mf)
        props = Proposals.from_payload(pp)
        nprops.append(len(props))
        for s in sources:
            if store.header(scene.scene_id, s) is None:
                missing[s].append(scene.scene_id)
                if on_missing == "error":
                    raise SASInputError(store.path(scene.scene_id, s), f"source {s!r} is missing for scene "
                                                                       f"{scene.scene_id}")
                continue
            lcfg = (label_configs or {}).get(s) or label_config_for(s)
            lab = labelled_as_numpy(ensure_labelled(store, scene, s, pp, lcfg, text_encoder=text_encoder))
            preds = benchmark_predictions(props, lab, lcfg)
            npred[s] += len(preds)
            per[s].append((gt, preds))
    if not ids:
        raise SASInputError(None, "no scenes to evaluate")
    out = {"scenes": ids, "proposals_per_scene": nprops, "sources": {}}
    for s in sources:
        if per[s]:
            r = evaluate_instances(per[s], eval_config)
        else:
            r = {"ap": None, "ap50": None, "ap25": None, "classes": {}}
        r.update(missing_scenes=missing[s], num_predictions=npred[s])
        out["sources"][s] = r
    return out


def _masks_file(masks_dir, scene_id: str) -> Path:
    d = Path(masks_dir)
    for name in (f"{scene_id}.txt", f"{scene_id}_masks.pt", f"{scene_id}.pt", f"{scene_id}.npy", f"{scene_id}.npz"):
        if (d / name).is_file():
            return d / name
    raise SASInputError(d, f"holds no instance masks for scene {scene_id} (looked for {scene_id}.txt, "
                           f"{scene_id}_masks.pt, {scene_id}.pt, .npy, .npz)")


def markdown_table(results: dict, labels: Optional[dict] = None) -> str:
    """Markdown rows ``| source | AP | AP50 | AP25 |`` (percentages) of :func:`evaluate_instance_sources` results."""
    def f(v):
        return "-" if v is None else f"{100 * v:.1f}"

    rows = ["| source | AP | AP50 | AP25 | predictions |", "|---|---|---|---|---|"]
    for s, r in results["sources"].items():
        name = (labels or {}).get(s, s)
        rows.append(f"| {name} | {f(r['ap'])} | {f(r['ap50'])} | {f(r['ap25'])} | {r.get('num_predictions', '')} |")
    return "\n".join(rows)
