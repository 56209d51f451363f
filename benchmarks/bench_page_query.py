"""Query latency in the running page: from the search click to the new colours in the 3D viewer.

Starts the app in a child process (the embedded demo's first room and the artefact store of
``bench_app_memory.py``, the packaged MiniLM text encoder, the viser viewer and the gradio page, both on 127.0.0.1),
then acts as one browser tab:

* the page: ``gradio_client`` calls the handlers the browser calls (``/load`` opens the tab, ``/query`` is the
  Search button);
* the 3D view: a websocket client speaking viser's protocol (the browser's), paired with the tab the way the page's
  iframe is (the camera far plane of the ``initialCameraFar`` in the iframe's URL), which records when each update of
  the main point cloud's colours arrives.

For ``--queries`` distinct texts (every text new to the server, so the text encoder runs as it does for a user's new
query), it measures:

* ``server``: the query handler's own timing log (``Session.run_query``: engine = text encoding + relevance,
  regions = the top-k region search, colours = the heat colouring and legend, push = handing the new colours to
  viser), from the handler's entry to the end of the push;
* ``client_reply``: the click (the ``/query`` request) to gradio's reply;
* ``client_colours``: the click to the arrival of the new colours at the viewer's websocket;

each as median and p95, then the same texts again (``repeat_text_cached``: the text embeddings are cached, so this
is the path without the text encoder). The same-run baselines: the engine's part of the server time, and the whole
run again with the engine's full softmax over every column (``QueryEngine(fast_relevance=False)``, the previous
relevance path) switched on in the server. Target: client-observed colours < 150 ms on an idle machine.

    python3 benchmarks/bench_page_query.py                 # 50 queries, then the baseline pass
    nice -n 19 python3 benchmarks/bench_page_query.py --queries 20 --no-baseline
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_app_memory import (ADJECTIVES, DEFAULT_STORE, NOUNS, add_child_args, ensure_demo,  # noqa: E402
                              free_port, open_scenes)


def uptime() -> str:
    """The ``uptime`` line (load averages over 1, 5 and 15 minutes)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def texts(n: int) -> list[str]:
    """``n`` distinct single-text queries ("a small wooden chair", "red lamp", ...)."""
    out: list[str] = []
    k = 0
    while len(out) < n:
        a, b = ADJECTIVES[k % len(ADJECTIVES)], NOUNS[(k * 7) % len(NOUNS)]
        out.append(f"a {a} {b}" if k % 2 else f"{a} {b}")
        k += 1
    return list(dict.fromkeys(out))[:n]


