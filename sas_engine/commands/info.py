"""``sas info <scene>``: print a scene summary (points, frames, classes present, artefacts cached)."""
from __future__ import annotations

from .common import add_scene_args, add_store_arg

HELP = "print a scene summary: points, mesh, frames, classes present, artefacts cached"


def add_arguments(p) -> None:
    add_scene_args(p)
    add_store_arg(p)


def run(args) -> int:
    from ..io import load_scene
    from ..summary import scene_summary

    scene = load_scene(args.scene, dataset=args.dataset, up=args.up)
    print(scene_summary(scene, store=args.store))
    return 0
