"""The SAS pipeline end to end for one scene or a split, with every stage cached in the artefact store.

Stages (each skipped when its artefact exists with the same config; recomputed when stale):

1. ``superpoints``                       - official segs.json or the mesh segmentation (:mod:`.geometry.superpoints`);
2. ``feat2d.<teacher>.*`` per frame        - each 2D teacher over the frames (:func:`.teachers.cache.extract_scene`);
3. ``fused.<teacher>``                     - multi-view fusion of each teacher + per-point class votes;
4. ``capability.<synthesizer>`` (shared)   - annotation-free capability table of the teachers;
5. ``fused.sas`` / ``fused.add`` / ``fused.linear`` - capability-guided fusion and the two baselines;
6. ``pred3d.<student>``                    - the distilled 3D student's per-point features (when a checkpoint exists).

The ``sas`` subcommands run single stages; :func:`run_scene` and :func:`build_demo` chain them.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .config import config_dict, config_hash
from .io.files import file_digest
from .labels import PROMPT_SCENE, get_label_set
from .store import ArtefactStore

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
COMBINED_MODES = ("sas", "add", "linear")
Progress = Callable[[float, str], None]


@dataclass
class PipelineConfig:
    """Settings of a full pipeline run (defaults: the embedded demo with the shipped compact teachers)."""

    teachers: tuple[str, ...] = ("lseg_compact", "seem_compact", "odise_compact")
    """Registry names of the 2D teachers (first = the dense, LSeg-like one by convention; the demo's three compact
    teachers, each trained on its own data source)."""
    synthesizer: str = "rooms"
    """Capability synthesizer: ``rooms`` (generated rooms framed on an instance of the class, exact instance masks),
    ``synthetic`` (the object alone on a plain background) or ``sd`` (Stable Diffusion + SAM)."""
    capability_images: int = 50
    """Synthesized images per class (the release's m = 50)."""
    capability_mode: str = "pooled"
    """IoU variant of the capability: ``pooled`` (release) or ``per_image`` (paper Eq. 3)."""
    capability_seed: int = 0
    """Seed of the synthesized images."""
    tau: float = 0.02
    """Temperature of capability-guided fusion (release 0.05). 0.02 was the best of 0.02 / 0.05 / 0.1 / 0.2 on the
    points of 6 teaching rooms with the three compact teachers (32.7 mIoU vs 32.1 at 0.05, 30.1 at 0.2;
    ``sas ablate --part fusion``, ``assets/fusion/fusion.md``), never chosen on the validation rooms."""
    weighting: str = "normalized"
    """Teacher weight at a point: ``mean`` of capabilities at the voted classes (paper) or ``normalized`` (release:
    divided by the sum over teachers; chosen with ``tau`` on the teaching rooms, 32.7 vs 32.6 for ``mean``)."""
    catch_all: Optional[str] = None
    """``TEACHER:CLASS``: points that TEACHER labels CLASS keep TEACHER's feature (the release's ``lseg:other`` rule)."""
    text_encoder: Optional[str] = None
    """Text encoder spec shared by the teachers (None = the packaged MiniLM)."""
    student_checkpoint: str = str(ROOT / "checkpoints" / "student_synthetic.pt")
    """Distilled 3D student used for ``pred3d.<student_name>`` (skipped when the file does not exist)."""
    student_name: str = "student"
    """Suffix of the student's artefact."""
    device: str = "cpu"
    """Torch device of every stage."""
    teacher_kwargs: dict = field(default_factory=dict)
    """Per-teacher builder keyword arguments (checkpoint paths of real teachers...)."""
    cache_frames: bool = False
    """Keep each teacher's per-frame outputs in the store (``feat2d.*``, what ``sas extract`` writes) before fusing.
    Off by default: fusion runs the teachers frame by frame and keeps nothing (a dense map is 3.7 MB per frame);
    a cache that ``sas extract`` already made with the same teacher weights and frames is used either way."""


def _report(progress: Optional[Progress], frac: float, msg: str) -> None:
    log.info(msg)
    if progress is not None:
        progress(float(frac), msg)


def vocabulary_text(label_set: str, cfg: PipelineConfig) -> torch.Tensor:
    """L2-normalised text embeddings [K, C] of a label set's prompts ("a {} in a scene")."""
    from .teachers import get_text_encoder

    enc = get_text_encoder(cfg.text_encoder, device=cfg.device)
    return enc.encode_persistent(get_label_set(label_set).prompts(PROMPT_SCENE))


# -- stage 1 ---------------------------------------------------------------------------------------------------
def ensure_superpoints(store: ArtefactStore, scene) -> np.ndarray:
    """Superpoint ids int64 [N], cached as ``superpoints``."""
    from .geometry.superpoints import SuperpointConfig, superpoints_for_scene

    sp_cfg = SuperpointConfig.from_preset(scene.dataset)
    got = store.get_or_compute(
        scene.scene_id, "superpoints",
        lambda: {"superpoints": torch.as_tensor(superpoints_for_scene(scene, sp_cfg), dtype=torch.int64)},
        kind="superpoints", config=sp_cfg, geometry=scene.geometry_digest,
        inputs={"scene": scene.scene_id, "official": _array_digest(scene.superpoints),
                "faces": _array_digest(scene.faces), "normals": _array_digest(scene.normals)})
    return got["superpoints"].numpy()


def _array_digest(a) -> Optional[str]:
    import hashlib

    if a is None:
        return None
    return hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=8).hexdigest()