# -- the server (child process) ---------------------------------------------------------------------------------
def serve(args) -> int:
    """Run the app on the demo room until SIGTERM. Prints ``READY <page url> <viewer port>``, then one
    ``TIMING <json>`` line per query (the handler's timing log). A line ``EXACT`` / ``FAST`` on stdin switches the
    engines between the full softmax and the fast relevance path."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import app as _app  # noqa: F401  (before torch, as launch.py: the app's OpenMP wait policy, see app/__init__.py)
    import torch

    torch.set_num_threads(args.threads)
    from app.server import start_app
    from app.state import AppState
    from sas_engine import query as Q

    mode = {"fast": True}
    scored = Q.QueryEngine._scored

    def switched(self, *a, **kw):  # the switch between the two engine paths (nothing else changes)
        self.fast_relevance = mode["fast"]
        return scored(self, *a, **kw)

    Q.QueryEngine._scored = switched

    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(logging.Formatter("TIMING %(message)s"))
    tlog = logging.getLogger("sas.timing")
    tlog.addHandler(out)
    tlog.setLevel(logging.DEBUG)
    tlog.propagate = False

    st = open_scenes(AppState(args.store, [args.data_root]), args)
    if st is None:
        return 2
    app = start_app(st, port=args.port, viser_port=args.viser_port, timeout=600)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())

    def control():
        for line in sys.stdin:
            cmd = line.strip().upper()
            if cmd in ("EXACT", "FAST"):
                mode["fast"] = cmd == "FAST"
                print(f"MODE {cmd}", flush=True)

    threading.Thread(target=control, daemon=True).start()
    print(f"READY {app.url} {app.viewer.port}", flush=True)
    while not stop.wait(0.2):
        pass
    app.close()
    return 0


# -- the viewer's side (a websocket client speaking viser's protocol) -------------------------------------------
class ViewerClient:
    """A viser client paired with a page tab: it reports the tab's far plane in its first camera message (as the
    browser does after opening the iframe's URL) and records the arrival time of every scene-node update."""

    def __init__(self, port: int, far: float):
        import msgspec
        import viser
        import zstandard
        from websockets.sync.client import connect

        self._decode = msgspec.msgpack.decode
        self._zstd = zstandard.ZstdDecompressor()
        self.ws = connect(f"ws://127.0.0.1:{port}", subprotocols=[f"viser-v{viser.__version__}"], max_size=None,
                          open_timeout=120)
        camera = {"type": "ViewerCameraMessage", "wxyz": [1.0, 0.0, 0.0, 0.0], "position": [0.0, -5.0, 3.0],
                  "fov": 1.3, "near": 0.01, "far": far, "image_height": 720, "image_width": 1280,
                  "look_at": [0.0, 0.0, 0.0], "up_direction": [0.0, 0.0, 1.0]}
        self.ws.send(msgspec.msgpack.encode(camera))
        self.events: "queue.Queue[tuple[float, str, str, tuple]]" = queue.Queue()
        self.colour_updates = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            for raw in self.ws:
                t = time.perf_counter()
                n_inner = int.from_bytes(raw[:8], "little")
                n_comp = int.from_bytes(raw[8:16], "little")
                inner = self._decode(self._zstd.decompress(raw[16:16 + n_comp], max_output_size=n_inner))
                for m in inner.get("messages", ()):
                    kind = m.get("type", "")
                    name = m.get("name", "")
                    keys = tuple((m.get("updates") or {}).keys()) if kind == "SceneNodeUpdateMessage" else ()
                    self.events.put((t, kind, name, keys))
        except Exception:  # noqa: BLE001 - the socket closed at the end of the run
            return

    def wait_for(self, pred, timeout: float) -> float:
        """Arrival time of the first event matching ``pred(kind, name, keys)``; events before it are dropped."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching viewer message")
            t, kind, name, keys = self.events.get(timeout=left)
            if pred(kind, name, keys):
                return t

    def drain(self) -> None:
        while not self.events.empty():
            self.events.get_nowait()

    def close(self):
        self.ws.close()


def colours_of_main_cloud(kind: str, name: str, keys: tuple) -> bool:
    return kind == "SceneNodeUpdateMessage" and name == "/sas/a" and "colors" in keys


# -- the load (parent process) ----------------------------------------------------------------------------------
def stats(values_ms: list[float]) -> dict:
    import numpy as np

    a = np.asarray(values_ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"median_ms": round(float(np.median(a)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "n": int(a.size)}


def run_pass(client, viewer: ViewerClient, timings: "queue.Queue[dict]", qs: list[str], threshold: float) -> dict:
    """Send each query as the Search button does; the client-observed and the server's times."""
    reply, colours, server, parts = [], [], [], {}
    missing = 0
    for text in qs:
        viewer.drain()
        while not timings.empty():
            timings.get_nowait()
        t0 = time.perf_counter()
        msg = client.predict(text, threshold, 5, None, api_name="/query")[0]
        t1 = time.perf_counter()
        if "⚠" in msg:
            raise RuntimeError(f"query {text!r} failed: {msg[:200]}")
        try:
            t2 = viewer.wait_for(colours_of_main_cloud, max(2.0, 3 * (t1 - t0)))
            colours.append((t2 - t0) * 1000)
        except (TimeoutError, queue.Empty):
            missing += 1  # the colours did not change (e.g. two empty maps in a row): nothing was sent
        reply.append((t1 - t0) * 1000)
        rec = timings.get(timeout=10.0)
        server.append(rec["total_ms"])
        for k, v in rec.items():
            if k.endswith("_ms") and k != "total_ms":
                parts.setdefault(k, []).append(v)
    return {"server": stats(server), "server_parts": {k: stats(v) for k, v in parts.items()},
            "client_reply": stats(reply), "client_colours": stats(colours), "no_colour_update": missing}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"artefact store (default {DEFAULT_STORE})")
    ap.add_argument("--data-root", type=Path, default=Path(os.environ.get("SAS_DATA", REPO / "data" / "synthetic")))
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="torch threads in the server")
    ap.add_argument("--threshold", type=float, default=0.4)
    ap.add_argument("--no-baseline", action="store_true", help="skip the pass with the full-softmax engine")
    add_child_args(ap)
    args = ap.parse_args(argv)
    if args.serve:
        return serve(args)

    ids = ensure_demo(args.store, args.data_root, 1, False)
    port, vport = free_port(), free_port()
    cmd = [sys.executable, __file__, "--serve", "--store", str(args.store), "--data-root", str(args.data_root),
           "--scene-ids", ",".join(ids), "--threads", str(args.threads), "--port", str(port),
           "--viser-port", str(vport)]
    uptime_start = uptime()
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = None
    for line in proc.stdout:
        if line.startswith("READY "):
            _, url, vport_s = line.split()
            vport = int(vport_s)
            break
    if url is None:
        raise SystemExit(f"the app did not start (exit {proc.wait()})")
    timings: "queue.Queue[dict]" = queue.Queue()
    modes: "queue.Queue[str]" = queue.Queue()

    def reader():
        for line in proc.stdout:
            if line.startswith("TIMING "):
                m = re.search(r"\{.*\}", line)
                if m:
                    timings.put(json.loads(m.group(0)))
            elif line.startswith("MODE "):
                modes.put(line.split()[1])

    threading.Thread(target=reader, daemon=True).start()
    viewer = None
    try:
        from gradio_client import Client

        client = Client(url, verbose=False, httpx_kwargs={"timeout": 600})
        load = client.predict(api_name="/load")
        found = re.search(r"initialCameraFar=([^\"&' ]+)", str(load))  # the viewer iframe's URL
        if found is None:
            raise SystemExit("the page's /load answer holds no viewer URL (was the viewer started?)")
        far = float(unquote(found.group(1)))
        viewer = ViewerClient(vport, far)
        viewer.wait_for(lambda kind, name, keys: kind == "PointCloudMessage" and name == "/sas/a", 120.0)
        qs = texts(args.queries)
        client.predict("warm up the query path", args.threshold, 5, None, api_name="/query")  # first-call costs
        while not timings.empty():
            timings.get_nowait()
        result: dict = {"scene": ids[0], "queries": len(qs), "threads": args.threads, "threshold": args.threshold,
                        "uptime_start": uptime_start}
        import numpy as np  # noqa: F401 - loaded before the timed passes

        result["fast_relevance"] = run_pass(client, viewer, timings, qs, args.threshold)
        result["fast_relevance"]["repeat_text_cached"] = run_pass(client, viewer, timings, qs, args.threshold)
        if not args.no_baseline:
            proc.stdin.write("EXACT\n")
            proc.stdin.flush()
            modes.get(timeout=30)
            qs_b = [q + " here" for q in qs]  # new texts again: the text encoder runs as in the first pass
            result["baseline_full_softmax"] = run_pass(client, viewer, timings, qs_b, args.threshold)
            proc.stdin.write("FAST\n")
            proc.stdin.flush()
            modes.get(timeout=30)
        result["uptime_end"] = uptime()
        result["target_ms"] = 150
        fast = result["fast_relevance"]
        result["meets_target"] = bool(fast["client_colours"].get("p95_ms", 1e9) < 150)
        if "baseline_full_softmax" in result:
            b = result["baseline_full_softmax"]
            result["speedup_client_colours_median"] = round(
                b["client_colours"]["median_ms"] / max(fast["client_colours"]["median_ms"], 1e-6), 2)
            result["speedup_engine_median"] = round(
                b["server_parts"]["engine_ms"]["median_ms"]
                / max(fast["server_parts"]["engine_ms"]["median_ms"], 1e-6), 2)
        print(json.dumps(result, indent=1))
        return 0
    finally:
        if viewer is not None:
            viewer.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
