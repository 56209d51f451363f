"""Deterministic, cached TSDF reconstruction of a capture that comes without a mesh.

Every per-point artefact in the store belongs to one point set in one order (its geometry digest), so a capture's
reconstruction must give the same points in the same order every time. Two things make sure of that:

* **Canonical order.** open3d's hash-map TSDF volume integrates blocks in parallel, so the vertices of the extracted
  mesh come out in a different order in every process (same coordinates). :func:`canonical_mesh` sorts the vertices
  by their coordinates (then colour), remaps and sorts the faces, and recomputes area-weighted vertex normals in that
  order, so a recomputation gives identical arrays.
* **Written once, reused.** :func:`cached_reconstruction` writes the mesh as ``sas_reconstruction.ply`` next to the
  capture (binary PLY, openable in any mesh viewer) with a sidecar ``sas_reconstruction.json``: format version, the
  reconstruction config, the frames' digest (:func:`sas_engine.scene.frames_digest`: frame files, poses, intrinsics,
  depth scale, working size) and the mesh's geometry digest. Later loads reuse it when all of these match and the
  PLY still has the recorded digest; otherwise they reconstruct again (and say why in the log). When the capture
  folder is not writable the pair goes to ``$SAS_CACHE/reconstructions/`` (default ``~/.cache/sas/...``) instead.
  Both files are written atomically (temp file + rename), the PLY first, so a crash never leaves a sidecar that
  vouches for a half-written mesh.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import SASInputError
from ..scene import Frame, frames_digest, geometry_digest

log = logging.getLogger(__name__)

RECONSTRUCTION_VERSION = 1
"""Bump when the reconstruction or its canonical order changes; older cached meshes are then rebuilt."""
MESH_NAME = "sas_reconstruction.ply"
SIDECAR_NAME = "sas_reconstruction.json"
DEPTH_TRUNC = 6.0
"""Depth beyond this many metres is ignored by TSDF integration."""


def canonical_mesh(points: np.ndarray, colors: np.ndarray, faces: np.ndarray) -> dict:
    """The same mesh in a canonical order: vertices sorted by (x, y, z, r, g, b), each face rotated to start at its
    smallest vertex index (orientation kept) and faces sorted; normals recomputed (area-weighted, unit length).

    Returns ``{"points" float32 [N,3], "colors" uint8 [N,3], "normals" float32 [N,3], "faces" int64 [F,3]}``."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    colors = np.ascontiguousarray(colors, dtype=np.uint8)
    order = np.lexsort((colors[:, 2], colors[:, 1], colors[:, 0], points[:, 2], points[:, 1], points[:, 0]))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    pts, col = points[order], colors[order]
    f = rank[np.asarray(faces, dtype=np.int64)] if len(faces) else np.zeros((0, 3), np.int64)
    if len(f):
        shift = f.argmin(1)
        idx = (np.arange(3)[None, :] + shift[:, None]) % 3
        f = np.take_along_axis(f, idx, 1)
        f = f[np.lexsort((f[:, 2], f[:, 1], f[:, 0]))]
    return {"points": pts, "colors": col, "normals": vertex_normals(pts, f), "faces": f}


