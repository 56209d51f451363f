"""End to end in headless Chromium: open the page, type a query, check the viewer's colours changed server-side.

Chromium is driven over the DevTools protocol (a tiny client on the ``websockets`` package): no selenium needed.
"""
from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pytest

from app.colors import heat_colors
from app.server import start_app
from sas_engine.query import find_regions

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (the test set-up installs it)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout: float, what: str, interval: float = 0.1):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class CDP:
    """Minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, open_timeout=20)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"JS error in {expr[:60]}: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    def close(self):
        self.ws.close()


@pytest.fixture
def chromium(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--remote-debugging-port={port}",
         "--remote-allow-origins=*", "--window-size=1400,1000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def page_ws():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            return pages[0]["webSocketDebuggerUrl"] if pages else None
        except OSError:
            return None

    try:
        cdp = CDP(wait_for(page_ws, 60, "chromium's DevTools endpoint"))
        yield cdp
        cdp.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def save_screenshot(cdp: CDP, path):
    data = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    path.write_bytes(data)
    return path


def test_query_typed_in_browser_recolours_the_viewer(fixture_state, chromium, tmp_path):
    state = fixture_state
    app = start_app(state, port=free_port(), viser_port=free_port())
    try:
        cdp = chromium
        cdp.call("Page.enable")
        cdp.call("Page.navigate", url=app.url)
        wait_for(lambda: cdp.eval("!!document.querySelector('#sas-viewer iframe')"), 60, "the panel to render")

        def client_view():
            for tok in list(state.sessions):
                for cv in state.viewer.clients_of(tok):
                    if cv.a is not None and not tok.startswith("viser"):
                        return cv
            return None

        cv = wait_for(client_view, 90, "the embedded viewer to connect with the tab's session token")
        session = state.session(cv.token)
        assert session.scene_id == "fixture0000_00"
        before = np.array(cv.a.colors, copy=True)
        np.testing.assert_array_equal(before, state.scene("fixture0000_00").colors)  # RGB mode at start

        # open the Query tab, type the query, press the button
        cdp.eval("[...document.querySelectorAll('button[role=tab]')].find(b => b.textContent.trim() == 'Query')"
                 ".click()")
        wait_for(lambda: cdp.eval("!!document.querySelector('#sas-query textarea, #sas-query input')"), 20,
                 "the query box")
        cdp.eval("document.querySelector('#sas-query textarea, #sas-query input').focus()")
        cdp.call("Input.insertText", text="a chair in a scene")  # the fake encoder knows no synonyms
        cdp.eval("document.querySelector('#sas-query-btn').click()")

        wait_for(lambda: session.query is not None and session.query.text == "a chair in a scene", 30,
                 "the query to arrive")
        wait_for(lambda: not np.array_equal(np.asarray(cv.a.colors), before), 30, "the viewer colours to change")
        eng = state.engine("fixture0000_00", session.query_layer)
        lay = state.layers("fixture0000_00")
        rel = eng.relevance("a chair in a scene", session.vocab)
        regions, shown = find_regions(rel.score, lay.scene.points, session.threshold, groups=lay.superpoints(),
                                      voxel=max(0.02, 2.5 * lay.spacing()))
        expected = heat_colors(shown, session.threshold, state.scene("fixture0000_00").colors)
        np.testing.assert_array_equal(np.asarray(cv.a.colors), expected)
        assert session.query_layer == "pred3d.demo"  # distilled features are queried first
        # the coloured points are the chair blob (points 800..1199 in the fixture)
        coloured = np.flatnonzero(np.nan_to_num(shown, nan=-1) >= session.threshold)
        assert coloured.size >= 350 and ((coloured >= 800) & (coloured < 1200)).mean() > 0.95
        # the page shows the colour bar (absolute relevance) and the top regions
        colorbar = "(document.querySelector('#sas-colorbar')?.textContent || '').includes('relevance')"
        wait_for(lambda: cdp.eval(colorbar), 20, "the colour bar")

        # let the viewer draw, then keep a screenshot for people to look at
        time.sleep(2.0)  # rendering time of software WebGL; the assertions above do not depend on it
        shot = save_screenshot(cdp, tmp_path / "query_chair.png")

        # click the middle of the 3D view: the ray is picked server-side and the point inspected
        rect = cdp.eval("(() => { const r = document.querySelector('#sas-viewer iframe').getBoundingClientRect();"
                        " return [r.left + r.width / 2, r.top + r.height * 0.55]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            cdp.call("Input.dispatchMouseEvent", type=kind, x=rect[0], y=rect[1], button="left", clickCount=1)
        wait_for(lambda: session.inspect_serial >= 1, 30, "the click to be inspected")
        assert session.inspection.startswith("**Point ")
        cdp.eval("[...document.querySelectorAll('button[role=tab]')].find(b => b.textContent.trim() == 'Inspect')"
                 ".click()")
        wait_for(lambda: "Point" in (cdp.eval("document.querySelector('#sas-inspect')?.textContent") or ""), 20,
                 "the panel's poll to show the inspection")
        time.sleep(1.0)
        save_screenshot(cdp, tmp_path / "inspect_click.png")
        print(f"screenshots: {shot.parent}")
    finally:
        app.close()


def test_user_scan_is_framed_and_gets_its_layers_in_the_page(chromium, tmp_path):
    """launch.py --data-root DIR on a bare PLY: the viewer opens framed with z up, the background build adds the
    student's layer, and the page's colour-mode list offers it without a reload."""
    import threading

    from app.cli import parse_args, setup_state
    from app.viewer import frame_camera, scene_box
    from sas_engine.io.ply import write_ply

    g = np.random.default_rng(0)
    floor = np.c_[g.uniform(0, 3, 1500), g.uniform(0, 2, 1500), np.zeros(1500)]
    wall = np.c_[g.uniform(0, 3, 1000), np.full(1000, 2.0), g.uniform(0, 2.2, 1000)]
    pts = np.concatenate([floor, wall]).astype(np.float32)
    col = np.full((len(pts), 3), 180, np.uint8)
    root = tmp_path / "scans_here"
    write_ply(root / "my_scan.ply", {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2], "red": col[:, 0],
                                     "green": col[:, 1], "blue": col[:, 2]})
    args = parse_args(["--data-root", str(root), "--store", str(tmp_path / "store"), "--up=z",
                                      "--port", str(free_port()), "--viser-port", str(free_port())])
    state, build = setup_state(args)  # z up as written (a floor and one wall alone could mislead auto-detection)
    assert state.scene_ids() == ["my_scan"] and callable(build) and state.up == "z"
    app = start_app(state, port=args.port, viser_port=args.viser_port)
    worker = threading.Thread(target=build, daemon=True)
    try:
        cdp = chromium
        cdp.call("Page.enable")
        cdp.call("Page.navigate", url=app.url)
        wait_for(lambda: cdp.eval("!!document.querySelector('#sas-viewer iframe')"), 60, "the panel to render")
        worker.start()

        def client_view():
            for tok in list(state.sessions):
                for cv in state.viewer.clients_of(tok):
                    if cv.camera is not None and not tok.startswith("viser"):
                        return cv
            return None

        cv = wait_for(client_view, 90, "the embedded viewer to connect")
        cam = cv.client.camera  # what the browser reports back once it applied the pose

        def settled():  # the browser shows the framed pose, framed for its canvas as it is now
            pos, target, _ = cv.camera
            return (np.allclose(cam.look_at, target, atol=1e-3) and np.allclose(cam.position, pos, atol=1e-3)
                    and abs(cv.camera_aspect / cam.aspect - 1) < 0.05)

        wait_for(settled, 30, "the browser's camera to take the framed pose")
        pos, target, up = cv.camera
        lo, hi = scene_box(cv.local)
        np.testing.assert_allclose(target, (lo + hi) / 2)
        assert tuple(up) == (0.0, 0.0, 1.0) and not np.all((pos >= lo) & (pos <= hi)) and pos[2] > target[2]
        np.testing.assert_allclose(cam.up_direction, (0, 0, 1), atol=1e-6)
        np.testing.assert_allclose(frame_camera(lo, hi, fov=cam.fov, aspect=cam.aspect)[0], pos, atol=1e-6)
        # every shown point is inside the browser's view, and the scene spans most of it
        fwd = (target - pos) / np.linalg.norm(target - pos)
        right = np.cross(fwd, up) / np.linalg.norm(np.cross(fwd, up))
        rel = cv.local - pos
        depth = rel @ fwd
        x = rel @ right / depth / (np.tan(cam.fov / 2) * cam.aspect)
        y = rel @ np.cross(right, fwd) / depth / np.tan(cam.fov / 2)
        assert (depth > 0).all() and np.abs(x).max() < 1 and np.abs(y).max() < 1
        assert max(np.ptp(x), np.ptp(y)) > 1.2

        worker.join(180)
        assert state.build.done and "1 scene(s) processed" in state.build.message
        session = state.session(cv.token)
        # the page's layer poll offers the student's segmentation: open the colour-mode list and pick it
        opts_js = "[...document.querySelectorAll('[role=option], ul.options li')].map(l => l.textContent.trim())"

        def click(x, y):
            for kind in ("mousePressed", "mouseReleased"):
                cdp.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

        def student_listed():  # open the list like a user, read it; close it again when the mode is not there yet
            r = cdp.eval("(() => { const b = document.querySelector('#sas-mode-a input').getBoundingClientRect();"
                         " return [b.left + b.width / 2, b.top + b.height / 2]; })()")
            click(*r)
            time.sleep(0.7)
            if any("student" in o for o in cdp.eval(opts_js) or []):
                return True
            click(5, 5)
            return False

        wait_for(student_listed, 30, "the student's mode in the page's list", interval=1.0)
        pos_opt = cdp.eval("(() => { const l = [...document.querySelectorAll('[role=option], ul.options li')]"
                           ".find(l => l.textContent.includes('student')); const b = l.getBoundingClientRect();"
                           " return [b.left + b.width / 2, b.top + b.height / 2]; })()")
        click(*pos_opt)
        wait_for(lambda: session.mode_a == "layer:pred3d.student", 30, "the student's mode to be chosen")
        wait_for(lambda: not np.array_equal(np.asarray(cv.a.colors), cv.shown(state.scene("my_scan").colors)), 30,
                 "the viewer to show the student's labels")
        assert cv.keep is None  # upright: no "ceiling" hidden
        time.sleep(2.0)
        save_screenshot(cdp, tmp_path / "user_scan_student.png")
    finally:
        app.close()
