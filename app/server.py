"""Start the viewer and the panel, wait until both answer, hand back one URL."""
from __future__ import annotations

import logging
import os
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


class PortInUse(SASError):
    """A port the app was asked to serve on is taken (message: one line naming the flag to change)."""


def check_port(host: str, port: int, flag: str) -> None:
    """Raise :class:`PortInUse` naming ``flag`` unless ``port`` can be bound on ``host`` now."""
    import socket

    if not 1 <= int(port) <= 65535:
        raise PortInUse(f"{flag} {port}: a port must be in 1..65535")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError as e:
            raise PortInUse(f"port {port} on {host} is in use ({e.strerror or e}); another SAS app or program holds "
                            f"it: stop it or pass {flag} <free port>") from None


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
            self.state.close()


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

    if int(port) == int(viser_port) and viewer:
        raise PortInUse(f"--port and --viser-port are both {port}: the page and the 3D viewer need two ports")
    check_port(host, port, "--port")  # one clear line now, not gradio's traceback after the viewer started
    v = None
    if viewer:
        check_port(host, viser_port, "--viser-port")
        v = Viewer(state, host=host, port=viser_port)
        if v.port != int(viser_port):  # viser moves on to the next free port by itself; the user asked for this one
            v.stop()
            state.viewer = None
            raise PortInUse(f"port {viser_port} on {host} was taken while starting (viser moved to {v.port}): "
                            "pass --viser-port <free port>")
        wait_http(f"http://{display_host(host)}:{v.port}/", timeout)
    blocks = build_blocks(state)
    blocks.queue(default_concurrency_limit=4)
    import gradio as gr

    # exports are served from where they were written (no copy in gradio's cache), so deleting a tab's folder when
    # its session closes deletes the only copy
    gr.set_static_paths([str(state.export_root)])
    try:
        blocks.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                      share=False, allowed_paths=[str(state.export_root)], css=CSS, show_error=False,
                      footer_links=[], mcp_server=False)
    except Exception as e:
        if v is not None:
            v.stop()
            state.viewer = None
        if isinstance(e, OSError) and "port" in str(e).lower():  # taken between the check and the launch
            raise PortInUse(f"port {port} on {host} is in use: pass --port <free port>") from None
        raise
    from .instances import mount_api

    mount_api(blocks.app, state)  # GET /api/instances (app/instances.py), on the panel's own host and port
    url = f"http://{display_host(host)}:{port}/"
    wait_http(url, timeout)
    return AppHandle(url, state, blocks, v)
