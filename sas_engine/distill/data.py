"""Training data of the 3D student: per-scene points, superpoints, fused 2D targets and (optional) ground truth.

Targets come from the artefact store (``fused.<mode>`` and ``superpoints`` of each scene, see the store layout);
ground truth is used for validation only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import SASInputError
from ..store import ArtefactStore


@dataclass
class DistillScene:
    """One scene as the trainer sees it.

    Attributes:
        scene_id: store key.
        points: float32 [N, 3] metres.
        superpoints: int64 [N] superpoint id per point.
        target: float16 [N, C] fused 2D feature (rows of invalid points are ignored).
        valid: bool [N] points with a fused 2D feature.
        labels: optional uint8 [N] ground truth (validation only), 255 = ignore.
        colors: optional uint8 [N, 3] RGB (read by colour students, ``DistillConfig.input_color``).
    """

    scene_id: str
    points: np.ndarray
    superpoints: torch.Tensor
    target: torch.Tensor
    valid: torch.Tensor
    labels: Optional[np.ndarray] = None
    colors: Optional[np.ndarray] = None


def _load_artefact(store: ArtefactStore, scene, name: str) -> dict:
    """Load an artefact whatever config made it (the trainer consumes what the pipeline produced) through
    :func:`sas_engine.artefacts.read`: kind, shapes, format version and ``scene``'s geometry are checked."""
    from ..artefacts import read

    return read(store, scene.scene_id, name, geometry=scene.geometry_digest, required=True)


def load_distill_scene(store: ArtefactStore, scene, fused_name: Optional[str] = "fused.sas") -> DistillScene:
    """Assemble a :class:`DistillScene` from a loaded :class:`~sas_engine.scene.Scene` and its store artefacts.

    Superpoints: the store's ``superpoints`` artefact, else the scene's own (official segs.json), else each point its own.
    ``fused_name`` None: no targets (a scene the trainer only validates on needs points and labels, not 2D stages).
    """
    n = scene.num_points
    if fused_name is None:
        fused = {"features": torch.zeros(n, 0, dtype=torch.float16), "mask": torch.zeros(n, dtype=torch.bool)}
    else:
        fused = _load_artefact(store, scene, fused_name)
    feats, mask = fused["features"], fused["mask"].bool()
    if feats.shape[0] != n or mask.shape[0] != n:
        raise SASInputError(store.path(scene.scene_id, fused_name),
                            f"has {feats.shape[0]} rows but the scene has {n} points (stale artefact?)")
    if store.path(scene.scene_id, "superpoints").exists():
        sp = _load_artefact(store, scene, "superpoints")["superpoints"].long()
    elif scene.superpoints is not None:
        sp = torch.as_tensor(scene.superpoints, dtype=torch.int64)
    else:
        sp = torch.arange(n, dtype=torch.int64)
    return DistillScene(scene.scene_id, scene.points, sp, feats.to(torch.float16), mask, scene.labels,
                        getattr(scene, "colors", None))


def load_split_scenes(store: ArtefactStore, paths: list[str | Path], fused_name: Optional[str],
                      dataset: str | None = None,
                      progress: bool = True) -> list[DistillScene]:
    """Load every scene folder of ``paths`` (through :func:`sas_engine.io.load_scene`) with its targets."""
    from tqdm import tqdm

    from ..io import load_scene

    out = []
    for p in tqdm(list(paths), desc="loading scenes", disable=not progress):
        out.append(load_distill_scene(store, load_scene(p, dataset=dataset), fused_name))
    return out
