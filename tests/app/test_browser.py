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
from sas_engine.query import normalize_heat

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
        heat, _, _ = normalize_heat(eng.similarity("a chair in a scene"))
        expected = heat_colors(heat, session.threshold, state.scene("fixture0000_00").colors)
        np.testing.assert_array_equal(np.asarray(cv.a.colors), expected)
        assert session.query_layer == "pred3d.demo"  # distilled features are queried first
        # the hottest points are the chair blob (points 800..1199 in the fixture)
        top = np.argsort(-np.nan_to_num(heat, nan=-1))[:100]
        assert ((top >= 800) & (top < 1200)).mean() > 0.9
        # the page shows the colour bar and the top regions
        colorbar = "(document.querySelector('#sas-colorbar')?.textContent || '').includes('cosine')"
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
