"""Writers: ScanNet benchmark submissions and coloured PLY exports of per-point labellings.

All files are written atomically (:func:`sas_engine.store.atomic_write`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import SASInputError
from ..labels import IGNORE, SCANNET20_TO_NYU40
from ..scene import Scene
from .colors import colorize
from .ply import write_ply


def write_scannet_submission(out_dir: str | Path, scene_id: str, pred: np.ndarray,
                             ignore_id: Optional[int] = None) -> Path:
    """Write ``<out_dir>/<scene_id>.txt``: one NYU40 id per vertex per line (the ScanNet benchmark format).

    Args:
        pred: int [N] ScanNet-20 predictions (0..19), one per mesh vertex.
        ignore_id: NYU40 id written for vertices predicted as 255 (ignore); when None such predictions are an error
            (the benchmark needs a class for every vertex).
    """
    from ..store import atomic_write

    p = np.asarray(pred)
    if p.ndim != 1 or p.dtype.kind not in "iu":
        raise SASInputError(None, f"predictions for {scene_id} must be a 1-D integer array, got {p.dtype} {p.shape}")
    p = p.astype(np.int64)
    ign = p == IGNORE
    bad = ~ign & ((p < 0) | (p >= len(SCANNET20_TO_NYU40)))
    if bad.any():
        raise SASInputError(None, f"predictions for {scene_id} contain values outside 0..19 (e.g. {p[bad][0]})")
    if ign.any() and ignore_id is None:
        raise SASInputError(None, f"predictions for {scene_id} contain {int(ign.sum())} ignore (255) vertices; "
                                  "pass ignore_id to write them as a NYU40 id")
    nyu = SCANNET20_TO_NYU40[np.where(ign, 0, p)]
    if ign.any():
        nyu[ign] = int(ignore_id)
    text = "\n".join(map(str, nyu.tolist())) + "\n"
    return atomic_write(Path(out_dir) / f"{scene_id}.txt", lambda f: f.write(text), mode="w")


def read_scannet_submission(path: str | Path) -> np.ndarray:
    """int64 [N] NYU40 ids of a benchmark submission file (inverse of :func:`write_scannet_submission`)."""
    p = Path(path)
    if not p.is_file():
        raise SASInputError(p, "submission file not found")
    try:
        return np.array([int(s) for s in p.read_text().split()], dtype=np.int64)
    except ValueError:
        raise SASInputError(p, "submission file holds a non-integer line") from None


def export_labels_ply(path: str | Path, points: np.ndarray, labels: np.ndarray, faces: Optional[np.ndarray] = None,
                      num_classes: int = 255, binary: bool = True) -> Path:
    """Coloured PLY of a per-point labelling: x, y, z, red, green, blue (from :func:`~.colors.palette`) and
    ``label`` (uint8, 255 = ignore), plus the mesh faces when given."""
    pts = np.asarray(points, dtype=np.float32)
    lab = np.asarray(labels)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise SASInputError(path, f"points must be [N, 3], got {list(pts.shape)}")
    if lab.shape != (len(pts),):
        raise SASInputError(path, f"labels have shape {list(lab.shape)}, expected [{len(pts)}] (one per point)")
    lab = np.where((lab >= 0) & (lab < 256), lab, IGNORE).astype(np.uint8)
    rgb = colorize(lab, num_classes)
    vertex = {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2],
              "red": rgb[:, 0], "green": rgb[:, 1], "blue": rgb[:, 2], "label": lab}
    return write_ply(path, vertex, faces, binary=binary)


def export_scene_labels(path: str | Path, scene: Scene, labels: np.ndarray, num_classes: Optional[int] = None) -> Path:
    """:func:`export_labels_ply` for a scene (its faces included; palette size from its label set), with coordinates
    in the scene's source frame (:meth:`Scene.to_source_frame`), so the file overlays the user's original capture
    even when the scene was gravity-aligned on loading."""
    from ..labels import get_label_set

    k = num_classes if num_classes is not None else len(get_label_set(scene.label_set))
    return export_labels_ply(path, scene.to_source_frame(scene.points), labels, scene.faces, num_classes=k)
