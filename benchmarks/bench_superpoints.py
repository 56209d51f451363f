"""Benchmark: ScanNet-Segmentator superpoints on a 150k-vertex mesh (seconds), vs the same algorithm in plain Python.

Mesh: a 388 x 388 triangulated height field over a 7.8 x 7.8 m floor with furniture-like steps, ramps, a dome and
scan noise (150,544 vertices, ~300k faces, ~900k graph edges), i.e. the size of a ScanNet ``vh_clean_2`` room.
``ours`` = :func:`sas_engine.geometry.compute_superpoints` (numpy + numba union-find; the one-off numba compile is
reported apart, it is cached on disk afterwards). ``baseline`` = the same normals / weights / sort, with the two
union-find passes written as a plain Python loop (what a direct transcription of the C++ would give), measured in
the same run. Results must be identical. Prints one JSON object.

    python benchmarks/bench_superpoints.py [--side 388] [--k 0.01] [--min-verts 20]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_mesh(side: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    h = 0.02
    x, y = np.meshgrid(np.arange(side) * h, np.arange(side) * h, indexing="ij")
    z = rng.normal(0, 0.002, x.shape)
    for _ in range(25):  # boxes (tables, beds, cabinets)
        x0, y0 = rng.uniform(0, side * h - 1.5, 2)
        sx, sy = rng.uniform(0.3, 1.5, 2)
        z[(x >= x0) & (x < x0 + sx) & (y >= y0) & (y < y0 + sy)] += rng.uniform(0.3, 1.0)
    z += 0.4 * np.clip(1 - ((x - 2) ** 2 + (y - 5) ** 2), 0, None)  # a dome
    z += np.where(x > 6.5, (x - 6.5) * 0.5, 0)  # a ramp
    pts = np.stack([x.ravel(), y.ravel(), z.ravel()], 1).astype(np.float32)
    idx = np.arange(side * side).reshape(side, side)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
    return pts, faces


def python_union_find(n, ea, eb, ew, k, min_verts):
    parent = list(range(n))
    rank = [0] * n
    size = [1] * n
    thr = [k] * n

    def find(x):
        y = x
        while y != parent[y]:
            y = parent[y]
        parent[x] = y
        return y

    def join(x, y):
        if rank[x] > rank[y]:
            parent[y] = x
            size[x] += size[y]
            return x
        parent[x] = y
        size[y] += size[x]
        if rank[x] == rank[y]:
            rank[y] += 1
        return y

    ea, eb, ew = ea.tolist(), eb.tolist(), ew.astype(np.float64).tolist()
    kf = float(np.float32(k))
    for a0, b0, w in zip(ea, eb, ew):
        a, b = find(a0), find(b0)
        if a != b and w <= thr[a] and w <= thr[b]:
            r = join(a, b)
            thr[r] = float(np.float32(w + np.float32(kf / np.float32(size[r]))))
    for a0, b0 in zip(ea, eb):
        a, b = find(a0), find(b0)
        if a != b and (size[a] < min_verts or size[b] < min_verts):
            join(a, b)
    return np.array([find(q) for q in range(n)], dtype=np.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=388)
    ap.add_argument("--k", type=float, default=0.01)
    ap.add_argument("--min-verts", type=int, default=20)
    args = ap.parse_args()
    from sas_engine.geometry import compute_superpoints
    from sas_engine.geometry.superpoints import edge_weights, mesh_edges, segmentator_vertex_normals

    pts, faces = make_mesh(args.side)
    t0 = time.perf_counter()
    compute_superpoints(np.eye(3, dtype=np.float32), np.array([[0, 1, 2]]), args.k, args.min_verts)  # numba load
    warm = time.perf_counter() - t0

    t0 = time.perf_counter()
    sp = compute_superpoints(pts, faces, args.k, args.min_verts)
    ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    normals = segmentator_vertex_normals(pts, faces)
    a, b = mesh_edges(faces)
    w = edge_weights(pts, normals, a, b)
    order = np.argsort(w, kind="stable")
    prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = python_union_find(len(pts), a[order], b[order], w[order], args.k, args.min_verts)
    base_uf = time.perf_counter() - t0

    ids, sizes = np.unique(sp, return_counts=True)
    print(json.dumps({
        "benchmark": "superpoints",
        "vertices": int(len(pts)), "faces": int(len(faces)), "edges": int(len(a)),
        "k_thresh": args.k, "min_verts": args.min_verts,
        "ours_seconds": round(ours, 3),
        "numba_first_call_seconds": round(warm, 3),
        "baseline": "same pipeline, union-find passes in plain Python",
        "baseline_seconds": round(prep + base_uf, 3),
        "baseline_prep_seconds": round(prep, 3),
        "speedup_vs_baseline": round((prep + base_uf) / ours, 2),
        "identical_to_baseline": bool(np.array_equal(sp, ref)),
        "segments": int(len(ids)), "median_segment_size": float(np.median(sizes)),
        "min_segment_size": int(sizes.min()),
        "target_seconds": 10,
    }))


if __name__ == "__main__":
    main()
