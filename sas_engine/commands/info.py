"""``sas info <scene>``: print a scene summary (points, frames, classes present, artefacts cached)."""
from __future__ import annotations

from dataclasses import dataclass

from .common import SceneArgs


@dataclass
class Config(SceneArgs):
    """Print a scene summary: points, mesh, frames, classes present, artefacts cached."""


def run(cfg: Config) -> int:
    from ..io import load_scene
    from ..summary import scene_summary

    scene = load_scene(cfg.scene, dataset=cfg.dataset, up=cfg.up)
    print(scene_summary(scene, store=cfg.store))
    return 0
