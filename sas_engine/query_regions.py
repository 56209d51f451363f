"""Regions of a per-point score: the heat-map normalisation and the connected regions above a threshold (what the
page lists as "top regions" with their size, mean / peak score and centre)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import SASInputError


def normalize_heat(sim: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Min-max normalise a similarity vector over its finite entries.

    Returns:
        (heat float32 [N] in [0, 1] with NaN kept, vmin, vmax); a constant vector maps to 0.
    """
    sim = np.asarray(sim, dtype=np.float32)
    fin = np.isfinite(sim)
    if not fin.any():
        return np.full_like(sim, np.nan), float("nan"), float("nan")
    lo, hi = float(sim[fin].min()), float(sim[fin].max())
    heat = (sim - lo) / (hi - lo) if hi > lo else np.where(fin, 0.0, np.nan).astype(np.float32)
    return heat.astype(np.float32, copy=False), lo, hi


@dataclass
class ObjectHit:
    """One connected region above the query threshold.

    Attributes:
        indices: int64 point indices of the region.
        score: mean cosine similarity over the region.
        peak: highest cosine in the region.
        center: float32 [3] centroid.
    """

    indices: np.ndarray
    score: float
    peak: float
    center: np.ndarray

    @property
    def size(self) -> int:
        return int(self.indices.shape[0])


def voxel_components(points: np.ndarray, voxel: float) -> np.ndarray:
    """Connected components of points through 26-connected occupied voxels of edge ``voxel``: int64 [N] component."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pts = np.asarray(points, dtype=np.float64)
    if pts.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    g = np.floor((pts - pts.min(0)) / float(voxel)).astype(np.int64) + 1
    dims = g.max(0) + 2
    key = (g[:, 0] * dims[1] + g[:, 1]) * dims[2] + g[:, 2]
    ukey, inv = np.unique(key, return_inverse=True)
    rows, cols = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                if (dx, dy, dz) <= (0, 0, 0):
                    continue  # 13 forward offsets cover every neighbour pair once
                nk = ukey + (dx * dims[1] + dy) * dims[2] + dz
                pos = np.searchsorted(ukey, nk)
                pos = np.minimum(pos, len(ukey) - 1)
                hit = ukey[pos] == nk
                rows.append(np.nonzero(hit)[0])
                cols.append(pos[hit])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    m = len(ukey)
    adj = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(m, m))
    _, comp = connected_components(adj, directed=False)
    return comp[inv].astype(np.int64)


def group_index(groups: np.ndarray) -> np.ndarray:
    """int64 [N] a dense-enough index of each point's group for ``np.bincount``: the ids themselves when they are
    non-negative and at most 4N + 1024 (superpoint ids: no sort needed), else their rank (``np.unique``)."""
    g = np.asarray(groups).reshape(-1)
    if g.size and g.dtype.kind in "iu" and int(g.min()) >= 0 and int(g.max()) <= 4 * g.size + 1024:
        return g.astype(np.int64, copy=False)
    return np.unique(g, return_inverse=True)[1].reshape(-1)


def top_objects(sim: np.ndarray, points: np.ndarray, threshold: float, k: int = 5, *,
                groups: Optional[np.ndarray] = None, voxel: float = 0.05, min_points: int = 10,
                normalize: bool = True) -> list[ObjectHit]:
    """The ``k`` best connected regions whose (superpoint-averaged) score is >= ``threshold``.

    Args:
        sim: float32 [N] score: cosine similarity, or a calibrated relevance with ``normalize=False`` (NaN = no
            feature).
        points: float32 [N, 3] positions.
        threshold: in [0, 1]: on the min-max normalised score (see :func:`normalize_heat`) when ``normalize``, else
            on the score itself (a calibrated relevance, :meth:`QueryEngine.relevance`).
        k: how many regions to return, best mean score first.
        groups: optional int64 [N] superpoint / instance id: the similarity is averaged per group first, so regions
            snap to whole superpoints.
        voxel: connectivity distance in metres (regions touching through occupied voxels of this edge are one).
        min_points: regions smaller than this are dropped.
    """
    return find_regions(sim, points, threshold, groups=groups, voxel=voxel, min_points=min_points,
                        normalize=normalize)[0][: max(0, int(k))]


def find_regions(sim: np.ndarray, points: np.ndarray, threshold: float, *, groups: Optional[np.ndarray] = None,
                 voxel: float = 0.05, min_points: int = 10,
                 normalize: bool = False) -> tuple[list[ObjectHit], np.ndarray]:
    """Every region of :func:`top_objects` (best first) and the score it thresholds.

    Returns:
        (regions, display): ``display`` float32 [N] is the (superpoint-averaged) score inside the regions, -1 at the
        other points with a feature (below any threshold: an app shows them uncoloured) and NaN where there is no
        feature, so a map coloured from it shows exactly the regions: an empty region list is an empty map.
    """
    sim = np.asarray(sim, dtype=np.float32)
    n = sim.shape[0]
    if points.shape[0] != n:
        raise SASInputError(None, f"similarity has {n} entries for {points.shape[0]} points")
    fin = np.isfinite(sim)
    if groups is not None:
        groups = np.asarray(groups).reshape(-1)
        if groups.shape[0] != n:
            raise SASInputError(None, f"groups has {groups.shape[0]} entries for {n} points")
        ginv = group_index(groups)
        cnt = np.bincount(ginv, weights=fin)
        tot = np.bincount(ginv, weights=np.where(fin, sim, np.float32(0)))
        with np.errstate(invalid="ignore", divide="ignore"):
            gmean = (tot / cnt).astype(np.float32)  # float64 sums, as before; the score is float32
        score = np.where(fin, gmean[ginv], np.float32(np.nan))
    else:
        score = sim  # NaN where there is no feature; +-inf never reaches the threshold test below
    heat = normalize_heat(score)[0] if normalize else score
    display = np.where(fin, np.float32(-1.0), np.float32(np.nan)).astype(np.float32)
    sel = np.nonzero(np.isfinite(heat) & (heat >= float(threshold)))[0]
    if sel.size == 0:
        return [], display
    comp = voxel_components(points[sel], voxel)
    order = np.argsort(comp, kind="stable")
    bounds = np.flatnonzero(np.diff(comp[order])) + 1
    hits = []
    for part in np.split(order, bounds):
        if part.size < min_points:
            continue
        idx = sel[part]
        s = sim[idx]
        display[idx] = heat[idx]
        hits.append(ObjectHit(idx, float(np.nanmean(s)), float(np.nanmax(s)), points[idx].mean(0).astype(np.float32)))
    hits.sort(key=lambda h: (-h.score, -h.size))
    return hits, display


def group_mean(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """float32 [N, K]: each row replaced by the mean of the finite rows of its group (NaN rows stay NaN)."""
    v = np.asarray(values, dtype=np.float32)
    inv = group_index(groups)
    fin = np.isfinite(v[:, 0])
    cnt = np.bincount(inv, weights=fin.astype(np.float64))
    out = np.empty_like(v)
    for j in range(v.shape[1]):
        tot = np.bincount(inv, weights=np.where(fin, v[:, j], 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = (tot / cnt)[inv]
    out[~fin] = np.nan
    return out