# -- stages 2 + 3 ------------------------------------------------------------------------------------------------
def teacher_source(store: ArtefactStore, scene, teacher, cfg: PipelineConfig):
    """The fusion feature source of one teacher on one scene: ``sas extract``'s cache when it is complete and was
    made with this teacher's weights and these frames, else the teacher run frame by frame (cached first when
    ``cfg.cache_frames``)."""
    from .teachers.cache import (ExtractConfig, cached_feature_source, extract_config, extract_scene, scene_done,
                                 streamed_feature_source)

    scene.require_frames(f"teacher {teacher.name}")
    teacher = teacher.for_scene(scene.scene_id)
    ecfg = ExtractConfig(text_encoder=cfg.text_encoder)
    _, econf, enc, cap = extract_config(teacher, ecfg, scene=scene)
    if cfg.cache_frames and not scene_done(store, scene.scene_id, teacher.name, econf):
        extract_scene(scene, teacher, store, ecfg, text_encoder=enc, captioner=cap)
    if scene_done(store, scene.scene_id, teacher.name, econf):
        return cached_feature_source(store, scene, teacher.name, device=cfg.device)
    return streamed_feature_source(scene, teacher, ecfg, text_encoder=enc, captioner=cap, device=cfg.device)


def fuse_source(store: ArtefactStore, scene, name: str, source, cfg: PipelineConfig, vocab_text: torch.Tensor,
                progress: bool = True) -> dict:
    """``fused.<name>``: multi-view fusion of a feature source (:func:`teacher_source`) onto the scene's points, with
    per-point class votes of the individual views. Cached; the artefact records the points' geometry digest and the
    source's extraction config (teacher weights by content, frames digest), and is returned with its header."""
    from .capability.artefacts import KIND, save_single
    from .errors import StaleArtefactError
    from .geometry import FusionConfig, fuse_features

    fcfg = FusionConfig.from_preset(scene.dataset)
    conf = {"fusion": config_dict(fcfg), "dataset": scene.dataset, "teacher": name, "extract": source.config,
            "votes": get_label_set(scene.label_set).name}
    key = dict(kind=KIND, config=conf, inputs={"scene": scene.scene_id}, geometry=scene.geometry_digest, header=True)
    try:
        got = store.load(scene.scene_id, f"fused.{name}", **key)
    except StaleArtefactError as e:
        log.warning("recomputing fused.%s: %s", name, e)
        got = None
    if got is not None:
        return got
    text = vocab_text.to(cfg.device)

    def vote(feat: torch.Tensor) -> torch.Tensor:
        if feat.shape[-1] != text.shape[1]:
            from .errors import SASInputError

            raise SASInputError(None, f"teacher {name!r} gives {feat.shape[-1]}-d features but the text encoder "
                                      f"({cfg.text_encoder or 'minilm'}) gives {text.shape[1]}-d embeddings: pass "
                                      "the --text-encoder of the teacher's space (see the README's 'Real weights')")
        return (torch.nn.functional.normalize(feat.float(), dim=-1) @ text.T).argmax(1)

    res = fuse_features(scene.points, scene.frames, source, fcfg, device=cfg.device, vote_fn=vote,
                        num_classes=text.shape[0], progress=progress)
    save_single(store, scene.scene_id, name, res, {k: v for k, v in conf.items() if k != "teacher"},
                geometry=scene.geometry_digest)
    return store.load(scene.scene_id, f"fused.{name}", **key)


