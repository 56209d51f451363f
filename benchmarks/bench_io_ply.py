"""Benchmark: reading a ScanNet-sized binary PLY mesh (150k vertices x,y,z,r,g,b,a + 300k triangles).

* ``ours``: :func:`sas_engine.io.read_ply` (numpy structured-dtype views).
* ``open3d``: ``open3d.io.read_triangle_mesh`` on the same file (C++ reader), measured in the same run.
* ``python_loop``: a straightforward per-vertex/per-face ``struct.unpack`` reader (what a hand-written loader does),
  measured on the first 20k vertices / 40k faces and scaled linearly (the JSON says so).

Prints one JSON object. Usage: python benchmarks/bench_io_ply.py [--vertices 150000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sas_engine.io import read_ply, write_ply  # noqa: E402


def _best(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _python_loop(path: Path, n_total: int, nv: int, nf: int):
    """Per-record struct.unpack of the first ``nv`` vertices and ``nf`` faces."""
    data = path.read_bytes()
    start = data.index(b"end_header\n") + len(b"end_header\n")
    verts, faces = [], []
    pos = start
    for _ in range(nv):
        verts.append(struct.unpack_from("<fffBBBB", data, pos))
        pos += 16
    pos = start + 16 * n_total
    for _ in range(nf):
        k = data[pos]
        faces.append(struct.unpack_from(f"<{k}i", data, pos + 1))
        pos += 1 + 4 * k
    return verts, faces


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vertices", type=int, default=150_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = args.vertices
    rng = np.random.default_rng(0)
    v = {k: rng.random(n, dtype=np.float32) for k in "xyz"}
    v.update({k: rng.integers(0, 256, n).astype(np.uint8) for k in ("red", "green", "blue", "alpha")})
    faces = rng.integers(0, n, (2 * n, 3))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "mesh.ply"
        write_ply(p, v, faces)
        ours = _best(lambda: read_ply(p), args.repeat)
        r = read_ply(p)
        assert np.array_equal(r["face"], faces) and np.array_equal(r["vertex"]["red"], v["red"])
        out = {"vertices": n, "faces": 2 * n, "ours_s": round(ours, 4)}
        try:
            import open3d as o3d

            o3 = _best(lambda: o3d.io.read_triangle_mesh(str(p)), max(1, args.repeat // 2))
            out.update(open3d_s=round(o3, 4), speedup_vs_open3d=round(o3 / ours, 2))
        except ImportError:  # pragma: no cover
            out["open3d_s"] = None
        sub = min(n, 20_000)
        t = time.perf_counter()
        _python_loop(p, n, sub, 2 * sub)
        loop = (time.perf_counter() - t) * n / sub
        out.update(python_loop_s_extrapolated=round(loop, 3), speedup_vs_python_loop=round(loop / ours, 1),
                   note="python_loop measured on 20k vertices + 40k faces, scaled linearly to the whole mesh")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
