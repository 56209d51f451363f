"""Gaussian stages over the artefact store (``sas gaussians``, ``scripts/gaussian_report.py``, the app).

Artefacts per scene (each stamped with the scene's geometry digest; inputs name earlier artefacts by header hash):

* ``gaussians.fit`` (kind ``gaussians``): the fitted Gaussians (:data:`~.model.PARAMS`), the fitting and held-out
  frame indices and the fit's stats; inputs: the frames digest and the scene's colours.
* ``gaussians.lift.<teacher>`` (kind ``gaussian_features``): the teacher's features lifted onto the Gaussians from the
  fitting frames (``features`` float16 [G, C], ``mask``, ``view_count``).
* ``gaussians.lift.sas``: the capability-guided fusion of the lifted teachers (+ ``weights`` [G, T]).
* ``gaussians.feat.<source>`` (kind ``gaussian_features``): the distilled encoder's features for every Gaussian.
* ``gaussians.eval.<source>.<variant>`` (JSON, kind ``gaussian_eval``): confusion matrices of the rendered
  held-out views (variant ``lifted`` or ``distilled``).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..config import config_dict
from ..errors import SASInputError, StaleArtefactError
from .fit import GaussianFitConfig, fit_gaussians, load_views, split_frames
from .model import Gaussians
from .semantics import GaussianEncoderConfig

log = logging.getLogger(__name__)
KIND_FIT = "gaussians"
KIND_FEAT = "gaussian_features"
KIND_EVAL = "gaussian_eval"
SAS = "sas"
VARIANTS = ("lifted", "distilled")
"""Evaluated feature variants: the lifted (projected) features themselves, and the distilled encoder's."""


def _load(store, scene, name, key) -> Optional[dict]:
    try:
        return store.load(scene.scene_id, name, **key)
    except StaleArtefactError as e:
        log.warning("recomputing %s: %s", name, e)
        return None


def _digest(a) -> str:
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=8).hexdigest()


def ensure_fit(store, scene, cfg: GaussianFitConfig, *, device="cpu", compute: bool = True,
               progress: Optional[Callable[[int, int, float], None]] = None) -> dict:
    """The scene's ``gaussians.fit`` payload (with ``"__header__"``): read when current, else fitted and saved."""
    from ..scene import frames_digest

    scene.require_frames("Gaussian fitting")
    conf = config_dict(cfg)
    conf.pop("rasterizer")  # both rasterisers render the same model
    key = dict(kind=KIND_FIT, config=conf, geometry=scene.geometry_digest, header=True,
               inputs={"scene": scene.scene_id, "frames": frames_digest(scene.frames),
                       "colors": _digest(scene.colors)})
    got = _load(store, scene, "gaussians.fit", key)
    if got is not None:
        return got
    if not compute:
        raise SASInputError(store.path(scene.scene_id, "gaussians.fit"),
                            f"no current Gaussians for {scene.scene_id}: run `sas gaussians fit {scene.source}`")
    fit_idx, held = split_frames(len(scene.frames), cfg.holdout_every)
    views = load_views(scene.frames, fit_idx, cfg.width, cfg.height)
    g, stats = fit_gaussians(scene.points, scene.colors, views, cfg, device=device, progress=progress)
    payload = dict(g.to_payload(), fit_frames=fit_idx, heldout_frames=held, stats=stats)
    store.save(scene.scene_id, "gaussians.fit", payload, kind=KIND_FIT, config=key["config"], inputs=key["inputs"],
               geometry=scene.geometry_digest)
    return store.load(scene.scene_id, "gaussians.fit", **key)


def gaussians_of(fit: dict, source=None) -> Gaussians:
    return Gaussians.from_payload(fit, source)


def _fit_hash(fit: dict) -> str:
    return str(fit["__header__"]["hash"])


def ensure_lift(store, scene, fit: dict, teacher, pcfg, *, compute: bool = True, progress: bool = False) -> dict:
    """``gaussians.lift.<teacher>``: the teacher's features lifted onto the fitted Gaussians (fitting frames only)."""
    from ..geometry import FusionConfig

    name = f"gaussians.lift.{teacher.name}"
    conf = {"teacher": teacher.config(), "fusion": config_dict(FusionConfig.from_preset(scene.dataset)),
            "text_encoder": pcfg.text_encoder or "minilm"}
    key = dict(kind=KIND_FEAT, config=conf, geometry=scene.geometry_digest, header=True,
               inputs={"scene": scene.scene_id, "gaussians": _fit_hash(fit)})
    got = _load(store, scene, name, key)
    if got is not None:
        return got
    if not compute:
        raise SASInputError(store.path(scene.scene_id, name), f"no current {name}: run `sas gaussians semantics`")
    from .semantics import lift_teacher

    t0 = time.perf_counter()
    res = lift_teacher(store, scene, fit["means"].numpy(), teacher, pcfg, list(fit["fit_frames"]), progress)
    payload = {"features": res.features.half(), "mask": res.mask, "view_count": res.view_count,
               "seconds": round(time.perf_counter() - t0, 1)}
    store.save(scene.scene_id, name, payload, kind=KIND_FEAT, config=conf, inputs=key["inputs"],
               geometry=scene.geometry_digest)
    return store.load(scene.scene_id, name, **key)


