"""Per-frame teacher output cache in the artefact store (what ``sas extract`` writes and fusion reads).

Artefacts of scene ``S`` for teacher ``T`` (store layout ``<store>/<S>/``):

* ``feat2d.T.<frame_id>.pt`` - one per frame.
  Dense teachers (kind ``feat2d.dense``): ``feat`` float16 ``[h, w, C]`` L2-normalised pixel features at the cache
  resolution (the teacher's native output resolution divided by ``cache_stride``), optional ``valid`` bool ``[h, w]``,
  ``image_size`` ``[H, W]``. Disk size per frame = h * w * C * 2 bytes, e.g. LSeg at 320x240 (native 160x120, C=512)
  19.7 MB; dense CLIP ViT-B/32 (7x9 patch grid upsampled x4 -> 28x36, C=512) 1.0 MB; a 384-d map at 160x120
  14.7 MB; ``cache_stride=2`` divides these by 4.
  Mask teachers (kind ``feat2d.mask``), aligned through text at extraction time: ``seg`` int16 ``[H, W]``
  (segment index, -1 = no mask), ``emb`` float16 ``[S, C]`` (text embedding of each segment's MAT sentence),
  ``labels`` / ``texts`` list[str], ``scores`` float32 ``[S]``: about H * W * 2 bytes + S * C * 2 (~160 kB at 320x240).
* ``feat2d.T.json`` - the scene's index (kind ``feat2d.index``): teacher kind, finished frame ids with their shapes and
  sizes, ``complete`` when every frame is done. Reruns skip finished frames (and finished scenes in split mode);
  a changed teacher or cache config makes the old frames stale and they are recomputed. The config records the
  teacher's weights by content and the frames' digest (:func:`sas_engine.scene.frames_digest`), so a retrained
  checkpoint or new images/poses invalidate the cache.

The cache is optional: :func:`streamed_feature_source` runs the teacher frame by frame inside fusion and keeps
nothing, which is what the pipeline does by default (a dense map costs h * w * C * 2 bytes per frame on disk, 3.7 MB
for the compact dense teacher at 320x240, so 370 MB per 100 frames; the streamed pipeline keeps 0).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import config_dict
from ..errors import SASInputError, StaleArtefactError
from ..store import ArtefactStore
from .base import DenseTeacher, MaskTeacher, Teacher

log = logging.getLogger(__name__)
INDEX_KIND = "feat2d.index"


@dataclass
class ExtractConfig:
    """Settings of ``sas extract`` that change what is cached."""

    cache_stride: int = 1
    """Dense maps are average-pooled by this factor (and re-normalised) before caching; 1 = native resolution."""
    text_encoder: Optional[str] = None
    """Shared text encoder spec for Model Alignment via Text of mask teachers (``None``: MiniLM)."""
    captioner: Optional[str] = None
    """Captioner spec for MAT (``None``/``mask_cues``: the CPU default; ``hf:<folder>``)."""
    batch: int = 4
    """Frames per teacher batch."""


def frame_artefact(teacher_name: str, frame_id) -> str:
    """Store name of one frame's cached output: ``feat2d.<teacher>.<frame_id>``."""
    return f"feat2d.{teacher_name}.{frame_id}"


def index_artefact(teacher_name: str) -> str:
    """Store name of a scene's extraction index (a ``.json`` artefact): ``feat2d.<teacher>``."""
    return f"feat2d.{teacher_name}"


def _as_store(store) -> ArtefactStore:
    return store if isinstance(store, ArtefactStore) else ArtefactStore(store)


def _read_index(store: ArtefactStore, scene_id: str, teacher_name: str) -> Optional[dict]:
    """The scene's extraction index with its header, or ``None`` when it is missing, unreadable, of another store
    format version or kind, or malformed (then the scene counts as not extracted)."""
    try:
        obj = store.read_any(scene_id, index_artefact(teacher_name), ext=".json")
    except StaleArtefactError:
        return None
    return obj if obj is not None and obj["__header__"].get("kind") == INDEX_KIND else None


def scene_done(store, scene_id: str, teacher_name: str, config: Optional[dict] = None) -> bool:
    """True when the scene's index says every frame is cached (and, if given, with this config)."""
    idx = _read_index(_as_store(store), scene_id, teacher_name)
    if idx is None or not idx.get("complete"):
        return False
    return config is None or idx["__header__"].get("config") == config_dict(config)


