"""``sas extract <scene> --teacher NAME``: run a 2D teacher over a scene's frames into the artefact store.

Outputs are cached per frame as ``feat2d.<teacher>.<frame_id>`` (see :mod:`sas_engine.teachers.cache`); reruns skip
finished frames. ``--split NAME|DIR`` processes many scenes; under ``torchrun --nproc_per_node=G -m sas_engine.cli
extract --split ...`` each rank takes scenes ``rank::world_size`` (and GPU ``LOCAL_RANK`` with ``--device cuda``);
reruns skip scenes whose index is complete.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro

from .common import DEFAULT_STORE, Dataset, Up


@dataclass
class Config:
    """Run a 2D teacher over a scene's frames (or a whole split) and cache the outputs in the store."""

    teacher: str
    """Registered teacher name (clip_dense, sam_clip, lseg, precomputed, lseg_compact, seem_compact...)."""
    scene: tyro.conf.Positional[Annotated[Optional[str], tyro.conf.arg(metavar="SCENE")]] = None
    """Scene folder or file (omit with --split)."""
    split: Optional[str] = None
    """A split name (synthetic: tiny, train, val) or a folder of scenes."""
    dataset: Dataset = None
    """Dataset preset; detected from the layout when omitted."""
    up: Up = None
    """Gravity alignment (see the help text)."""
    store: Path = DEFAULT_STORE
    """Artefact store folder ($SAS_STORE or <repo>/store)."""
    device: str = "cpu"
    """Torch device (cpu, cuda, cuda:1)."""
    batch: int = 4
    """Frames per teacher batch."""
    cache_stride: int = 1
    """Average-pool dense maps by this factor before caching (1 = native resolution)."""
    checkpoint: Optional[str] = None
    """Teacher weights file (clip_dense, lseg)."""
    clip_checkpoint: Optional[str] = None
    """open_clip weights (sam_clip; lseg without clip keys)."""
    sam_checkpoint: Optional[str] = None
    """SAM weights (sam_clip)."""
    arch: Optional[str] = None
    """open_clip architecture (clip_dense: arch, sam_clip: clip_arch)."""
    root: Optional[str] = None
    """Folder of precomputed outputs (precomputed)."""
    kind: Optional[Literal["dense", "mask"]] = None
    """precomputed: dense features or masks."""
    vocabulary: Optional[str] = None
    """Label set the mask teacher classifies into (sam_clip)."""
    text_encoder: Optional[str] = None
    """Shared text encoder for mask alignment / precomputed features: minilm or openclip:<arch>:<path> (default
    minilm)."""
    captioner: Optional[str] = None
    """MAT captioner: mask_cues (default) or hf:<folder>."""
    opt: tyro.conf.UseAppendAction[list[str]] = field(default_factory=list)
    """Extra teacher builder argument KEY=VALUE (repeatable; numbers are parsed)."""
    recompute: bool = False
    """Ignore cached frames."""
    no_progress: bool = False
    """Hide progress bars."""


def teacher_kwargs(args) -> dict:
    """Builder keyword arguments from the command line (only those given)."""
    from ..errors import SASInputError

    kw = {}
    if args.arch:
        kw["clip_arch" if args.teacher == "sam_clip" else "arch"] = args.arch
    for name in ("checkpoint", "clip_checkpoint", "sam_checkpoint", "root", "kind", "vocabulary", "text_encoder"):
        v = getattr(args, name, None)
        if v is not None:
            kw[name] = v
    for item in args.opt:
        if "=" not in item:
            raise SASInputError(None, f"--opt expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        for conv in (int, float):
            try:
                v = conv(v)
                break
            except ValueError:
                continue
        kw[k.strip().replace("-", "_")] = v
    return kw


def run(args) -> int:
    import json

    import torch

    from ..errors import SASInputError
    from ..teachers import build_teacher
    from ..teachers.cache import ExtractConfig, dist_env, extract_scene, extract_split

    if (args.scene is None) == (args.split is None):
        raise SASInputError(None, "give either a scene or --split")
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    rank, world, local = dist_env()
    device = args.device
    if device == "cuda" and world > 1:
        device = f"cuda:{local}"
    teacher = build_teacher(args.teacher, device=device, **teacher_kwargs(args))
    cfg = ExtractConfig(cache_stride=args.cache_stride, text_encoder=args.text_encoder, captioner=args.captioner,
                        batch=args.batch)
    if args.split is None:
        from ..io import load_scene

        scene = load_scene(args.scene, dataset=args.dataset, progress=not args.no_progress, up=args.up)
        out = [extract_scene(scene, teacher, args.store, cfg, recompute=args.recompute,
                             progress=not args.no_progress)]
    else:
        paths = _split_paths_synced(args.split, rank, world)

        def loader(p):
            from ..io import load_scene

            return load_scene(p, dataset=args.dataset, progress=not args.no_progress, up=args.up)

        out = extract_split(paths, teacher, args.store, cfg, rank=rank, world_size=world, loader=loader,
                            progress=not args.no_progress)
    for s in out:
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()}))
    return 0


def _split_paths_synced(split: str, rank: int, world: int):
    """Resolve a split; with several ranks, rank 0 generates missing synthetic scenes first, the others wait."""
    from ..teachers.cache import split_scene_paths

    if world <= 1:
        return split_scene_paths(split)
    import torch.distributed as dist

    own = False
    if not dist.is_initialized():
        dist.init_process_group("gloo")
        own = True
    try:
        if rank == 0:
            split_scene_paths(split)
        dist.barrier()
        return split_scene_paths(split)
    finally:
        if own:
            dist.destroy_process_group()