def ensure_lift_sas(store, scene, lifts: Sequence[dict], names: Sequence[str], table, pcfg, *,
                    compute: bool = True) -> dict:
    """``gaussians.lift.sas``: capability-guided fusion of the lifted teachers (the pipeline's settings)."""
    name = f"gaussians.lift.{SAS}"
    conf = {"teachers": list(names), "tau": pcfg.tau, "weighting": pcfg.weighting, "synth": pcfg.synthesizer,
            "capability": np.nan_to_num(table.select(list(names)), nan=-1).round(6).tolist()}
    key = dict(kind=KIND_FEAT, config=conf, geometry=scene.geometry_digest, header=True,
               inputs={"scene": scene.scene_id, "lifted": [str(x["__header__"]["hash"]) for x in lifts]})
    got = _load(store, scene, name, key)
    if got is not None:
        return got
    if not compute:
        raise SASInputError(store.path(scene.scene_id, name), f"no current {name}: run `sas gaussians semantics`")
    from .semantics import sas_fuse

    res = sas_fuse([x["features"] for x in lifts], [x["mask"] for x in lifts], names, table, pcfg)
    store.save(scene.scene_id, name, {"features": res["features"].half(), "mask": res["mask"],
                                      "weights": res["weights"]},
               kind=KIND_FEAT, config=conf, inputs=key["inputs"], geometry=scene.geometry_digest)
    return store.load(scene.scene_id, name, **key)


def ensure_encoded(store, scene, fit: dict, lifted: dict, source: str, ecfg: GaussianEncoderConfig, *,
                   device="cpu", compute: bool = True) -> dict:
    """``gaussians.feat.<source>``: the encoder distilled on the scene's Gaussians from ``lifted``."""
    name = f"gaussians.feat.{source}"
    key = dict(kind=KIND_FEAT, config=config_dict(ecfg), geometry=scene.geometry_digest, header=True,
               inputs={"scene": scene.scene_id, "gaussians": _fit_hash(fit),
                       "lifted": str(lifted["__header__"]["hash"])})
    got = _load(store, scene, name, key)
    if got is not None:
        return got
    if not compute:
        raise SASInputError(store.path(scene.scene_id, name), f"no current {name}: run `sas gaussians semantics`")
    from .semantics import distill_encoder

    feats, stats = distill_encoder(gaussians_of(fit), lifted["features"], lifted["mask"], ecfg, device=device)
    store.save(scene.scene_id, name, {"features": feats, "mask": torch.ones(len(feats), dtype=torch.bool),
                                      "stats": stats},
               kind=KIND_FEAT, config=key["config"], inputs=key["inputs"], geometry=scene.geometry_digest)
    return store.load(scene.scene_id, name, **key)


def ensure_semantics(store, scene, fit: dict, teachers: Sequence, table, pcfg, ecfg: GaussianEncoderConfig, *,
                     sources: Optional[Sequence[str]] = None, device="cpu", compute: bool = True,
                     log_fn: Callable[[str], None] = log.info) -> dict:
    """Lifted (and, with ``ecfg.distill``, distilled) features of every source: ``{source: {"lifted": payload,
    "distilled": payload | None}}``. Sources: each teacher's name and ``sas`` (needs >= 2 teachers + ``table``)."""
    names = [t.name for t in teachers]
    want = list(sources) if sources is not None else names + ([SAS] if len(names) > 1 else [])
    for s in want:
        if s != SAS and s not in names:
            raise SASInputError(None, f"unknown Gaussian feature source {s!r}: teachers {names} or {SAS!r}")
    need = names if SAS in want else [s for s in want if s in names]
    lifts = {}
    for t in teachers:
        if t.name in need:
            t0 = time.perf_counter()
            lifts[t.name] = ensure_lift(store, scene, fit, t, pcfg, compute=compute)
            log_fn(f"  lifted {t.name} ({time.perf_counter() - t0:.0f} s)")
    if SAS in want:
        if table is None or len(names) < 2:
            raise SASInputError(None, "the sas source needs two or more teachers and their capability table")
        lifts[SAS] = ensure_lift_sas(store, scene, [lifts[n] for n in names], names, table, pcfg, compute=compute)
    out = {}
    for s in want:
        out[s] = {"lifted": lifts[s], "distilled": None}
        if ecfg.distill:
            t0 = time.perf_counter()
            out[s]["distilled"] = ensure_encoded(store, scene, fit, lifts[s], s, ecfg, device=device, compute=compute)
            log_fn(f"  encoder for {s} ({time.perf_counter() - t0:.0f} s)")
    return out