def fuse_teacher(store: ArtefactStore, scene, teacher, cfg: PipelineConfig, vocab_text: torch.Tensor,
                 progress: bool = True) -> dict:
    """Stages 2 + 3 for one teacher: ``fused.<teacher>`` (see :func:`fuse_source`)."""
    return fuse_source(store, scene, teacher.name, teacher_source(store, scene, teacher, cfg), cfg, vocab_text,
                       progress)


# -- stage 4 -----------------------------------------------------------------------------------------------------
def ensure_capability(store: ArtefactStore, teachers: Sequence, cfg: PipelineConfig, label_set: str = "scannet20",
                      progress: Optional[Callable[[int, int], None]] = None):
    """The shared capability table of ``teachers`` (computed once, then read from the store); ``progress(done,
    total)`` follows the scoring of the synthesized images when it is computed."""
    from .capability import build_synthesizer, load_capability_table, save_capability_table, score_capabilities
    from .capability.table import KIND
    from .errors import StaleArtefactError
    from .teachers import get_text_encoder

    labels = get_label_set(label_set)
    words = list(labels.prompt_names)
    names = [t.name for t in teachers]
    synth = build_synthesizer(cfg.synthesizer)
    conf = {"synth": cfg.synthesizer, "synth_version": getattr(synth, "version", 1), "teachers": names,
            "m": cfg.capability_images, "seed": cfg.capability_seed, "vocab": labels.name, "mode": cfg.capability_mode,
            "text_encoder": cfg.text_encoder or "minilm", "teacher_configs": [t.config() for t in teachers]}
    name = f"capability.{cfg.synthesizer}"
    inputs = {"teachers": names, "classes": list(labels.names)}
    try:
        if store.load_json(None, name, kind=KIND, config=conf, inputs=inputs):
            return load_capability_table(store, cfg.synthesizer)
    except StaleArtefactError as e:
        log.warning("recomputing %s: %s", name, e)
    from .capability.shipped import install_shipped_table

    if install_shipped_table(store, name, conf, inputs):
        return load_capability_table(store, cfg.synthesizer)
    # the synthetic world renders classes by name; Stable Diffusion prompts the prompt word ("other")
    by_name = bool(getattr(synth, "by_class_name", False))
    asked = list(labels.names) if by_name else words
    keep = [k for k, n in enumerate(labels.names) if by_name or n != "otherfurniture"]
    images = synthesized_images(store, synth, [asked[k] for k in keep], cfg.capability_images, cfg.capability_seed)
    for im in images:
        im.class_index = keep[im.class_index]
    enc = get_text_encoder(cfg.text_encoder, device=cfg.device)
    table = score_capabilities(teachers, images, words, enc, mode=cfg.capability_mode, progress=progress)
    table.classes, table.words = list(labels.names), words
    table.images = save_gallery(store, cfg.synthesizer, images, teachers, words, labels.names, enc)
    save_capability_table(store, table, cfg.synthesizer, config=conf)
    return table


def synthesized_images(store: ArtefactStore, synth, classes: Sequence[str], m: int, seed: int) -> list:
    """``synth.synthesize(classes, m, seed)``, cached in the store's shared folder for the synthesizers whose images
    depend only on these arguments (the synthetic world's: ``by_class_name``), so that a table for other teachers,
    or one built after the images were rendered ahead of the teachers, does not render them again."""
    from .capability.synthesizer import SynthImage

    if not getattr(synth, "by_class_name", False):
        return synth.synthesize(list(classes), m, seed)
    conf = {"synth": synth.name, "version": getattr(synth, "version", 1), "size": list(getattr(synth, "size", ())),
            "classes": list(classes), "m": int(m), "seed": int(seed)}
    name = f"capimages.{synth.name}"

    def compute():
        ims = synth.synthesize(list(classes), m, seed)
        return {"images": torch.as_tensor(np.stack([im.image for im in ims])),
                "masks": torch.as_tensor(np.stack([im.mask for im in ims])),
                "classes": torch.as_tensor([im.class_index for im in ims], dtype=torch.int64),
                "provenance": [dict(im.provenance) for im in ims]}

    got = store.get_or_compute(None, name, compute, kind="capability_images", config=conf)
    return [SynthImage(img.numpy(), msk.numpy(), int(k), dict(p))
            for img, msk, k, p in zip(got["images"], got["masks"], got["classes"], got["provenance"])]