def vertex_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (float32 [N, 3]; zero for vertices in no face), summed in face order."""
    n = np.zeros((len(points), 3), np.float64)
    if len(faces):
        p = points.astype(np.float64)
        fn = np.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]])
        for k in range(3):
            np.add.at(n, faces[:, k], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def tsdf_reconstruct(frames: Sequence[Frame], voxel: float, depth_trunc: float = DEPTH_TRUNC,
                     source: str = "", progress: bool = True) -> dict:
    """Integrate RGB-D frames into a sparse TSDF volume and extract a triangle mesh (marching cubes), in
    :func:`canonical_mesh` order.

    Uses open3d's ``t.geometry.VoxelBlockGrid`` (the maintained, hash-based successor of
    ``ScalableTSDFVolume``; the legacy class extracts empty meshes with the pinned open3d 0.20 on CPU). SDF
    truncation is 8 voxels, depth beyond ``depth_trunc`` metres is ignored, and every observed voxel is meshed
    (a higher observation-count threshold left holes at block borders on low-resolution frames).

    Returns ``{"points" float32 [N,3], "colors" uint8 [N,3], "normals" float32 [N,3], "faces" int64 [F,3]}``.
    """
    import open3d as o3d
    import open3d.core as o3c
    from tqdm import tqdm

    dev = o3c.Device("CPU:0")
    vbg = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"), attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
        attr_channels=((1), (1), (3)), voxel_size=float(voxel), block_resolution=8, block_count=2000, device=dev)
    used = 0
    for fr in tqdm(frames, desc="TSDF integration", leave=False, disable=not progress):
        if fr.depth is None:
            raise SASInputError(source, f"frame {fr.frame_id} has no depth image: a capture without a mesh is "
                                        "reconstructed by TSDF fusion, which needs depth for every frame (or give a "
                                        "mesh.ply / points.ply)")
        if not ((fr.depth > 0) & (fr.depth < depth_trunc)).any():
            continue
        depth = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(fr.depth, dtype=np.float32)))
        color = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(fr.color, dtype=np.float32) / 255.0))
        K = o3c.Tensor(np.asarray(fr.intrinsics, dtype=np.float64))
        E = o3c.Tensor(np.linalg.inv(fr.pose).astype(np.float64))
        blocks = vbg.compute_unique_block_coordinates(depth, K, E, 1.0, depth_trunc)
        if blocks.shape[0] == 0:
            continue
        vbg.integrate(blocks, depth, color, K, E, 1.0, depth_trunc)
        used += 1
    if used == 0:
        raise SASInputError(source, "TSDF reconstruction produced an empty mesh: no frame has valid depth "
                                    "(check depth units and poses)")
    mesh = vbg.extract_triangle_mesh(weight_threshold=0.5).to_legacy()
    pts = np.asarray(mesh.vertices, dtype=np.float32)
    if len(pts) == 0:
        raise SASInputError(source, f"TSDF reconstruction from {used} frames produced an empty mesh "
                                    "(check depth units and poses)")
    colors = np.clip(np.round(np.asarray(mesh.vertex_colors) * 255), 0, 255).astype(np.uint8)
    return canonical_mesh(pts, colors, np.asarray(mesh.triangles, dtype=np.int64))


def cache_root() -> Path:
    """Fallback folder of reconstructions of read-only captures: ``$SAS_CACHE/reconstructions`` (default
    ``~/.cache/sas/reconstructions``)."""
    return Path(os.environ.get("SAS_CACHE", Path.home() / ".cache" / "sas")).expanduser() / "reconstructions"


def _locations(folder: Path, key_digest: str) -> list[Path]:
    return [folder, cache_root() / f"{folder.name}-{key_digest}"]


def _read_cached(where: Path, key: dict) -> Optional[dict]:
    from .ply import read_ply
    from .scannet import mesh_arrays

    side, mesh = where / SIDECAR_NAME, where / MESH_NAME
    if not side.is_file() or not mesh.is_file():
        return None
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable (%s); reconstructing again", side, e)
        return None
    if meta.get("key") != key:
        log.info("%s: made from other frames or settings; reconstructing again", side)
        return None
    try:
        m = mesh_arrays(read_ply(mesh), mesh)
    except SASInputError as e:
        log.warning("%s; reconstructing again", e)
        return None
    if geometry_digest(m["points"]) != meta.get("geometry"):
        log.warning("%s: points differ from those recorded in %s (edited?); reconstructing again", mesh, side)
        return None
    if m["faces"] is None:
        m["faces"] = np.zeros((0, 3), np.int64)
    m["faces"] = np.asarray(m["faces"], dtype=np.int64)
    return m


def _write(where: Path, m: dict, key: dict) -> None:
    from ..store import atomic_write
    from .ply import write_ply

    where.mkdir(parents=True, exist_ok=True)
    p, c, nrm = m["points"], m["colors"], m["normals"]
    write_ply(where / MESH_NAME, {"x": p[:, 0], "y": p[:, 1], "z": p[:, 2], "nx": nrm[:, 0], "ny": nrm[:, 1],
                                  "nz": nrm[:, 2], "red": c[:, 0], "green": c[:, 1], "blue": c[:, 2]}, m["faces"])
    meta = {"format_version": RECONSTRUCTION_VERSION, "key": key, "geometry": geometry_digest(p),
            "mesh": MESH_NAME, "points": int(len(p)), "faces": int(len(m["faces"]))}
    text = json.dumps(meta, indent=1)
    atomic_write(where / SIDECAR_NAME, lambda f: f.write(text), mode="w")


def cached_reconstruction(folder: str | Path, frames: Sequence[Frame], voxel: float,
                          depth_trunc: float = DEPTH_TRUNC, source: str = "", progress: bool = True) -> dict:
    """The capture's TSDF mesh (see the module docstring): read from ``sas_reconstruction.ply`` when it was made
    from these frames with these settings, else reconstructed, written and returned. Same result every call."""
    import hashlib

    folder = Path(folder)
    key = {"format_version": RECONSTRUCTION_VERSION, "voxel": float(voxel), "depth_trunc": float(depth_trunc),
           "frames": frames_digest(frames), "num_frames": len(frames)}
    kd = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=6).hexdigest()
    places = _locations(folder, kd)
    for where in places:
        got = _read_cached(where, key)
        if got is not None:
            log.info("%s: reusing the reconstruction %s (%d points)", folder, where / MESH_NAME, len(got["points"]))
            return got
    log.info("%s: no mesh given, reconstructing one by TSDF fusion of %d frames (voxel %.3f m); it is written "
             "once and reused", folder, len(frames), voxel)
    m = tsdf_reconstruct(frames, voxel, depth_trunc, source=source or str(folder), progress=progress)
    for where in places:
        try:
            _write(where, m, key)
            log.info("%s: reconstruction written to %s", folder, where / MESH_NAME)
            break
        except OSError as e:
            log.info("cannot write the reconstruction into %s (%s); trying the next place", where, e)
    else:
        log.warning("%s: the reconstruction could not be cached anywhere; it will be recomputed next time", folder)
    return m