def _pool_dense(feat: torch.Tensor, valid: Optional[torch.Tensor], stride: int):
    if stride <= 1:
        return feat, valid
    x = feat.permute(2, 0, 1)[None].float()
    if valid is not None:
        x = x * valid[None, None].float()
    x = F.avg_pool2d(x, stride, ceil_mode=True)
    feat = F.normalize(x[0], dim=0).permute(1, 2, 0)
    if valid is not None:
        valid = F.max_pool2d(valid[None, None].float(), stride, ceil_mode=True)[0, 0] > 0
    return feat, valid


def extract_config(teacher: Teacher, cfg: ExtractConfig, text_encoder=None, captioner=None, scene=None):
    """``(kind, config dict, text_encoder, captioner)`` of an extraction (the config is stamped on the artefacts).
    With ``scene``, the config also records its frames' digest."""
    from ..scene import frames_digest

    from .mat import get_captioner
    from .text import get_text_encoder

    if not isinstance(teacher, (DenseTeacher, MaskTeacher)):
        raise SASInputError(None, f"{teacher!r} is neither a dense nor a mask teacher")
    kind = "feat2d.dense" if isinstance(teacher, DenseTeacher) else "feat2d.mask"
    conf = {"teacher": teacher.config(), "kind": kind}
    if kind == "feat2d.dense":
        conf["cache_stride"] = int(cfg.cache_stride)
    else:
        dev = getattr(teacher, "device", "cpu")
        text_encoder = text_encoder or get_text_encoder(cfg.text_encoder, device=dev)
        captioner = captioner or get_captioner(cfg.captioner, device=dev)
        conf["text_encoder"] = text_encoder.name
        conf["captioner"] = captioner.config()
    if scene is not None:
        conf["frames"] = frames_digest(scene.frames)
    return kind, config_dict(conf), text_encoder, captioner


def frame_outputs(teacher: Teacher, kind: str, images: Sequence[np.ndarray], ids: Sequence[str], cache_stride: int,
                  text_encoder=None, captioner=None) -> list[dict]:
    """The cached payload of each frame (see the module docstring) for a batch of images: dense feature maps pooled by
    ``cache_stride`` in float16, or mask teachers' id maps with their text-aligned segment embeddings."""
    from .mat import align_masks_compact

    out = []
    if kind == "feat2d.dense":
        for im, (feat, valid) in zip(images, teacher.predict_batch_valid(images, frame_ids=list(ids))):
            feat, valid = _pool_dense(feat, valid, int(cache_stride))
            payload = {"feat": feat.to(torch.float16).contiguous(), "image_size": list(im.shape[:2])}
            if valid is not None:
                payload["valid"] = valid.bool().contiguous()
            out.append(payload)
        return out
    for fid, im, pred in zip(ids, images, teacher.predict_batch(images, frame_ids=list(ids))):
        seg, emb, texts, labels, scores = align_masks_compact(pred, im, text_encoder, captioner)
        if len(texts) > 32767:
            raise SASInputError(None, f"frame {fid}: {len(texts)} masks do not fit an int16 id map")
        out.append({"seg": torch.from_numpy(seg.astype(np.int16)), "emb": emb.to(torch.float16), "labels": labels,
                    "texts": texts, "scores": torch.tensor(scores, dtype=torch.float32),
                    "image_size": list(im.shape[:2])})
    return out


def payload_features(kind: str, obj: dict, device: str = "cpu"):
    """``(feat, valid [h, w] | None)`` of one frame's payload, as fusion consumes it: dense maps ``[h, w, C]`` as
    they are; mask teachers' id maps with their segment embeddings as an
    :class:`~sas_engine.geometry.fusion.IndexedFeatureMap` (never expanded; invalid where no mask)."""
    from ..geometry.fusion import IndexedFeatureMap

    if kind == "feat2d.dense":
        valid = obj.get("valid")
        return obj["feat"].to(device), None if valid is None else valid.to(device)
    seg = obj["seg"].long().to(device)
    return IndexedFeatureMap(seg, obj["emb"].to(device)), seg >= 0