def save_gallery(store: ArtefactStore, synth: str, images: Sequence, teachers: Sequence, words: Sequence[str],
                 classes: Sequence[str], enc, per_class: int = 3) -> list[dict]:
    """Write the first ``per_class`` synthesized images of each class (JPEG) and their pseudo masks (PNG) into the
    store's shared folder, with each teacher's IoU on that image; returns the table's ``images`` list."""
    import io

    from PIL import Image

    from .capability.scoring import iou_counts, teacher_logits
    vocab = enc.encode([PROMPT_SCENE.format(w) for w in words])
    seen: dict[int, int] = {}
    out = []

    def png(arr) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG", optimize=True)
        return buf.getvalue()

    def jpeg(arr) -> bytes:  # the gallery is shipped with the table (capability/shipped.py): keep it small
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=88)
        return buf.getvalue()

    for im in images:
        k = int(im.class_index)
        i = seen.get(k, 0)
        if i >= per_class:
            continue
        seen[k] = i + 1
        stem = f"capimg.{synth}.{k:03d}.{i}"
        store.write_bytes(None, f"{stem}.jpg", jpeg(np.asarray(im.image, dtype=np.uint8)))
        store.write_bytes(None, f"{stem}.mask.png", png(np.asarray(im.mask, dtype=np.uint8) * 255))
        ious = {}
        for t in teachers:
            logits, valid = teacher_logits(t, im.image, vocab, enc)
            pred = (logits.argmax(-1) == k) & valid
            inter, union = iou_counts(pred.numpy(), np.asarray(im.mask, dtype=bool))
            ious[t.name] = round(inter / union, 4) if union else 0.0
        out.append({"class": classes[k], "image": f"{stem}.jpg", "mask": f"{stem}.mask.png", "ious": ious})
    return out


# -- stage 5 -----------------------------------------------------------------------------------------------------
def fuse_combined(store: ArtefactStore, scene, mode: str, fused: Sequence[dict], names: Sequence[str], table,
                  cfg: PipelineConfig, out: Optional[str] = None) -> dict:
    """``fused.<mode>`` for mode ``sas`` (capability-guided), ``add`` (mean) or ``linear`` (fixed global weights).

    ``fused`` are the teachers' ``fused.<teacher>`` payloads with their headers (as :func:`fuse_source` and
    :func:`sas_engine.capability.artefacts.load_any` return them): the combination records their hashes, so it is
    stale as soon as any of them changed. ``table`` (the capability table) is needed by ``sas`` and ``linear`` only.
    The per-point argmax classes of capability-guided fusion index the capability table's vocabulary. ``out``
    stores the result under that artefact name instead (studies of other teacher sets, tables or temperatures:
    ``study.<variant>``, which the app does not list as layers)."""
    from .capability import add_fuse, capability_fuse, linear_fuse
    from .capability.artefacts import KIND, save_fused
    from .errors import SASInputError, StaleArtefactError

    if mode not in COMBINED_MODES:
        raise SASInputError(None, f"unknown fusion mode {mode!r}; known: {', '.join(COMBINED_MODES)}")
    if mode != "add" and table is None:
        raise SASInputError(None, f"fusion mode {mode!r} needs a capability table; build one with `sas capability "
                                  f"--teachers {','.join(names)}` (mode 'add' needs none)")
    conf: dict = {"teachers": list(names)}
    if mode != "add":
        conf["synth"] = cfg.synthesizer
    if mode == "sas":
        conf.update(tau=cfg.tau, weighting=cfg.weighting, catch_all=cfg.catch_all,
                    capability=np.nan_to_num(table.select(list(names)), nan=-1).round(6).tolist())
    if mode == "linear":
        conf["linear_weights"] = list(table.linear_weights or [])
    inputs = {"scene": scene.scene_id, "fused": [str((f.get("__header__") or {}).get("hash")) for f in fused]}
    name = out or f"fused.{mode}"
    if out:
        conf["algorithm"] = mode
    key = dict(kind=KIND, config=dict(conf, mode=mode), inputs=inputs, geometry=scene.geometry_digest)
    try:
        got = store.load(scene.scene_id, name, **key)
    except StaleArtefactError as e:
        log.warning("recomputing %s: %s", name, e)
        got = None
    if got is not None:
        return got
    feats = [f["features"] for f in fused]
    masks = [f["mask"] for f in fused]
    if mode == "add":
        res = add_fuse(feats, masks, list(names), device=cfg.device)
    elif mode == "linear":
        w = dict(zip(table.teachers, table.linear_weights or []))
        missing = [t for t in names if t not in w]
        if missing:
            raise SASInputError(None, f"capability.{cfg.synthesizer} has no Linear weight for {missing}")
        res = linear_fuse(feats, masks, [w[t] for t in names], list(names), device=cfg.device)
    elif mode == "sas":
        catch = None
        if cfg.catch_all:
            t, _, c = cfg.catch_all.partition(":")
            if t not in names or c not in table.classes:
                raise SASInputError(None, f"catch-all {cfg.catch_all!r}: need TEACHER:CLASS with TEACHER in {list(names)} "
                                          "and CLASS in the capability table")
            catch = (list(names).index(t), table.classes.index(c))
        from .teachers import get_text_encoder

        text = get_text_encoder(cfg.text_encoder, device=cfg.device).encode(
            [PROMPT_SCENE.format(w) for w in table.prompt_words()])
        res = capability_fuse(feats, masks, table.select(list(names)), text, tau=cfg.tau, catch_all=catch,
                              weighting=cfg.weighting, teachers=list(names), device=cfg.device)
    save_fused(store, scene.scene_id, mode, res, conf, inputs=inputs, geometry=scene.geometry_digest, name=name)
    return store.load(scene.scene_id, name, **key)


