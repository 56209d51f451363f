"""``sas infer``: per-point 3D features of scenes from a trained student, into the store as ``pred3d.<name>``."""
from __future__ import annotations

from pathlib import Path

from .common import add_store_arg

HELP = "run the distilled 3D student on scenes (no images needed) and cache per-point features in the store"


def add_arguments(p) -> None:
    p.add_argument("scenes", nargs="+", help="scene folders/files or a synthetic split name")
    p.add_argument("--checkpoint", type=Path, required=True, help="student checkpoint (a run's best.pt, or an OpenScene/SAS .pth.tar)")
    p.add_argument("--model", default=None, help="student preset when the checkpoint does not record it (mink18a, mink18a_slim)")
    p.add_argument("--name", default=None, help="artefact suffix: pred3d.<name> (default: checkpoint's run name)")
    p.add_argument("--dataset", default=None)
    p.add_argument("--tta", type=int, default=0, help="test-time augmentation passes (OpenScene: 5)")
    p.add_argument("--device", default="cpu")
    add_store_arg(p)


def run(args) -> int:
    from tqdm import tqdm

    from ..config import get_preset
    from ..distill.infer import infer_points, load_student
    from ..io import load_scene
    from ..store import ArtefactStore
    from .distill import resolve_scene_paths

    model, meta = load_student(args.checkpoint, model=args.model, device=args.device)
    name = args.name or meta.get("run") or args.checkpoint.stem
    store = ArtefactStore(args.store)
    for path in tqdm(resolve_scene_paths(args.scenes), desc="infer"):
        scene = load_scene(path, dataset=args.dataset)
        voxel = meta.get("voxel_size") or get_preset(scene.dataset).voxel_size
        feats = infer_points(model, scene.points, voxel, device=args.device, tta=args.tta)
        store.save(scene.scene_id, f"pred3d.{name}", {"features": feats},
                   kind="pred3d", config={"checkpoint": str(args.checkpoint), "tta": args.tta, "voxel_size": voxel})
        print(f"{scene.scene_id}: pred3d.{name} [{feats.shape[0]} x {feats.shape[1]}]")
    return 0
