"""``sas superpoints <scene>``: the scene's superpoints (ScanNet's Segmentator on the mesh, or the official
``segs.json`` when the scan has one) into the store as ``superpoints``."""
from __future__ import annotations

from dataclasses import dataclass

from .common import SceneArgs


@dataclass
class Config(SceneArgs):
    """Segment the scene's mesh into superpoints (ScanNet Segmentator) and cache them in the store."""


def run(cfg: Config) -> int:
    import numpy as np

    from ..io import load_scene
    from ..pipeline import ensure_superpoints
    from ..store import ArtefactStore

    scene = load_scene(cfg.scene, dataset=cfg.dataset, up=cfg.up)
    store = ArtefactStore(cfg.store)
    sp = ensure_superpoints(store, scene)
    sizes = np.bincount(np.unique(sp, return_inverse=True)[1])
    how = "official segs.json" if scene.superpoints is not None else (
        "mesh segmentation" if scene.faces is not None else "no mesh: one per point")
    print(f"{scene.scene_id}: {len(sizes)} superpoints ({how}) over {scene.num_points} points, median "
          f"{int(np.median(sizes))} points each -> {store.path(scene.scene_id, 'superpoints')}")
    return 0