# -- stage 6 -----------------------------------------------------------------------------------------------------
def ensure_student(store: ArtefactStore, scene, cfg: PipelineConfig, checkpoint: Optional[str | Path] = None,
                   name: Optional[str] = None, model: Optional[str] = None, tta: int = 0) -> Optional[dict]:
    """``pred3d.<name>`` from a student checkpoint (default: the configured one); ``None`` when it does not exist.

    ``model`` names the network preset of checkpoints that do not record it (OpenScene/SAS releases); ``tta`` adds
    test-time augmentation passes."""
    from .config import get_preset
    from .distill.infer import infer_points, load_student

    ck = Path(checkpoint or cfg.student_checkpoint)
    name = name or cfg.student_name
    if not ck.is_file():
        log.info("no student checkpoint at %s: skipping pred3d.%s", ck, name)
        return None
    conf = {"checkpoint": ck.name, "sha": file_digest(ck), "tta": int(tta), "model": model}

    def compute():
        net, meta = load_student(ck, model=model, device=cfg.device)
        voxel = meta.get("voxel_size") or get_preset(scene.dataset).voxel_size
        return {"features": infer_points(net, scene.points, voxel, device=cfg.device, tta=tta, colors=scene.colors)}

    return store.get_or_compute(scene.scene_id, f"pred3d.{name}", compute, kind="pred3d", config=conf,
                                inputs={"scene": scene.scene_id}, geometry=scene.geometry_digest)


# -- orchestration -----------------------------------------------------------------------------------------------
def build_teachers(cfg: PipelineConfig) -> list:
    from .teachers import build_teacher

    return [build_teacher(n, **cfg.teacher_kwargs.get(n, {})).to(cfg.device) for n in cfg.teachers]


def fusion_artefacts(teachers: Sequence) -> list[str]:
    """Names of the fusion artefacts :func:`run_scene` stores for a scene with frames: one ``fused.<teacher>`` per
    teacher, and the combined modes when there are several teachers."""
    names = [f"fused.{t.name}" for t in teachers]
    return names + ([f"fused.{m}" for m in COMBINED_MODES] if len(teachers) > 1 else [])


def run_scene(store: ArtefactStore, scene, cfg: PipelineConfig, teachers: Sequence, table,
              progress: bool = True, student: bool = True) -> list[str]:
    """Stages 1, 2-3, 5 and 6 for one scene (the capability table is computed once per run). Returns the artefact
    names now present for the scene."""
    ensure_superpoints(store, scene)
    made = ["superpoints"]
    if len(scene.frames) == 0:
        log.info("%s has no RGB-D frames: the 2D teacher and fusion stages are skipped (they need images); "
                 "only the 3D student runs", scene.scene_id)
        teachers = []
    else:
        text = vocabulary_text(scene.label_set, cfg)
    fused = [fuse_teacher(store, scene, t, cfg, text, progress=progress) for t in teachers]
    names = [t.name for t in teachers]
    if len(teachers) > 1:
        for mode in COMBINED_MODES:
            fuse_combined(store, scene, mode, fused, names, table, cfg)
    made += fusion_artefacts(teachers)
    if student and ensure_student(store, scene, cfg) is not None:
        made.append(f"pred3d.{cfg.student_name}")
    return made


