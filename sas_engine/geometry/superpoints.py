"""Superpoints: Felzenszwalb-Huttenlocher graph segmentation of a mesh on vertex normals, as ScanNet's Segmentator.

The algorithm follows the facts of ScanNet's ``Segmentator/segmentator.cpp`` (written anew here):

* face normal = unit ``cross(p2 - p1, p3 - p1)``; vertex normal = running *mean* of the unit normals of its faces
  (not area-weighted, and not re-normalised afterwards);
* three graph edges per face, in the order (i1, i2), (i1, i3), (i3, i2); shared edges appear once per face;
* edge weight ``w = 1 - n_a . n_b``; when the edge is convex, ``n_b . (p_b - p_a) / |p_b - p_a| > 0``, it is squared;
* edges sorted by weight ascending; a disjoint-set forest (union by rank, path shortcut for the queried element)
  starts with threshold ``kThresh`` for every vertex; an edge joins components a, b when
  ``w <= thr[a]`` and ``w <= thr[b]``, and the joined root gets ``thr = w + kThresh / size``;
* a second pass over the sorted edges joins any two different components when either is smaller than segMinVerts;
* the segment id of a vertex is its component's root, a vertex index (this is what ``segs.json`` stores).

Deviations (documented, harmless): edges of equal weight are sorted stably (the C++ ``std::sort`` is unstable, so
ties may be ordered differently), and degenerate (zero-area) faces do not contribute to vertex normals (in the C++
they produce NaN normals); an edge between coincident vertices is treated as not convex.

Defaults: kThresh 0.01 and segMinVerts 20 (ScanNet's shipped ``*.0.010000.segs.json``); the SAS release uses 60.
Without a mesh (lidar) each point is its own superpoint; :func:`compute_superpoints_knn` is a kNN-graph variant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from ..config import DatasetPreset, get_preset
from ..errors import SASInputError

SAS_RELEASE_MIN_VERTS = 60
"""segMinVerts used by the SAS release for its superpoints (the presets carry ScanNet's official 20)."""

def _check_points(points, what="points") -> np.ndarray:
    p = np.asarray(points)
    if p.ndim != 2 or p.shape[1] != 3:
        raise SASInputError(None, f"{what} must be [N, 3], got {list(p.shape)}")
    p = p.astype(np.float32, copy=False)
    if not np.isfinite(p).all():
        raise SASInputError(None, f"{what} contain NaN or infinite values")
    return p


def _check_faces(faces, n: int) -> np.ndarray:
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3:
        raise SASInputError(None, f"faces must be [F, 3], got {list(f.shape)}")
    f = f.astype(np.int64, copy=False)
    if f.size and (f.min() < 0 or f.max() >= n):
        raise SASInputError(None, f"faces index vertices outside 0..{n - 1}")
    return f


def segmentator_vertex_normals(points, faces) -> np.ndarray:
    """Vertex normals as the Segmentator computes them: float32 [N, 3] mean of the unit normals of incident faces.

    Not re-normalised (a vertex on a crease gets a normal shorter than 1); vertices in no face get zero.
    """
    p = _check_points(points)
    f = _check_faces(faces, p.shape[0])
    n = p.shape[0]
    p1, p2, p3 = p[f[:, 0]], p[f[:, 1]], p[f[:, 2]]
    fn = np.cross(p2 - p1, p3 - p1)
    ln = np.linalg.norm(fn, axis=1)
    good = ln > 0
    fn = fn[good] / ln[good, None]
    fg = f[good]
    counts = np.bincount(fg.ravel(), minlength=n).astype(np.float64)
    normals = np.zeros((n, 3), np.float64)
    for c in range(3):
        w = np.repeat(fn[:, c].astype(np.float64), 3)
        normals[:, c] = np.bincount(fg.ravel(), weights=w, minlength=n)
    normals /= np.maximum(counts, 1.0)[:, None]
    return normals.astype(np.float32)


def mesh_edges(faces) -> tuple[np.ndarray, np.ndarray]:
    """Graph edges of a triangle mesh in the Segmentator's order: per face (i1,i2), (i1,i3), (i3,i2). int64 [3F] each."""
    f = np.asarray(faces, dtype=np.int64)
    a = np.stack([f[:, 0], f[:, 0], f[:, 2]], axis=1).ravel()
    b = np.stack([f[:, 1], f[:, 2], f[:, 1]], axis=1).ravel()
    return a, b


def edge_weights(points, normals, a, b, oriented: bool = True) -> np.ndarray:
    """float32 edge weights ``1 - n_a . n_b``, squared on convex edges (``n_b . unit(p_b - p_a) > 0``).

    With ``oriented=False`` (normals of unknown sign, e.g. PCA normals of a point cloud) the weight is
    ``1 - |n_a . n_b|`` and no convexity rule applies.
    """
    p = np.asarray(points, dtype=np.float32)
    nrm = np.asarray(normals, dtype=np.float32)
    na, nb = nrm[a], nrm[b]
    dot = np.einsum("ij,ij->i", na, nb)
    if not oriented:
        return (1.0 - np.abs(dot)).astype(np.float32)
    d = p[b] - p[a]
    dd = np.linalg.norm(d, axis=1)
    dot2 = np.einsum("ij,ij->i", nb, d) / np.where(dd > 0, dd, 1.0)
    ww = (1.0 - dot).astype(np.float32)
    convex = (dot2 > 0) & (dd > 0)
    ww[convex] = ww[convex] * ww[convex]
    return ww


def segment_graph(num_vertices: int, a, b, w, k_thresh: float = 0.01, min_verts: int = 20) -> np.ndarray:
    """Felzenszwalb-Huttenlocher on an explicit graph + small-segment merging; int64 [N] root vertex per vertex.

    Args:
        num_vertices: N.
        a, b: int [E] edge end points; w: float [E] weights (sorted here, stably).
        k_thresh: the ``c`` constant (larger -> larger segments).
        min_verts: components smaller than this are merged into a neighbour along the sorted edges.
    """
    if k_thresh < 0:
        raise SASInputError(None, f"k_thresh must be >= 0, got {k_thresh}")
    w = np.asarray(w, dtype=np.float32)
    order = np.argsort(w, kind="stable")
    ea = np.ascontiguousarray(np.asarray(a, dtype=np.int64)[order])
    eb = np.ascontiguousarray(np.asarray(b, dtype=np.int64)[order])
    ew = np.ascontiguousarray(w[order])
    from ._fh_kernels import segment_sorted

    return segment_sorted(int(num_vertices), ea, eb, ew, np.float32(k_thresh), int(min_verts))


def weld_vertices(points, faces, tol: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge vertices that coincide within ``tol`` metres (a mesh written part by part repeats the vertices of its
    seams; a reconstruction such as ScanNet's does not).

    Returns ``(keep, canon, welded_faces)``: int64 [M] the first original index of each merged vertex, int64 [N] the
    merged vertex of every original one, and int64 [F, 3] faces re-indexed into the merged vertices.
    """
    p = _check_points(points)
    f = _check_faces(faces, p.shape[0])
    q = np.round(p.astype(np.float64) / float(tol)).astype(np.int64)
    _, keep, canon = np.unique(q, axis=0, return_index=True, return_inverse=True)
    canon = canon.astype(np.int64).reshape(-1)
    return keep.astype(np.int64), canon, canon[f]


def compute_superpoints(points, faces, k_thresh: float = 0.01, min_verts: int = 20, weld: bool = False) -> np.ndarray:
    """ScanNet Segmentator superpoints of a triangle mesh: int64 [N] segment id per vertex.

    Ids are the vertex index of each segment's representative, exactly like ``segIndices`` of ScanNet's
    ``segs.json`` (not consecutive; use :func:`compact_ids` for 0..S-1). Vertices in no face are singletons.

    Args:
        points: float [N, 3] mesh vertices.
        faces: int [F, 3] triangles.
        k_thresh: Felzenszwalb threshold (ScanNet 0.01).
        min_verts: segMinVerts (ScanNet 20, SAS release 60).
        weld: segment the mesh with coincident vertices merged (:func:`weld_vertices`) and give every duplicate its
            merged vertex's segment; ids stay original vertex indices. Without it the graph has no edge across a
            seam, so no segment ever crosses one. A mesh without duplicates gets the same segments either way.
    """
    p = _check_points(points)
    f = _check_faces(faces, p.shape[0])
    if weld:
        keep, canon, wf = weld_vertices(p, f)
        if len(keep) < p.shape[0]:
            return keep[compute_superpoints(p[keep], wf, k_thresh, min_verts)][canon]
    normals = segmentator_vertex_normals(p, f)
    a, b = mesh_edges(f)
    w = edge_weights(p, normals, a, b)
    return segment_graph(p.shape[0], a, b, w, k_thresh, min_verts)


def estimate_normals(points, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """PCA normals of a point cloud (unit, sign arbitrary) and the kNN indices int64 [N, k] (self excluded)."""
    from scipy.spatial import cKDTree

    p = _check_points(points).astype(np.float64)
    k = int(min(k, p.shape[0] - 1))
    if k < 1:
        return np.zeros_like(p, dtype=np.float32), np.zeros((p.shape[0], 0), np.int64)
    _, nn = cKDTree(p).query(p, k=k + 1)
    nn = nn[:, 1:].astype(np.int64)
    nb = p[nn] - p[nn].mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", nb, nb)
    _, vecs = np.linalg.eigh(cov)
    return vecs[:, :, 0].astype(np.float32), nn


def compute_superpoints_knn(points, normals=None, k: int = 10, k_thresh: float = 0.01,
                            min_verts: int = 20) -> np.ndarray:
    """Felzenszwalb superpoints on a kNN graph of a point cloud without a mesh: int64 [N] root ids.

    Edges join each point to its ``k`` nearest neighbours (ordered by point, then by distance). Given oriented
    ``normals`` the Segmentator's weight (with the convexity rule) is used; otherwise PCA normals of the
    neighbourhood with weight ``1 - |n_a . n_b|``.
    """
    p = _check_points(points)
    est, nn = estimate_normals(p, k)
    oriented = normals is not None
    nrm = _check_points(normals, "normals") if oriented else est
    if nrm.shape[0] != p.shape[0]:
        raise SASInputError(None, f"normals have {nrm.shape[0]} rows, points {p.shape[0]}")
    a = np.repeat(np.arange(p.shape[0], dtype=np.int64), nn.shape[1])
    b = nn.ravel()
    w = edge_weights(p, nrm, a, b, oriented=oriented)
    return segment_graph(p.shape[0], a, b, w, k_thresh, min_verts)


def compact_ids(superpoints) -> np.ndarray:
    """Relabel arbitrary segment ids to 0..S-1 (in order of increasing original id): int64 [N]."""
    return np.unique(np.asarray(superpoints), return_inverse=True)[1].astype(np.int64).reshape(-1)


@dataclass(frozen=True)
class SuperpointConfig:
    """How superpoints are obtained for a scene."""

    k_thresh: float = 0.01
    """Felzenszwalb threshold (ScanNet official 0.01)."""
    min_verts: int = 20
    """segMinVerts: minimum segment size (ScanNet official 20; SAS release 60)."""
    method: str = "auto"
    """``auto`` (official ids if the scene has them, else mesh segmentation, else one superpoint per point),
    ``mesh`` (always recompute from the mesh), ``knn`` (kNN graph on the points), ``points`` (one per point)."""
    knn_k: int = 10
    """Neighbours per point for the ``knn`` method."""
    weld: bool = True
    """Merge coincident mesh vertices before segmenting (``mesh`` method; see :func:`compute_superpoints`). ScanNet's
    meshes have no duplicates, so their segments are unchanged; meshes exported part by part get segments that
    cross the seams."""

    @classmethod
    def from_preset(cls, preset: Union[str, DatasetPreset], *, sas_release: bool = False) -> "SuperpointConfig":
        """kThresh / segMinVerts of a dataset preset; ``sas_release`` uses segMinVerts 60 as the SAS release."""
        p = get_preset(preset) if isinstance(preset, str) else preset
        return cls(k_thresh=p.seg_k_thresh, min_verts=SAS_RELEASE_MIN_VERTS if sas_release else p.seg_min_verts,
                   method="auto" if p.has_mesh else "points")


METHODS = ("auto", "mesh", "knn", "points")


def superpoints_for_scene(scene, preset: Union[None, str, DatasetPreset, SuperpointConfig] = None) -> np.ndarray:
    """Superpoint id per point of a :class:`~sas_engine.scene.Scene`: int64 [N].

    ``auto``: the scene's own ``superpoints`` (official ``segs.json``, read by the loader) when present; else the
    Segmentator on the mesh when the scene has faces and the preset has meshes; else one superpoint per point.

    Args:
        scene: the scene.
        preset: a :class:`SuperpointConfig`, a preset name / object (-> :meth:`SuperpointConfig.from_preset`),
            or ``None`` for the scene's own dataset preset.
    """
    cfg = preset if isinstance(preset, SuperpointConfig) else SuperpointConfig.from_preset(
        preset if preset is not None else scene.dataset)
    if cfg.method not in METHODS:
        raise SASInputError(None, f"unknown superpoint method {cfg.method!r}; known: {', '.join(METHODS)}")
    n = scene.num_points
    method = cfg.method
    if method == "auto":
        if scene.superpoints is not None:
            return np.asarray(scene.superpoints, dtype=np.int64)
        method = "mesh" if scene.faces is not None and len(scene.faces) else "points"
    if method == "mesh":
        if scene.faces is None or not len(scene.faces):
            raise SASInputError(scene.source or scene.scene_id, "superpoint method 'mesh' needs a mesh (no faces)")
        return compute_superpoints(scene.points, scene.faces, cfg.k_thresh, cfg.min_verts, weld=cfg.weld)
    if method == "knn":
        return compute_superpoints_knn(scene.points, scene.normals, cfg.knn_k, cfg.k_thresh, cfg.min_verts)
    return np.arange(n, dtype=np.int64)
