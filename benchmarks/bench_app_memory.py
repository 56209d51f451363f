"""Server memory of the app under a long query load: is it flat once warm?

Starts the app (the embedded demo's rooms and artefact store, the packaged MiniLM text encoder, the viser viewer
and the gradio page, both on 127.0.0.1) in a child process, then sends ``--queries`` distinct queries from
``--clients`` concurrent page clients through the page's own API (``gradio_client``: ``/load`` opens a tab, then
``/select_scene`` and ``/query``, the handlers the browser calls). Each client moves to the next room every
``--switch-every`` of its queries, so with more rooms than ``--max-scenes`` the scene LRU keeps evicting and
re-reading. About one query in five is a comma list ("chair, lamp, ..."), the rest single texts; every query text
is new, so the text caches fill up and must stay bounded.

Prints one JSON object: the server's resident set size (VmRSS of the child, sampled every 0.25 s) before the first
query, after the warm-up (the first ``--warmup`` queries), after the last query, and its largest value after the
warm-up; query latency; the load average; and the server's own account of what it holds
(:meth:`app.state.AppState.memory_report`). Target: RSS after the warm-up flat within 100 MB.

The demo rooms are made in ``--store`` first when missing: the demo build's first phase (room, superpoints and the
distilled student's features, the page's default query layer, which every query here uses; seconds per room), or
with ``--full-build`` the whole demo build of the first ``--scenes`` rooms (teachers and fusions: minutes).

    nice -n 19 python3 benchmarks/bench_app_memory.py                     # 1,000 queries, 5 clients
    nice -n 19 python3 benchmarks/bench_app_memory.py --queries 200 --scenes 2   # a quicker look
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_STORE = Path(tempfile.gettempdir()) / "sas_bench_app_memory" / "store"

ADJECTIVES = ["red", "small", "wooden", "old", "soft", "tall", "white", "round", "dark", "long", "broken", "new",
              "metal", "striped", "low", "wide", "narrow", "shiny", "dusty", "green", "blue", "leather", "glass",
              "plastic", "folded"]
NOUNS = ["chair", "table", "sofa", "bed", "lamp", "door", "window", "shelf", "cabinet", "desk", "pillow", "picture",
         "curtain", "counter", "sink", "toilet", "bathtub", "refrigerator", "rug", "plant", "box", "bag", "mirror",
         "towel", "stool", "bench", "vase", "book", "monitor", "clock", "fan", "basket", "bottle", "cup", "printer",
         "radiator", "blanket", "dresser", "nightstand", "wardrobe"]


def queries(n: int) -> list[str]:
    """``n`` distinct query texts: single phrases ("a small wooden chair") and, one in five, comma lists."""
    out: list[str] = []
    seen: set[str] = set()
    k = 0
    while len(out) < n:
        a = ADJECTIVES[k % len(ADJECTIVES)]
        b = NOUNS[(k // len(ADJECTIVES)) % len(NOUNS)]
        c = NOUNS[(k * 7 + 3) % len(NOUNS)]
        if k % 5 == 4:
            q = f"{a} {b}, {c}, {NOUNS[(k * 3 + 1) % len(NOUNS)]}"
        elif k % 2:
            q = f"a {a} {b} next to the {c}"
        else:
            q = f"{a} {b}"
        k += 1
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def add_child_args(ap) -> None:
    """The hidden flags of the app child process (``--serve`` and what it serves on). Shared with bench_page_query.py."""
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--scene-ids", default="", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--viser-port", type=int, default=0, help=argparse.SUPPRESS)


def open_scenes(st, args):
    """``st`` (an :class:`app.state.AppState`) with the scenes ``args.scene_ids`` of ``args.data_root`` added and the
    text encoder loaded; None (after one ``error:`` line) when a scene is missing. Shared with bench_page_query.py."""
    from app.state import find_scene_folder

    for sid in args.scene_ids.split(","):
        folder = find_scene_folder([Path(args.data_root)], sid)
        if folder is None:
            print(f"error: scene {sid} not found under {args.data_root}", file=sys.stderr)
            return None
        st.add_scene_path(folder, scene_id=sid, check_roots=False)
    st.warm_text_encoder().join()
    return st


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the server (child process) ---------------------------------------------------------------------------------
def serve(args) -> int:
    """Run the app on the demo rooms until SIGTERM; print READY <url> once both servers answer, and the state's
    memory report as JSON (one line starting with MEMORY) on the way out."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import app as _app  # noqa: F401  (before torch, as launch.py: the app's OpenMP wait policy, see app/__init__.py)
    import torch

    torch.set_num_threads(args.threads)
    from app.memory import MemoryConfig
    from app.server import start_app
    from app.state import AppState

    st = open_scenes(AppState(args.store, [args.data_root], memory=MemoryConfig(max_scenes=args.max_scenes)), args)
    if st is None:
        return 2
    import gradio.networking as gn

    quick_check = gn.url_ok

    def patient_url_ok(url: str) -> bool:  # gradio's launch self-check gives up after 5 HEADs of 3 s each; on a
        # CPU-starved machine (nice 19 beside a training run) the page answers later. Only the start-up waits longer
        # (start_app then checks the page itself); nothing measured here changes.
        return any(quick_check(url) for _ in range(40))

    gn.url_ok = patient_url_ok
    app = start_app(st, port=args.port, viser_port=args.viser_port, timeout=600)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    print(f"READY {app.url}", flush=True)
    while not stop.wait(0.2):
        pass
    print("MEMORY " + json.dumps(st.memory_report()), flush=True)
    app.close()
    return 0