def run_split(store: ArtefactStore, scene_paths: Sequence, cfg: PipelineConfig, *, progress: Optional[Progress] = None,
              student: bool = True, dataset: Optional[str] = None, workers: int = 1,
              on_scene: Optional[Callable[[str], None]] = None) -> list[str]:
    """Run the pipeline over scene folders; returns their scene ids. ``on_scene(scene_id)`` is called as each scene
    is finished (e.g. to offer its layers in the app while the others run).

    ``workers`` > 1 (CPU only): once the capability table or a scene turns out not to be cached (over 3 s, or a
    teacher's or combined fusion of the next scene missing from the store), the rest go to that many spawned
    processes of one torch thread each. The compact teachers' small convolutions barely use
    a second thread, so two single-thread workers finish the rooms sooner, while a cached run never pays for
    starting processes. Every artefact is written atomically, so workers never see half-written files."""
    from .io import load_scene

    paths = list(scene_paths)
    _report(progress, 0.0, f"building teachers {', '.join(cfg.teachers)}")
    teachers = build_teachers(cfg)
    table = None
    t0 = time.monotonic()
    if len(teachers) > 1:
        _report(progress, 0.02, f"capability table ({cfg.synthesizer} images, {cfg.capability_images} per class)")
        table = ensure_capability(store, teachers, cfg)
    parallel = workers > 1 and torch.device(cfg.device).type == "cpu"
    slow = time.monotonic() - t0 > 3.0  # the table was not cached: a cold run, the scenes will not be either
    fused = fusion_artefacts(teachers)
    ids = []
    for i, p in enumerate(paths):
        t0 = time.monotonic()
        pool = parallel and len(paths) - i > 1
        scene = None if pool and slow else load_scene(p, dataset=dataset)
        if pool and not slow and len(scene.frames):  # a fusion never stored (the table may be shipped): cold
            slow = not all(store.path(scene.scene_id, n).exists() for n in fused)
        if pool and slow:
            return ids + _run_split_parallel(store, paths[i:], cfg, progress, student, dataset,
                                             min(workers, len(paths) - i), done_before=i, total=len(paths),
                                             on_scene=on_scene)
        _report(progress, 0.1 + 0.9 * i / max(1, len(paths)), f"scene {scene.scene_id} ({i + 1}/{len(paths)})")
        run_scene(store, scene, cfg, teachers, table, student=student)
        ids.append(scene.scene_id)
        if on_scene is not None:
            on_scene(scene.scene_id)
        slow = time.monotonic() - t0 > 3.0
    _report(progress, 1.0, f"{len(ids)} scenes ready")
    return ids


_WORKER_TEACHERS: dict[str, list] = {}
"""Teachers built in this worker process, by pipeline config hash (a worker runs several scenes)."""


def _scene_worker(store_root: str, path: str, cfg: PipelineConfig, student: bool, dataset: Optional[str]) -> str:
    """One scene of :func:`run_split` in a worker process (its own teachers, built once per process; the capability
    table is cached)."""
    from .io import load_scene

    torch.set_num_threads(1)
    store = ArtefactStore(store_root)
    key = config_hash(cfg)
    if key not in _WORKER_TEACHERS:
        _WORKER_TEACHERS[key] = build_teachers(cfg)
    teachers = _WORKER_TEACHERS[key]
    table = ensure_capability(store, teachers, cfg) if len(teachers) > 1 else None
    scene = load_scene(path, dataset=dataset)
    run_scene(store, scene, cfg, teachers, table, progress=False, student=student)
    return scene.scene_id


def _run_split_parallel(store, paths, cfg, progress, student, dataset, workers: int, done_before: int,
                        total: int, on_scene: Optional[Callable[[str], None]] = None) -> list[str]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futs = {pool.submit(_scene_worker, str(store.root), str(p), cfg, student, dataset): i
                for i, p in enumerate(paths)}
        ids: list[Optional[str]] = [None] * len(paths)
        for k, f in enumerate(tqdm(as_completed(futs), total=len(futs), desc=f"scenes ({workers} workers)",
                                   unit="scene"), 1):
            ids[futs[f]] = f.result()
            if on_scene is not None:
                on_scene(ids[futs[f]])
            done = done_before + k
            _report(progress, 0.1 + 0.9 * done / total, f"scene {ids[futs[f]]} done ({done}/{total})")
    _report(progress, 1.0, f"{total} scenes ready")
    return [i for i in ids if i is not None]
