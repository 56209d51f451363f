"""A generated room as a ScanNet-like mesh: :func:`generate_scene` = layout + tessellation + per-vertex albedo.

The mesh's vertex colour is the surface albedo sampled at the vertices (like a scan's colour, without the
rendered images' lighting and noise). Labels are NYU40 ids per vertex (ScanNet-20 via :attr:`SynthRoom.labels`),
instances are object indices. Segments (``segs.json``) are ScanNet's: the Segmentator (kThresh 0.01, segMinVerts 20)
on the mesh with its seam vertices welded, each segment split where it spans two objects (ScanNet's annotated
instances are unions of segments, so none of its segments spans two either); ``cfg.segments = "patches"`` gives the
old per-primitive patches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..labels import nyu40_to_scannet20
from .config import ROOM_TYPES, SynthConfig
from .materials import MaterialTable
from .primitives import count_vertices, tessellate
from .rooms import Layout, make_layout, room_type_for_seed


def scene_id_for(seed: int, room_type: str) -> str:
    """Scene id of a generated room, ScanNet-shaped: ``synth<seed>_<room type index>``."""
    return f"synth{int(seed):04d}_{ROOM_TYPES.index(room_type):02d}"


@dataclass
class SynthRoom:
    """A generated room: layout, mesh with ground truth, and the tables the renderer needs.

    Attributes:
        scene_id: ``synth<seed>_<room index>``.
        seed, room_type, cfg, layout: how it was made.
        spacing: tessellation grid spacing used (metres).
        vertices: float32 [N, 3] metres, z up. normals: float32 [N, 3]. colors: uint8 [N, 3] albedo.
        faces: int64 [F, 3]. face_prim: int32 [F] primitive index of each face.
        vertex_nyu40: int32 [N] NYU40 id. vertex_instance: int32 [N] object index. segments: int64 [N] segment id (0..S-1).
        prim_center / prim_rot / prim_material / prim_object / prim_long: per-primitive frame (float [P, 3],
            float [P, 3, 3]), material index, object index and long axis (for textures at render time).
        materials: the room's :class:`MaterialTable`.
    """

    scene_id: str
    seed: int
    room_type: str
    cfg: SynthConfig
    layout: Layout
    spacing: float
    vertices: np.ndarray
    normals: np.ndarray
    colors: np.ndarray
    faces: np.ndarray
    face_prim: np.ndarray
    vertex_nyu40: np.ndarray
    vertex_instance: np.ndarray
    segments: np.ndarray
    prim_center: np.ndarray
    prim_rot: np.ndarray
    prim_material: np.ndarray
    prim_object: np.ndarray
    prim_long: np.ndarray
    materials: MaterialTable

    @property
    def labels(self) -> np.ndarray:
        """uint8 [N] ScanNet-20 label per vertex (255 = ignore, e.g. ceiling, lamps)."""
        return nyu40_to_scannet20(self.vertex_nyu40)

    @property
    def object_nyu40(self) -> np.ndarray:
        """int32 [O] NYU40 id per object (instance)."""
        return np.array([o.nyu40 for o in self.layout.objects], dtype=np.int32)

    @property
    def object_names(self) -> list[str]:
        return [o.name for o in self.layout.objects]

    @property
    def num_vertices(self) -> int:
        return int(len(self.vertices))


def choose_spacing(prims, target: int, lo: float, hi: float) -> float:
    """Grid spacing in [lo, hi] whose tessellation has about ``target`` vertices (bisection on the count)."""
    def total(s):
        return sum(count_vertices(p, s) for p in prims)

    if total(hi) >= target:
        return hi
    if total(lo) <= target:
        return lo
    a, b = lo, hi
    for _ in range(14):
        m = (a * b) ** 0.5
        if total(m) > target:
            a = m
        else:
            b = m
    return float(b)


def build_mesh(layout: Layout, cfg: SynthConfig, spacing: Optional[float] = None, colors: bool = True) -> dict:
    """Tessellate every primitive of ``layout``; returns the mesh arrays of :class:`SynthRoom` (without ids).

    Args:
        spacing: grid spacing; chosen from ``cfg.target_vertices`` when None.
        colors: evaluate per-vertex albedo (skipped for render-only rooms).
    """
    prims, owner = [], []
    for oi, obj in enumerate(layout.objects):
        prims += obj.prims
        owner += [oi] * len(obj.prims)
    if spacing is None:
        spacing = choose_spacing(prims, cfg.target_vertices, *cfg.spacing_range)
    verts, normals, local, nax, tris, pid, patch = [], [], [], [], [], [], []
    off = 0
    for i, p in enumerate(prims):
        t = tessellate(p, spacing, cfg.segment_size)
        verts.append(t.verts); normals.append(t.normals); local.append(t.local); nax.append(t.normal_axis)
        tris.append(t.tris + off); pid.append(np.full(len(t.verts), i, np.int32)); patch.append(t.patch)
        off += len(t.verts)
    vprim = np.concatenate(pid)
    owner = np.asarray(owner, dtype=np.int32)
    table = MaterialTable(layout.materials)
    prim_material = np.array([p.material for p in prims], dtype=np.int64)
    prim_long = np.array([p.long_axis for p in prims], dtype=np.int64)
    out = {
        "spacing": float(spacing),
        "vertices": np.concatenate(verts).astype(np.float32),
        "normals": np.concatenate(normals).astype(np.float32),
        "faces": np.concatenate(tris).astype(np.int64),
        "face_prim": None,
        "vertex_nyu40": np.array([o.nyu40 for o in layout.objects], np.int32)[owner[vprim]],
        "vertex_instance": owner[vprim],
        "prim_center": np.array([p.center for p in prims], dtype=np.float64),
        "prim_rot": np.array([p.rot for p in prims], dtype=np.float64),
        "prim_material": prim_material,
        "prim_object": owner,
        "prim_long": prim_long,
        "materials": table,
    }
    out["face_prim"] = vprim[out["faces"][:, 0]]
    if cfg.segments == "segmentator":
        from ..geometry.superpoints import compute_superpoints

        seg = compute_superpoints(out["vertices"], out["faces"], 0.01, 20, weld=True)
        key = seg.astype(np.int64) * (1 << 20) + out["vertex_instance"].astype(np.int64)
    else:
        key = vprim.astype(np.int64) * (1 << 32) + np.concatenate(patch).astype(np.int64)
    _, out["segments"] = np.unique(key, return_inverse=True)
    out["segments"] = out["segments"].astype(np.int64).ravel()
    if colors:
        alb = table.albedo(prim_material[vprim], np.concatenate(local), prim_long[vprim],
                           np.concatenate(nax).astype(np.int64))
        out["colors"] = np.clip(np.round(alb * 255.0), 0, 255).astype(np.uint8)
    else:
        out["colors"] = np.zeros((len(out["vertices"]), 3), np.uint8)
    return out


def generate_scene(seed: int, room_type: Optional[str] = None, cfg: Optional[SynthConfig] = None,
                   spacing: Optional[float] = None, colors: bool = True) -> SynthRoom:
    """Generate one room, deterministic by ``seed`` (and ``room_type``; drawn from the seed when None).

    Args:
        seed: any non-negative integer.
        room_type: one of :data:`~sas_engine.synth.config.ROOM_TYPES`.
        cfg: mesh and rendering settings (default :class:`SynthConfig`).
        spacing: force a tessellation spacing (metres) instead of aiming at ``cfg.target_vertices``.
        colors: compute per-vertex albedo (False for render-only rooms).
    """
    cfg = cfg or SynthConfig()
    room_type = room_type or room_type_for_seed(seed)
    layout = make_layout(seed, room_type)
    mesh = build_mesh(layout, cfg, spacing, colors)
    return SynthRoom(scene_id=scene_id_for(seed, room_type), seed=int(seed), room_type=room_type, cfg=cfg,
                     layout=layout, **mesh)