def extract_scene(scene, teacher: Teacher, store, cfg: Optional[ExtractConfig] = None, *, text_encoder=None,
                  captioner=None, recompute: bool = False, progress: bool = True) -> dict:
    """Run ``teacher`` over every frame of ``scene`` and cache the outputs (see the module docstring).

    Args:
        scene: a :class:`~sas_engine.scene.Scene` (frames read lazily, one batch at a time).
        teacher: a built dense or mask teacher (its ``name`` names the artefacts).
        store: :class:`ArtefactStore` or its folder.
        cfg: :class:`ExtractConfig`.
        text_encoder / captioner: objects overriding ``cfg.text_encoder`` / ``cfg.captioner`` (mask teachers).
        recompute: ignore frames already cached.
        progress: tqdm bar over frames.

    Returns:
        summary dict: scene, teacher, kind, frames, computed, skipped, bytes (written), seconds.
    """
    from tqdm import tqdm

    cfg = cfg or ExtractConfig()
    store = _as_store(store)
    t0 = time.time()
    scene.require_frames(f"teacher extraction ({teacher.name})")
    teacher = teacher.for_scene(scene.scene_id)
    tname = teacher.name
    kind, conf, text_encoder, captioner = extract_config(teacher, cfg, text_encoder, captioner, scene)
    idx_name = index_artefact(tname)
    index = None
    if not recompute:
        try:
            index = store.load_json(scene.scene_id, idx_name, kind=INDEX_KIND, config=conf)
        except StaleArtefactError as e:
            log.warning("recomputing %s: %s", idx_name, e)
    if index is None:
        index = {"teacher": tname, "display_name": teacher.display_name, "kind": kind, "frames": {},
                 "num_frames": len(scene.frames), "complete": False}
    frame_ids = [str(f) for f in getattr(scene.frames, "frame_ids", [])] or [f.frame_id for f in scene.frames]
    todo = [i for i, fid in enumerate(frame_ids)
            if fid not in index["frames"] or not store.path(scene.scene_id, frame_artefact(tname, fid)).is_file()]
    skipped = len(frame_ids) - len(todo)
    written = 0
    bar = tqdm(total=len(todo), desc=f"extract {tname} {scene.scene_id}", unit="frame", disable=not progress)
    for s in range(0, len(todo), max(1, cfg.batch)):
        chunk = todo[s:s + max(1, cfg.batch)]
        frames = [scene.frames[i] for i in chunk]
        images = [f.color for f in frames]
        ids = [frame_ids[i] for i in chunk]
        outs = frame_outputs(teacher, kind, images, ids, cfg.cache_stride, text_encoder, captioner)
        for fid, payload in zip(ids, outs):
            if kind == "feat2d.dense":
                shape = list(payload["feat"].shape)
            else:
                seg, emb = payload["seg"], payload["emb"]
                shape = [int(seg.shape[0]), int(seg.shape[1]), int(emb.shape[1]) if emb.ndim == 2 else 0]
            p = store.save(scene.scene_id, frame_artefact(tname, fid), payload, kind=kind, config=conf,
                           inputs={"scene": scene.scene_id, "frame": fid})
            size = p.stat().st_size
            written += size
            index["frames"][fid] = {"shape": shape, "bytes": size}
        index["complete"] = all(f in index["frames"] for f in frame_ids)
        store.save_json(scene.scene_id, idx_name, index, kind=INDEX_KIND, config=conf)
        bar.update(len(chunk))
    bar.close()
    if not todo:
        index["complete"] = True
        store.save_json(scene.scene_id, idx_name, index, kind=INDEX_KIND, config=conf)
    sizes = [v["bytes"] for v in index["frames"].values()]
    return {"scene": scene.scene_id, "teacher": tname, "kind": kind, "frames": len(frame_ids), "computed": len(todo),
            "skipped": skipped, "bytes": written, "bytes_per_frame": float(np.mean(sizes)) if sizes else 0.0,
            "seconds": time.time() - t0}


