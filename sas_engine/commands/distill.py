"""``sas distill``: train the 3D student on a split's fused 2D features (stage 1 + stage 2), resumable, torchrun-ready."""
from __future__ import annotations

from pathlib import Path

from .common import add_store_arg

HELP = "distil fused 2D features into the sparse 3D student (stage 1 + temporal-ensembling stage 2)"


def add_arguments(p) -> None:
    p.add_argument("--train", nargs="+", required=True, help="training scene folders (or a synthetic split name: tiny/train/val)")
    p.add_argument("--val", nargs="*", default=[], help="validation scene folders or split name (ground truth needed)")
    p.add_argument("--dataset", default=None, help="dataset preset (default: detected)")
    p.add_argument("--fused", default="fused.sas", help="store artefact with the fusion targets (fused.sas, fused.add, ...)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="checkpoint folder (run subfolder inside)")
    p.add_argument("--text-encoder", default=None, help="text encoder spec (default: the packaged MiniLM)")
    p.add_argument("--label-set", default=None, help="label set for stage-2 pseudo labels and validation (default: preset's)")
    p.add_argument("--device", default="cpu")
    add_store_arg(p)
    from ..distill.trainer import DistillConfig
    from .common import add_dataclass_args

    add_dataclass_args(p, DistillConfig)


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
    from ..distill.trainer import DistillConfig, DistillTrainer
    from ..labels import get_label_set
    from ..store import ArtefactStore
    from ..teachers import get_text_encoder
    from .common import dataclass_from_args

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    store = ArtefactStore(args.store)
    train = load_split_scenes(store, resolve_scene_paths(args.train), args.fused, args.dataset)
    val = load_split_scenes(store, resolve_scene_paths(args.val), args.fused, args.dataset) if args.val else []
    cfg = dataclass_from_args(DistillConfig, args)
    cfg.out_channels = int(train[0].target.shape[1])
    preset = get_preset(args.dataset or "synthetic")
    labels = get_label_set(args.label_set or preset.label_set)
    text = get_text_encoder(args.text_encoder).encode(labels.prompts(preset.prompt_template))
    trainer = DistillTrainer(cfg, train, val, text, args.out, store, device=args.device)
    final = trainer.fit()
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in final.items()})
    return 0
