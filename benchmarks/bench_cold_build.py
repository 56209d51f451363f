"""Benchmark: the demo's cold first start (issue 19 target: under 2 minutes on 2 idle cores).

Each run is a fresh child process calling :func:`sas_engine.demo.build_demo` with an empty store, an empty data
root and an empty text-embedding cache (temporary folders), as ``launch.py`` does on a new machine (the shipped
capability table is installed, not computed). Two builds are timed in the same invocation:

* ``new``: the default, with the shipped text-embedding table (``checkpoints/text/``);
* ``baseline``: the same without it (``SAS_SHIPPED_TEXT_DIR`` = an empty folder): every process of the build loads
  the text model, as before the table shipped.

Prints one JSON object: for each build the seconds until the first room can be opened, until all rooms can be
opened and until every layer is stored (from the call, after imports), ``ratio_baseline_over_new``, and the load
average at start and end.

    python3 benchmarks/bench_cold_build.py            # 6 rooms, both builds
    python3 benchmarks/bench_cold_build.py --only new
    python3 benchmarks/bench_cold_build.py --only new --cold-jit   # numba compiles every kernel, as on a new checkout

numba caches its compiled kernels on disk (``cache=True``, in the package's ``__pycache__``), so after the first
build on a machine the kernels load instead of compiling; ``--cold-jit`` points ``NUMBA_CACHE_DIR`` at an empty
folder, so the build pays every compilation as a fresh clone's first start does (``jit_cache`` in the output says
which was timed).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ["new", "baseline"]


def _child(mode: str, rooms: int, workers: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import app  # noqa: F401  (the app's OpenMP setting, as launch.py has it)
    from sas_engine.demo import build_demo

    tmp = Path(os.environ["SAS_BENCH_TMP"])
    t0 = time.perf_counter()
    seen: dict[str, list[float]] = {}

    def on_scene(sid, folder):
        seen.setdefault(sid, []).append(round(time.perf_counter() - t0, 1))

    ids = build_demo(tmp / "store", data_root=tmp / "data", max_scenes=rooms, workers=workers,
                     on_scene=on_scene)
    total = time.perf_counter() - t0
    opened = sorted(v[0] for v in seen.values())
    return {"rooms": len(ids), "first_room_openable_s": opened[0], "all_rooms_openable_s": opened[-1],
            "all_layers_s": round(total, 1)}


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rooms", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", choices=MODES, default=None)
    ap.add_argument("--cold-jit", action="store_true", help="empty numba cache: compile every kernel (a new checkout)")
    ap.add_argument("--child", choices=MODES, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.rooms, args.workers)))
        return 0
    out = {"load_start": _load(), "rooms": args.rooms, "workers": args.workers,
           "jit_cache": "empty (--cold-jit)" if args.cold_jit else "numba's on-disk cache as found"}
    for mode in [args.only] if args.only else MODES:
        with tempfile.TemporaryDirectory(prefix="sas_cold_") as tmp:
            env = {**os.environ, "SAS_BENCH_TMP": tmp, "SAS_TEXT_CACHE": str(Path(tmp) / "text"),
                   "SAS_DATA": str(Path(tmp) / "data")}
            if args.cold_jit:
                env["NUMBA_CACHE_DIR"] = str(Path(tmp) / "numba_cache")
            if mode == "baseline":
                env["SAS_SHIPPED_TEXT_DIR"] = str(Path(tmp) / "no_shipped_text")
            t = time.perf_counter()
            res = subprocess.run([sys.executable, __file__, "--child", mode, "--rooms", str(args.rooms),
                                  "--workers", str(args.workers)], env=env, capture_output=True, text=True,
                                 check=True)
            got = json.loads(res.stdout.strip().splitlines()[-1])
            got["process_s"] = round(time.perf_counter() - t, 1)  # with interpreter start and imports
            out[mode] = got
    if "new" in out and "baseline" in out:
        out["ratio_baseline_over_new"] = round(out["baseline"]["all_layers_s"] / out["new"]["all_layers_s"], 2)
    if "new" in out:
        out["meets_target"] = out["new"]["all_layers_s"] < 120
    out["target_all_layers_s"] = 120
    out["load_end"] = _load()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