def cached_feature_source(store, scene, teacher_name: str, device: str = "cpu"
                          ) -> Callable[[int, object], tuple]:
    """The geometry helper's feature source reading ``sas extract``'s cache.

    Returns ``source(i, frame) -> (feat, valid bool [h, w] | None)`` (:func:`payload_features`): dense maps
    ``[h, w, C]`` float16 at their cache resolution; mask teachers' id maps with their segment embeddings.
    ``scene`` is a :class:`~sas_engine.scene.Scene` or a scene id. A frame that was not extracted raises
    :class:`SASInputError` naming the missing file.
    """
    store = _as_store(store)
    sid = scene if isinstance(scene, str) else scene.scene_id
    idx = _read_index(store, sid, teacher_name)
    if idx is None:
        raise SASInputError(store.path(sid, index_artefact(teacher_name), ".json"),
                            f"no cached '{teacher_name}' outputs for scene {sid}; run `sas extract <scene> "
                            f"--teacher {teacher_name}` first")
    conf, kind = idx["__header__"].get("config", {}), idx["kind"]

    def source(i, frame):
        fid = str(frame.frame_id)
        name = frame_artefact(teacher_name, fid)
        try:
            obj = store.load(sid, name, kind=kind, config=conf, inputs={"scene": sid, "frame": fid})
        except StaleArtefactError as e:
            raise SASInputError(store.path(sid, name), f"stale cache ({e}); rerun sas extract") from e
        if obj is None:
            raise SASInputError(store.path(sid, name), f"frame {fid} of scene {sid} was not extracted with "
                                                       f"teacher {teacher_name}")
        return payload_features(kind, obj, device)

    source.kind = kind  # type: ignore[attr-defined]
    source.config = conf  # type: ignore[attr-defined]
    return source


def streamed_feature_source(scene, teacher: Teacher, cfg: Optional[ExtractConfig] = None, *, text_encoder=None,
                            captioner=None, device: str = "cpu"):
    """A fusion feature source that runs ``teacher`` on each frame as fusion reaches it and keeps nothing on disk.

    It gives exactly what :func:`cached_feature_source` would read after :func:`extract_scene` with the same
    ``cfg``; ``source.config`` is the extraction config (artefacts made from it record it)."""
    cfg = cfg or ExtractConfig()
    teacher = teacher.for_scene(scene.scene_id)
    kind, conf, text_encoder, captioner = extract_config(teacher, cfg, text_encoder, captioner, scene)

    def source(i, frame):
        obj = frame_outputs(teacher, kind, [frame.color], [str(frame.frame_id)], cfg.cache_stride, text_encoder,
                            captioner)[0]
        return payload_features(kind, obj, device)

    source.kind = kind  # type: ignore[attr-defined]
    source.config = conf  # type: ignore[attr-defined]
    return source


# --- split mode (many scenes, torchrun sharding) -------------------------------------------------------------
def shard(items: Sequence, rank: int, world_size: int) -> list:
    """The share of ``rank`` among ``world_size`` workers: sorted items ``rank::world_size``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise SASInputError(None, f"bad rank {rank} for world size {world_size}")
    return sorted(items, key=str)[rank::world_size]


def dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``0, 1, 0`` without torchrun)."""
    import os

    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def extract_split(scene_paths: Sequence, teacher: Teacher, store, cfg: Optional[ExtractConfig] = None, *,
                  rank: int = 0, world_size: int = 1, loader: Optional[Callable] = None, text_encoder=None,
                  captioner=None, progress: bool = True) -> list[dict]:
    """Extract every scene of this rank's shard; scenes whose index is complete are skipped.

    ``loader(path) -> Scene`` defaults to :func:`sas_engine.io.load_scene`.
    """
    if loader is None:
        from ..io import load_scene as loader  # noqa: N813
    cfg = cfg or ExtractConfig()
    out = []
    for path in shard(list(scene_paths), rank, world_size):
        scene = loader(path)
        t = teacher.for_scene(scene.scene_id)
        _, conf, text_encoder, captioner = extract_config(t, cfg, text_encoder, captioner, scene)
        if scene_done(store, scene.scene_id, t.name, conf):
            out.append({"scene": scene.scene_id, "teacher": teacher.name, "computed": 0, "skipped": "scene"})
            continue
        out.append(extract_scene(scene, teacher, store, cfg, text_encoder=text_encoder, captioner=captioner,
                                 progress=progress))
    return out


def split_scene_paths(split: str) -> list[Path]:
    """Scan folders of a split: a folder (``<dir>/scans/*`` or ``<dir>/*``) or a synthetic split name."""
    p = Path(split).expanduser()
    if p.is_dir():
        base = p / "scans" if (p / "scans").is_dir() else p
        scenes = sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not scenes:
            raise SASInputError(p, "split folder holds no scene folders")
        return scenes
    from ..synth import ensure_split

    return [Path(s) for s in ensure_split(split)]
