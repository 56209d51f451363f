"""``sas distill``: train the 3D student on a split's fused 2D features (stage 1 + stage 2), resumable, torchrun-ready."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

import tyro

from ..distill.trainer import DistillConfig
from .common import DEFAULT_STORE, Dataset


@dataclass
class StudentSettings(DistillConfig):
    """The run's :class:`DistillConfig` (its ``out_channels`` comes from the fused targets, not the command line)."""

    out_channels: tyro.conf.Suppress[int] = DistillConfig.out_channels
    """Set from the fused targets' width."""

    def distill_config(self, out_channels: int) -> DistillConfig:
        """A plain :class:`DistillConfig` with these settings and the targets' width."""
        kw = {f.name: getattr(self, f.name) for f in fields(DistillConfig)}
        return DistillConfig(**{**kw, "out_channels": int(out_channels)})


@dataclass
class Config:
    """Distil fused 2D features into the sparse 3D student (stage 1 + temporal-ensembling stage 2)."""

    train: list[str]
    """Training scene folders (or a synthetic split name: tiny/train/val)."""
    val: list[str] = field(default_factory=list)
    """Validation scene folders or split name (ground truth needed)."""
    dataset: Dataset = None
    """Dataset preset (default: detected)."""
    fused: str = "fused.sas"
    """Store artefact with the fusion targets (fused.sas, fused.add, ...)."""
    out: Path = Path("runs")
    """Checkpoint folder (run subfolder inside)."""
    text_encoder: Optional[str] = None
    """Text encoder spec (default: the packaged MiniLM)."""
    label_set: Optional[str] = None
    """Label set for stage-2 pseudo labels and validation (default: the preset's)."""
    device: str = "cpu"
    """Torch device (cpu, cuda; under torchrun each rank takes cuda:LOCAL_RANK)."""
    store: Path = DEFAULT_STORE
    """Artefact store folder ($SAS_STORE or <repo>/store)."""
    student: tyro.conf.OmitArgPrefixes[StudentSettings] = field(default_factory=StudentSettings)
    """Training settings (:class:`sas_engine.distill.trainer.DistillConfig`)."""


def resolve_scene_paths(items: list[str]) -> list[Path]:
    """Scene folders from a list of paths or synthetic split names."""
    from ..synth import SPLITS, ensure_split

    out: list[Path] = []
    for it in items:
        if it in SPLITS and not Path(it).exists():
            out.extend(ensure_split(it))
        else:
            out.append(Path(it))
    return out


def run(args) -> int:
    import os

    import torch

    from ..config import get_preset
    from ..distill.data import load_split_scenes
    from ..distill.trainer import DistillTrainer
    from ..labels import get_label_set
    from ..store import ArtefactStore
    from ..teachers import get_text_encoder

    if not args.train:
        from ..errors import SASInputError

        raise SASInputError(None, "--train needs at least one scene folder or split name")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    store = ArtefactStore(args.store)
    train = load_split_scenes(store, resolve_scene_paths(args.train), args.fused, args.dataset)
    val = load_split_scenes(store, resolve_scene_paths(args.val), args.fused, args.dataset) if args.val else []
    cfg = args.student.distill_config(out_channels=int(train[0].target.shape[1]))
    preset = get_preset(args.dataset or "synthetic")
    labels = get_label_set(args.label_set or preset.label_set)
    text = get_text_encoder(args.text_encoder).encode(labels.prompts(preset.prompt_template))
    trainer = DistillTrainer(cfg, train, val, text, args.out, store, device=args.device)
    final = trainer.fit()
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in final.items()})
    return 0
