"""``sas infer``: per-point 3D features of scenes from a trained student, into the store as ``pred3d.<name>``."""
from __future__ import annotations

from pathlib import Path

from .common import add_store_arg, add_up_arg

HELP = "run the distilled 3D student on scenes (no images needed) and cache per-point features in the store"


def add_arguments(p) -> None:
    p.add_argument("scenes", nargs="+", help="scene folders/files or a synthetic split name")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="student checkpoint (a run's best.pt, or an OpenScene/SAS .pth.tar with --model)")
    p.add_argument("--model", default=None, help="student preset when the checkpoint does not record it "
                                                 "(mink18a, mink18a_slim)")
    p.add_argument("--name", default=None, help="artefact suffix: pred3d.<name> (default: the checkpoint's stem)")
    p.add_argument("--dataset", default=None)
    add_up_arg(p)
    p.add_argument("--tta", type=int, default=0,
                   help="augmented passes averaged with the plain one (OpenScene evaluates 5 in all: --tta 4)")
    p.add_argument("--device", default="cpu")
    add_store_arg(p)


def run(args) -> int:
    from tqdm import tqdm

    from ..io import load_scene
    from ..pipeline import PipelineConfig, ensure_student
    from ..store import ArtefactStore
    from .distill import resolve_scene_paths

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
