"""``sas superpoints <scene>``: the scene's superpoints (ScanNet's Segmentator on the mesh, or the official
``segs.json`` when the scan has one) into the store as ``superpoints``."""
from __future__ import annotations

from .common import add_scene_args, add_store_arg

HELP = "segment the scene's mesh into superpoints (ScanNet Segmentator) and cache them in the store"


def add_arguments(p) -> None:
    add_scene_args(p)
    add_store_arg(p)


def run(args) -> int:
    import numpy as np

    from ..io import load_scene
    from ..pipeline import ensure_superpoints
    from ..store import ArtefactStore

    scene = load_scene(args.scene, dataset=args.dataset, up=args.up)
    store = ArtefactStore(args.store)
    sp = ensure_superpoints(store, scene)
    sizes = np.bincount(np.unique(sp, return_inverse=True)[1])
    how = "official segs.json" if scene.superpoints is not None else (
        "mesh segmentation" if scene.faces is not None else "no mesh: one per point")
    print(f"{scene.scene_id}: {len(sizes)} superpoints ({how}) over {scene.num_points} points, median "
          f"{int(np.median(sizes))} points each -> {store.path(scene.scene_id, 'superpoints')}")
    return 0
