"""ScanNet v2 raw scan folders (and the synthetic world, which writes the same layout).

A scan folder ``<root>/scans/<scene_id>/`` holds:

* ``<id>_vh_clean_2.ply`` - the mesh (x, y, z, red, green, blue[, alpha], optional nx/ny/nz; faces);
* ``<id>_vh_clean_2.labels.ply`` - same vertices, property ``label`` = NYU40 id (mapped to ScanNet-20, others 255);
* ``<id>_vh_clean_2.0.010000.segs.json`` - ``segIndices`` per vertex -> :attr:`Scene.superpoints`;
* ``<id>.aggregation.json`` - ``segGroups`` (``objectId``/``id``, ``segments``) -> :attr:`Scene.instances` (-1 none);
* exported frames, in the folder itself or an ``exported/`` subfolder: ``color/<i>.jpg``, ``depth/<i>.png``
  (uint16 mm), ``pose/<i>.txt`` (4x4 camera-to-world), ``intrinsic/intrinsic_depth.txt`` and/or ``intrinsic_color.txt``.

Frames: every ``frame_stride``-th exported frame (ids sorted numerically), frames with -inf/nan poses skipped and
counted in the log. The working image is *depth-aligned*, as in OpenScene: colour and depth are both resized to the
working size and the intrinsics come from ``intrinsic_depth.txt`` (they describe the depth camera the depth pixels
were measured with, 640x480 in ScanNet), rescaled to the working size. Only when ``intrinsic_depth.txt`` is absent
are ``intrinsic_color.txt`` (for the colour image's size) used.

A folder with the marker ``sas_synthetic.json`` is the synthetic world: dataset preset ``synthetic`` (stride 1),
and per-frame ``label/<i>.png`` / ``instance/<i>.png`` fill :attr:`Frame.gt_labels` / :attr:`Frame.gt_instances`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import get_preset
from ..errors import SASInputError
from ..labels import nyu40_to_scannet20
from ..scene import Scene
from .files import image_size as file_image_size, natural_key, read_intrinsics, read_json, read_pose
from .frames import FrameSpec, frame_sequence, select_frames
from .ply import read_ply

log = logging.getLogger(__name__)

SYNTHETIC_MARKER = "sas_synthetic.json"
MESH_SUFFIX = "_vh_clean_2.ply"
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def find_mesh(folder: Path) -> Optional[Path]:
    """The ``*_vh_clean_2.ply`` mesh of a scan folder (``<folder name>_vh_clean_2.ply`` preferred), or None."""
    own = folder / f"{folder.name}{MESH_SUFFIX}"
    if own.is_file():
        return own
    cands = sorted(p for p in folder.glob(f"*{MESH_SUFFIX}") if p.is_file())
    return cands[0] if cands else None


def is_scannet_folder(folder: Path) -> bool:
    return folder.is_dir() and (find_mesh(folder) is not None or (folder / SYNTHETIC_MARKER).is_file())


def mesh_arrays(ply: dict, path: Path) -> dict:
    """points / colors / normals / faces from a :func:`read_ply` result (colours 0 when absent)."""
    v = ply["vertex"]
    for k in ("x", "y", "z"):
        if k not in v:
            raise SASInputError(path, f"PLY vertices have no '{k}' property")
    pts = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    n = len(pts)
    if all(k in v for k in ("red", "green", "blue")):
        col = np.stack([v["red"], v["green"], v["blue"]], axis=1)
        if col.dtype.kind == "f":  # some tools write float colours in [0, 1]
            col = np.round(np.clip(col, 0, 1) * 255)
        col = np.clip(col, 0, 255).astype(np.uint8)
    else:
        col = np.zeros((n, 3), np.uint8)
    normals = None
    if all(k in v for k in ("nx", "ny", "nz")):
        normals = np.stack([v["nx"], v["ny"], v["nz"]], axis=1).astype(np.float32)
    faces = ply["face"]
    if faces is not None and faces.size and (faces.min() < 0 or faces.max() >= n):
        raise SASInputError(path, f"faces index vertices outside 0..{n - 1}")
    return {"points": pts, "colors": col, "normals": normals, "faces": faces}


def read_scannet_labels(path: Path, num_vertices: int) -> np.ndarray:
    """ScanNet-20 labels (uint8, 255 ignore) from a ``.labels.ply`` whose ``label`` property holds NYU40 ids."""
    ply = read_ply(path)
    v = ply["vertex"]
    if "label" not in v:
        raise SASInputError(path, "labels PLY has no 'label' vertex property")
    n = len(v["label"])
    if n != num_vertices:
        raise SASInputError(path, f"labels PLY has {n} vertices but the mesh has {num_vertices}")
    return nyu40_to_scannet20(v["label"])


def read_segs(path: Path, num_vertices: int) -> np.ndarray:
    """int64 [N] superpoint id per vertex from a ScanNet ``.segs.json``."""
    data = read_json(path, "segments file")
    seg = data.get("segIndices") if isinstance(data, dict) else None
    if seg is None:
        raise SASInputError(path, "segments file has no 'segIndices' list")
    try:
        seg = np.asarray(seg, dtype=np.int64)
    except (TypeError, ValueError):
        raise SASInputError(path, "'segIndices' is not a list of integers") from None
    if seg.shape != (num_vertices,):
        raise SASInputError(path, f"'segIndices' has {seg.size} entries but the mesh has {num_vertices} vertices")
    return seg


def read_aggregation(path: Path, segs: np.ndarray) -> np.ndarray:
    """int64 [N] instance id per vertex (-1 none) from a ScanNet ``.aggregation.json`` and the vertex segments."""
    data = read_json(path, "aggregation file")
    groups = data.get("segGroups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        raise SASInputError(path, "aggregation file has no 'segGroups' list")
    useg, inv = np.unique(segs, return_inverse=True)
    seg_to_inst = np.full(len(useg), -1, dtype=np.int64)
    for g in groups:
        try:
            oid = int(g.get("objectId", g.get("id")))
            s = np.asarray(g["segments"], dtype=np.int64)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise SASInputError(path, f"malformed segGroup entry {str(g)[:80]!r}") from None
        pos = np.searchsorted(useg, s)
        ok = (pos < len(useg)) & (useg[np.minimum(pos, len(useg) - 1)] == s)
        seg_to_inst[pos[ok]] = oid
    return seg_to_inst[inv]


def _frames_dir(folder: Path) -> Optional[Path]:
    for d in (folder, folder / "exported"):
        if (d / "color").is_dir() and (d / "pose").is_dir():
            return d
    return None


def scannet_frame_specs(fdir: Path, stride: int, depth_scale: float, synthetic: bool, source: str) -> list[FrameSpec]:
    """Frame specs of an exported ScanNet frame folder (colour, depth, pose, intrinsic)."""
    colors = {p.stem: p for p in (fdir / "color").iterdir() if p.suffix.lower() in IMAGE_EXTS}
    ids = sorted(colors, key=natural_key)
    if not ids:
        return []
    intr = fdir / "intrinsic"
    has_depth = (fdir / "depth").is_dir()
    if has_depth and (intr / "intrinsic_depth.txt").is_file():
        K, ksize = read_intrinsics(intr / "intrinsic_depth.txt"), None  # refers to the depth image size
    elif (intr / "intrinsic_color.txt").is_file():
        K = read_intrinsics(intr / "intrinsic_color.txt")
        ksize = file_image_size(colors[ids[0]])
    else:
        raise SASInputError(intr / "intrinsic_depth.txt", "intrinsics file not found (need intrinsic_depth.txt or "
                                                          "intrinsic_color.txt)")
    kept, poses = select_frames(ids, stride, lambda i: read_pose(fdir / "pose" / f"{i}.txt"), source)
    specs = []
    for fid, pose in zip(kept, poses):
        specs.append(FrameSpec(
            frame_id=fid, color=colors[fid], depth=(fdir / "depth" / f"{fid}.png") if has_depth else None,
            pose=pose, intrinsics=K, intrinsics_size=ksize, depth_scale=depth_scale,
            label=(fdir / "label" / f"{fid}.png") if synthetic else None,
            instance=(fdir / "instance" / f"{fid}.png") if synthetic else None))
    return specs


def load_scannet_folder(folder: str | Path, dataset: Optional[str] = None, *, frame_stride: Optional[int] = None,
                        image_size: Optional[tuple[int, int]] = None) -> Scene:
    """Load a ScanNet raw scan folder (or a synthetic-world scan folder) as a :class:`Scene`.

    Args:
        folder: the scan folder ``.../scans/<scene_id>``.
        dataset: preset name; default ``synthetic`` when the marker file exists, else ``scannet``.
        frame_stride: use every n-th frame (default: the preset's, 20 for ScanNet, 1 synthetic).
        image_size: working (width, height) (default: the preset's, 320x240).
    """
    folder = Path(folder)
    synthetic = (folder / SYNTHETIC_MARKER).is_file()
    if synthetic:
        marker = read_json(folder / SYNTHETIC_MARKER, "synthetic-world marker")
        log.debug("%s: synthetic world %s", folder, marker)
    preset = get_preset(dataset or ("synthetic" if synthetic else "scannet"))
    mesh_path = find_mesh(folder)
    if mesh_path is None:
        raise SASInputError(folder / f"{folder.name}{MESH_SUFFIX}", "mesh file not found")
    scene_id = mesh_path.name[: -len(MESH_SUFFIX)]
    m = mesh_arrays(read_ply(mesh_path), mesh_path)
    n = len(m["points"])
    if n == 0:
        raise SASInputError(mesh_path, "scene is empty (0 vertices)")
    labels = instances = segs = None
    lab_path = folder / f"{scene_id}_vh_clean_2.labels.ply"
    if lab_path.is_file():
        labels = read_scannet_labels(lab_path, n)
    seg_path = folder / f"{scene_id}_vh_clean_2.0.010000.segs.json"
    if not seg_path.is_file():
        seg_path = next(iter(sorted(folder.glob(f"{scene_id}_vh_clean_2*.segs.json"))), seg_path)
    if seg_path.is_file():
        segs = read_segs(seg_path, n)
    agg_path = folder / f"{scene_id}.aggregation.json"
    if not agg_path.is_file():
        agg_path = folder / f"{scene_id}_vh_clean.aggregation.json"
    if agg_path.is_file():
        if segs is None:
            raise SASInputError(agg_path, "aggregation file needs the segments file (.segs.json), which is missing")
        instances = read_aggregation(agg_path, segs)
    frames = []
    fdir = _frames_dir(folder)
    if fdir is not None:
        stride = frame_stride or preset.frame_stride
        specs = scannet_frame_specs(fdir, stride, preset.depth_scale, synthetic, str(folder))
        frames = frame_sequence(specs, tuple(image_size or preset.image_size))
    else:
        log.info("%s: no exported frames (color/, depth/, pose/) found; loading geometry only", folder)
    return Scene(scene_id=scene_id, points=m["points"], colors=m["colors"], normals=m["normals"], faces=m["faces"],
                 labels=labels, instances=instances, superpoints=segs, frames=frames, label_set=preset.label_set,
                 dataset=preset.name, source=str(folder))
