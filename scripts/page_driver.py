"""Drive the real page in headless Chromium for the screenshot scripts (``screenshot_*.py``).

``demo_page(state)`` starts the app on an :class:`app.state.AppState`, opens it in headless Chromium at 1600x1000
through the DevTools protocol (the browser test's client, ``tests/app/test_browser.py``) and yields
``(app, cdp, session)`` once the page's viewer has connected; everything is stopped and the browser profile deleted
on exit. ``shot(cdp, path)`` saves a screenshot.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "app"))


class NoChromium(RuntimeError):
    """chromium is not installed (``bash scripts/setup.sh test`` installs it)."""


@contextmanager
def demo_page(state, width: int = 1600, height: int = 1000):
    from app.server import start_app
    from test_browser import CDP, free_port, wait_for  # the browser test's DevTools client

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise NoChromium("chromium is not installed (bash scripts/setup.sh test installs it)")
    app = start_app(state, port=free_port(), viser_port=free_port())
    profile = Path(tempfile.mkdtemp(prefix="sas_chromium_"))
    dport = free_port()
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
         f"--user-data-dir={profile}", f"--remote-debugging-port={dport}", "--remote-allow-origins=*",
         f"--window-size={width},{height}", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def page_ws():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{dport}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                return pages[0]["webSocketDebuggerUrl"] if pages else None
            except OSError:
                return None

        cdp = CDP(wait_for(page_ws, 60, "chromium's DevTools endpoint"))
        cdp.call("Page.enable")
        cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        cdp.call("Page.navigate", url=app.url)
        wait_for(lambda: cdp.eval("!!document.querySelector('#sas-viewer iframe')"), 90, "the panel")

        def session():
            for tok in list(state.sessions):
                if not tok.startswith("viser") and state.viewer.clients_of(tok):
                    return state.session(tok)
            return None

        yield app, cdp, wait_for(session, 120, "the viewer to connect")
    finally:
        proc.terminate()
        app.close()
        shutil.rmtree(profile, ignore_errors=True)


def shot(cdp, path: Path) -> str:
    """Save a PNG screenshot of the page to ``path`` (folders created); returns the path."""
    data = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)