# -- the load (parent process) ----------------------------------------------------------------------------------
def ensure_demo(store: Path, data_root: Path, n: int, full: bool) -> list[str]:
    """The first ``n`` demo rooms in ``store``, made in a child process when missing: the demo build's first phase
    (room, superpoints, distilled student: the page's default query layer, all the queries here touch) or, with
    ``full``, the whole demo build (teachers and fusions too)."""
    if full:
        code = ("import json; from sas_engine.demo import build_demo; "
                f"ids = build_demo({str(store)!r}, {str(data_root)!r}, max_scenes={n}, workers=1); "
                "print('IDS ' + json.dumps(ids))")
    else:
        code = ("import json; from sas_engine.demo import DEMO_SPLIT; from sas_engine.io import load_scene; "
                "from sas_engine.pipeline import PipelineConfig, ensure_student, ensure_superpoints; "
                "from sas_engine.store import ArtefactStore; from sas_engine.synth import ensure_split; "
                f"store = ArtefactStore({str(store)!r}); cfg = PipelineConfig(); ids = []\n"
                f"for p in ensure_split(DEMO_SPLIT, root={str(data_root)!r}, first={n}, progress=False)[:{n}]:\n"
                "    scene = load_scene(p); ensure_superpoints(store, scene); ensure_student(store, scene, cfg)\n"
                "    ids.append(scene.scene_id)\n"
                "print('IDS ' + json.dumps(ids))")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise SystemExit(f"demo build failed:\n{out.stderr[-3000:]}")
    ids = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("IDS "))[4:])
    print(f"demo rooms ready in {time.monotonic() - t0:.0f} s: {', '.join(ids)}", file=sys.stderr)
    return ids


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"artefact store (default {DEFAULT_STORE})")
    ap.add_argument("--data-root", type=Path, default=Path(os.environ.get("SAS_DATA", REPO / "data" / "synthetic")))
    ap.add_argument("--scenes", type=int, default=3, help="demo rooms to serve")
    ap.add_argument("--max-scenes", type=int, default=2, help="the app's scene LRU bound (MemoryConfig.max_scenes)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=200, help="queries counted as warm-up")
    ap.add_argument("--switch-every", type=int, default=10, help="a client's queries per room before it moves on")
    ap.add_argument("--threads", type=int, default=2, help="torch threads in the server")
    ap.add_argument("--full-build", action="store_true", help="build the rooms' teachers and fusions too")
    ap.add_argument("--progress-every", type=int, default=50, help="queries between progress lines on stderr")
    add_child_args(ap)
    args = ap.parse_args(argv)
    if args.serve:
        return serve(args)
    if args.warmup >= args.queries:
        ap.error("--warmup must be smaller than --queries")

    ids = ensure_demo(args.store, args.data_root, args.scenes, args.full_build)
    port, vport = free_port(), free_port()
    cmd = [sys.executable, __file__, "--serve", "--store", str(args.store), "--data-root", str(args.data_root),
           "--scene-ids", ",".join(ids), "--max-scenes", str(args.max_scenes), "--threads", str(args.threads),
           "--port", str(port), "--viser-port", str(vport)]
    t_start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    url = None
    for line in proc.stdout:
        if line.startswith("READY "):
            url = line.split()[1]
            break
    if url is None:
        raise SystemExit(f"the app did not start (exit {proc.wait()})")
    startup_s = time.monotonic() - t_start
    print(f"app up in {startup_s:.0f} s at {url}", file=sys.stderr, flush=True)

    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sampler():
        while not done.wait(0.25):
            try:
                samples.append((time.monotonic(), rss_mb(proc.pid)))
            except (OSError, RuntimeError):
                return

    time.sleep(2.0)  # let the start-up settle
    rss_before = rss_mb(proc.pid)
    threading.Thread(target=sampler, daemon=True).start()

    from gradio_client import Client

    texts = queries(args.queries)
    lock = threading.Lock()
    nxt = [0]
    lat: list[tuple[int, float]] = []
    errors: list[str] = []
    marks: dict[str, float] = {}

    def connect() -> "Client":  # a starved machine answers slowly: wait, do not drop the client
        for attempt in range(5):
            try:
                return Client(url, verbose=False, httpx_kwargs={"timeout": 600})
            except Exception as e:  # noqa: BLE001 - httpx / gradio_client errors: retried, then reported
                last = e
                time.sleep(5.0 * (attempt + 1))
        raise RuntimeError(f"client could not connect: {type(last).__name__}: {last}")

    def worker(w: int):
        try:
            run(w)
        except Exception as e:  # noqa: BLE001 - counted in the result, never a silent thread death
            with lock:
                errors.append(f"client {w} stopped: {type(e).__name__}: {str(e)[:160]}")

    def run(w: int):
        c = connect()
        c.predict(api_name="/load")
        mine = 0
        room = w % len(ids)
        c.predict(ids[room], api_name="/select_scene")
        while True:
            with lock:
                k = nxt[0]
                if k >= len(texts):
                    return
                nxt[0] += 1
            if mine and mine % args.switch_every == 0:
                room = (room + 1) % len(ids)
                msg = c.predict(ids[room], api_name="/select_scene")[0]
                if "⚠" in msg:
                    with lock:
                        errors.append(msg[:200])
            t = time.perf_counter()
            msg = c.predict(texts[k], 0.4, 5, None, api_name="/query")[0]
            dt = time.perf_counter() - t
            mine += 1
            with lock:
                lat.append((k, dt))
                if "⚠" in msg:
                    errors.append(msg[:200])
                finished = len(lat)
                if finished == args.warmup:
                    marks["warm"] = rss_mb(proc.pid)
                    marks["warm_t"] = time.monotonic()
                if finished % args.progress_every == 0:  # a partial account, should the run be cut short
                    print(f"{finished} queries, {time.monotonic() - t0:.0f} s: server RSS {rss_mb(proc.pid):.1f} MB",
                          file=sys.stderr, flush=True)

    load0 = os.getloadavg()
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    time.sleep(1.0)
    rss_after = rss_mb(proc.pid)
    done.set()
    load1 = os.getloadavg()
    proc.send_signal(signal.SIGTERM)
    memory = None
    for line in proc.stdout:
        if line.startswith("MEMORY "):
            memory = json.loads(line[7:])
    proc.wait(60)

    import numpy as np

    after_warm = [r for t, r in samples if t >= marks.get("warm_t", float("inf"))]
    lat_ms = np.array([d for _, d in lat]) * 1000
    warm = marks.get("warm", float("nan"))
    result = {
        "queries": len(lat), "clients": args.clients, "scenes": ids, "max_scenes": args.max_scenes,
        "switch_every": args.switch_every, "warmup_queries": args.warmup, "errors": len(errors),
        "error_examples": errors[:3], "server_startup_s": round(startup_s, 1), "wall_s": round(wall, 1),
        "queries_per_s": round(len(lat) / wall, 2),
        "latency_ms": {"median": round(float(np.median(lat_ms)), 1), "p95": round(float(np.percentile(lat_ms, 95)), 1)},
        "rss_mb": {"before": round(rss_before, 1), "after_warmup": round(warm, 1), "after": round(rss_after, 1),
                   "max_after_warmup": round(max(after_warm, default=rss_after), 1),
                   "peak": round(max([r for _, r in samples], default=rss_after), 1)},
        "growth_after_warmup_mb": round(rss_after - warm, 1),
        "spread_after_warmup_mb": round(max(after_warm, default=rss_after) - min(after_warm, default=rss_after), 1),
        "target": "RSS after the warm-up flat within 100 MB",
        "load_avg_1m": {"start": round(load0[0], 2), "end": round(load1[0], 2)}, "cpu_count": os.cpu_count(),
        "server_memory_report": memory,
    }
    # the measure: RSS after the last query against RSS after the warm-up. The spread (largest minus smallest
    # sample after the warm-up) also counts the transient buffers of rooms being re-read after an eviction; it is
    # printed beside it and judged separately
    result["flat"] = bool(abs(result["growth_after_warmup_mb"]) <= 100)
    result["spread_within_100mb"] = bool(result["spread_after_warmup_mb"] <= 100)
    print(json.dumps(result, indent=1))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
