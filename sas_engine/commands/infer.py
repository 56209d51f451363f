"""``sas infer``: per-point 3D features of scenes from a trained student, into the store as ``pred3d.<name>``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import tyro

from .common import DEFAULT_STORE, Dataset, Up


@dataclass
class Config:
    """Run the distilled 3D student on scenes (no images needed) and cache per-point features in the store."""

    scenes: tyro.conf.Positional[Annotated[list[str], tyro.conf.arg(metavar="SCENE")]]
    """Scene folders/files or a synthetic split name."""
    checkpoint: Path
    """Student checkpoint (a run's best.pt, or an OpenScene/SAS .pth.tar with --model)."""
    model: Optional[str] = None
    """Student preset when the checkpoint does not record it (mink18a, mink18a_slim)."""
    name: Optional[str] = None
    """Artefact suffix: pred3d.<name> (default: the checkpoint's stem)."""
    dataset: Dataset = None
    """Dataset preset (default: detected from the layout)."""
    up: Up = None
    """Gravity alignment (see the help text)."""
    tta: int = 0
    """Augmented passes averaged with the plain one (OpenScene evaluates 5 in all: --tta 4)."""
    device: str = "cpu"
    """Torch device (cpu or cuda)."""
    store: Path = DEFAULT_STORE
    """Artefact store folder ($SAS_STORE or <repo>/store)."""


def run(args) -> int:
    from tqdm import tqdm

    from ..io import load_scene
    from ..pipeline import PipelineConfig, ensure_student
    from ..store import ArtefactStore
    from .distill import resolve_scene_paths

    if not args.scenes:
        from ..errors import SASInputError

        raise SASInputError(None, "give at least one SCENE (a scene folder or file, or a synthetic split name)")
    store = ArtefactStore(args.store)
    cfg = PipelineConfig(device=args.device)
    name = args.name or args.checkpoint.stem
    for path in tqdm(resolve_scene_paths(args.scenes), desc="infer"):
        scene = load_scene(path, dataset=args.dataset, up=args.up)
        got = ensure_student(store, scene, cfg, checkpoint=args.checkpoint, name=name, model=args.model, tta=args.tta)
        if got is None:
            from ..errors import SASInputError

            raise SASInputError(args.checkpoint, "checkpoint file not found")
        f = got["features"]
        print(f"{scene.scene_id}: pred3d.{name} [{f.shape[0]} x {f.shape[1]}]")
    return 0
