"""Start the viewer and the panel, wait until both answer, hand back one URL."""
from __future__ import annotations

import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sas_engine.errors import SASError

if TYPE_CHECKING:  # pragma: no cover
    from .state import AppState

log = logging.getLogger(__name__)

CSS = """
#sas-viewer iframe { min-height: 480px; }
.sas-legend { max-height: 260px; overflow-y: auto; }
"""


class ServerNotReady(SASError):
    """A server did not answer within the start-up timeout."""


def wait_http(url: str, timeout: float = 60.0, interval: float = 0.1) -> float:
    """Poll ``url`` until it answers HTTP 2xx/3xx; returns the seconds waited. Raises :class:`ServerNotReady`."""
    t0 = time.monotonic()
    last: Any = None
    while time.monotonic() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2.0) as r:
                if 200 <= r.status < 400:
                    return time.monotonic() - t0
                last = f"HTTP {r.status}"
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(interval)
    raise ServerNotReady(f"{url} did not answer within {timeout:.0f} s (last error: {last})")


def display_host(host: str) -> str:
    """Host to print in URLs: loopback for the wildcard addresses."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


@dataclass
class AppHandle:
    """A running app: its URL and the objects behind it."""

    url: str
    state: "AppState"
    blocks: Any
    viewer: Any

    def close(self) -> None:
        """Stop both servers and delete this run's exported files."""
        try:
            self.blocks.close()
        finally:
            if self.viewer is not None:
                self.viewer.stop()
                self.state.viewer = None
            shutil.rmtree(self.state.export_root, ignore_errors=True)


def start_app(state: "AppState", host: str = "127.0.0.1", port: int = 7860, viser_port: int = 8080,
              viewer: bool = True, timeout: float = 60.0) -> AppHandle:
    """Start viser (unless ``viewer`` is False) and the gradio panel in background threads; return once both answer.

    Args:
        state: the app state.
        host: interface both servers bind (default loopback only).
        port: the panel's port (the URL the user opens).
        viser_port: the 3D viewer's port (embedded in the panel as an iframe).
        viewer: False runs the panel without the 3D view (tests of the panel alone).
        timeout: seconds to wait for each server.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from .panel import build_blocks
    from .viewer import Viewer

    v = None
    if viewer:
        v = Viewer(state, host=host, port=viser_port)
        wait_http(f"http://{display_host(host)}:{v.port}/", timeout)
    blocks = build_blocks(state)
    blocks.queue(default_concurrency_limit=4)
    try:
        blocks.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                      share=False, allowed_paths=[str(state.export_root)], css=CSS, show_error=False,
                      footer_links=[], mcp_server=False)
    except Exception:
        if v is not None:
            v.stop()
            state.viewer = None
        raise
    url = f"http://{display_host(host)}:{port}/"
    wait_http(url, timeout)
    return AppHandle(url, state, blocks, v)
