"""numba kernels of the Felzenszwalb-Huttenlocher segmentation (imported lazily by :mod:`.superpoints`).

Disjoint-set forest exactly as the Segmentator's ``universe``: union by rank, and ``find`` that points only the
queried element straight at its root. Compiled once and cached on disk by numba (``cache=True``).
"""
import numba
import numpy as np


@numba.njit(cache=True)
def _find(parent, x):
    y = x
    while y != parent[y]:
        y = parent[y]
    parent[x] = y
    return y


@numba.njit(cache=True)
def _join(parent, rank, size, x, y):
    if rank[x] > rank[y]:
        parent[y] = x
        size[x] += size[y]
        return x
    parent[x] = y
    size[y] += size[x]
    if rank[x] == rank[y]:
        rank[y] += 1
    return y


@numba.njit(cache=True)
def segment_sorted(num_vertices, ea, eb, ew, k_thresh, min_verts):
    """Felzenszwalb merge pass over edges sorted by weight, then the small-segment pass; int64 [N] roots.

    ``k_thresh`` is float32 like the C++ (thresholds are float32: ``thr[root] = w + k / size``).
    """
    parent = np.arange(num_vertices)
    rank = np.zeros(num_vertices, np.int64)
    size = np.ones(num_vertices, np.int64)
    thr = np.full(num_vertices, k_thresh, np.float32)
    m = ea.shape[0]
    for i in range(m):
        a = _find(parent, ea[i])
        b = _find(parent, eb[i])
        if a != b:
            w = ew[i]
            if w <= thr[a] and w <= thr[b]:
                r = _join(parent, rank, size, a, b)
                thr[r] = np.float32(w + k_thresh / np.float32(size[r]))
    for i in range(m):
        a = _find(parent, ea[i])
        b = _find(parent, eb[i])
        if a != b and (size[a] < min_verts or size[b] < min_verts):
            _join(parent, rank, size, a, b)
    out = np.empty(num_vertices, np.int64)
    for q in range(num_vertices):
        out[q] = _find(parent, q)
    return out
