"""``sas info <scene>``: print a scene summary (points, frames, classes present, artefacts cached)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .common import DEFAULT_STORE, Dataset, Scene, Up


@dataclass
class Config:
    """Print a scene summary: points, mesh, frames, classes present, artefacts cached."""

    scene: Scene
    """Scene folder or file (ScanNet scan folder, OpenScene .pth, custom RGB-D folder...)."""
    dataset: Dataset = None
    """Dataset preset (scannet, matterport, nuscenes, synthetic); detected from the layout when omitted."""
    up: Up = None
    """Gravity alignment (see the help text)."""
    store: Path = DEFAULT_STORE
    """Artefact store folder ($SAS_STORE or <repo>/store)."""


def run(cfg: Config) -> int:
    from ..io import load_scene
    from ..summary import scene_summary

    scene = load_scene(cfg.scene, dataset=cfg.dataset, up=cfg.up)
    print(scene_summary(scene, store=cfg.store))
    return 0