def evaluate_scene(store, scene, fit: dict, feats: dict, text: torch.Tensor, fcfg: GaussianFitConfig,
                   class_names: Sequence[str]) -> dict:
    """Confusion matrices of each source and variant over the scene's held-out views, cached as JSON
    (``gaussians.eval.<source>.<variant>``): ``{source: {variant: int64 [K, K + 1]}}``."""
    from .semantics import class_scores, render_labels, view_confusion

    g = gaussians_of(fit)
    k = len(class_names)
    views = None
    out: dict = {}
    for s, by in feats.items():
        out[s] = {}
        for variant, pay in by.items():
            if pay is None:
                continue
            name = f"gaussians.eval.{s}.{variant}"
            conf = {"render": [fcfg.width, fcfg.height, fcfg.tile], "classes": list(class_names),
                    "text": _digest(text.float().numpy())}
            inputs = {"features": str(pay["__header__"]["hash"]), "gaussians": _fit_hash(fit)}
            try:
                got = store.load_json(scene.scene_id, name, kind=KIND_EVAL, config=conf, inputs=inputs)
            except StaleArtefactError:
                got = None
            if got is None:
                if views is None:
                    views = load_views(scene.frames, list(fit["heldout_frames"]), fcfg.width, fcfg.height)
                    if not views:
                        raise SASInputError(scene.source or None, f"{scene.scene_id} has no held-out frames to "
                                                                  "evaluate (holdout_every = 0?)")
                scores = class_scores(pay["features"], pay["mask"], text)
                conf_m = np.zeros((k, k + 1), dtype=np.int64)
                for v in views:
                    conf_m += view_confusion(render_labels(g, scores, v, fcfg), v, k)
                got = {"confusion": conf_m.tolist(), "views": [v.frame_id for v in views]}
                store.save_json(scene.scene_id, name, got, kind=KIND_EVAL, config=conf, inputs=inputs)
            out[s][variant] = np.asarray(got["confusion"], dtype=np.int64)
    return out


def build_teachers_and_table(pcfg, need_table: bool, store=None):
    """(teachers, capability table or None) of a pipeline config; the table comes from the store (or is shipped)."""
    from ..pipeline import build_teachers, ensure_capability

    teachers = build_teachers(pcfg)
    table = ensure_capability(store, teachers, pcfg) if need_table and len(teachers) > 1 else None
    return teachers, table


def run_scenes(store, scenes, fcfg: GaussianFitConfig, ecfg: GaussianEncoderConfig, pcfg, *,
               sources: Optional[Sequence[str]] = None, device="cpu", evaluate: bool = True,
               log_fn: Callable[[str], None] = print, compute: bool = True) -> dict:
    """Fit, lift, distil and (``evaluate``) score every scene; resumable (each stage is cached; ``compute`` False
    raises :class:`SASInputError` for a scene whose stages are not all stored). Returns
    ``{"scenes": [...], "timing": {scene: {...}}, "confusion": {source: {variant: [K, K+1]}}, "fit": {scene: stats}}``.
    """
    from ..labels import get_label_set
    from ..pipeline import vocabulary_text

    want_sas = sources is None or SAS in sources
    teachers, table = build_teachers_and_table(pcfg, want_sas, store)
    total: dict = {}
    timing: dict = {}
    fits: dict = {}
    ids = []
    text = None
    for i, scene in enumerate(scenes):
        t0, c0 = time.perf_counter(), time.process_time()
        log_fn(f"[{i + 1}] {scene.scene_id}: fitting Gaussians")
        fit = ensure_fit(store, scene, fcfg, device=device, compute=compute)
        t1 = time.perf_counter()
        fits[scene.scene_id] = dict(fit["stats"])
        log_fn(f"  {fit['stats']['num_gaussians']} Gaussians, fit PSNR {fit['stats']['fit_psnr']} dB "
               f"({fit['stats']['seconds']} s when fitted)")
        feats = ensure_semantics(store, scene, fit, teachers, table, pcfg, ecfg, sources=sources, device=device,
                                 log_fn=log_fn, compute=compute)
        t2 = time.perf_counter()
        ids.append(scene.scene_id)
        timing[scene.scene_id] = {"fit_s": fits[scene.scene_id]["seconds"],
                                  "lift_s": {s: float(v["lifted"].get("seconds", 0.0)) for s, v in feats.items()},
                                  "encoder_s": {s: float((v["distilled"] or {}).get("stats", {}).get("seconds", 0.0))
                                                for s, v in feats.items()},
                                  "this_run_s": round(t2 - t0, 1), "fit_this_run_s": round(t1 - t0, 1),
                                  "this_run_cpu_s": round(time.process_time() - c0, 1)}
        if evaluate:
            if text is None:
                text = vocabulary_text(scene.label_set, pcfg)
                names = list(get_label_set(scene.label_set).names)
            conf = evaluate_scene(store, scene, fit, feats, text, fcfg, names)
            for s, by in conf.items():
                for v, c in by.items():
                    total.setdefault(s, {}).setdefault(v, np.zeros_like(c))
                    total[s][v] += c
            log_fn("  " + ", ".join(f"{s}/{v} {_miou(c):.1f}" for s, by in conf.items() for v, c in by.items()))
    return {"scenes": ids, "timing": timing, "fit": fits,
            "confusion": {s: {v: c.tolist() for v, c in by.items()} for s, by in total.items()}}


def _miou(conf) -> float:
    from ..eval.metrics import miou

    return 100.0 * miou(np.asarray(conf))
