"""The viser 3D view: one point cloud per view, per browser tab, updated by sending colours only.

Each gradio tab embeds the viewer in an iframe. Which tab a connecting viser client belongs to is learnt through
viser's public API only: the iframe's URL carries viser's documented ``initialCameraFar`` parameter set to a
per-tab *pairing value* (:func:`pairing_far`: the default far plane of 1024 m plus a random 30-bit code times
2^-20 m, exact in float64 and invisible on screen); the browser applies it to its camera and reports it in its
first camera message, and on ``server.on_client_connect`` the viewer reads ``client.camera.far`` and finds the tab's
session. So every tab sees its own scene, colours and query. A client with no known code (the viewer opened on its
own, or a tab of a previous run) gets a session of its own. Points are sent once per scene (and once more for the
side-by-side copy when comparison is first turned on); a query or mode change assigns ``handle.colors`` only.
Clicking a point sends a ray; the nearest point is inspected on the server, under the tab's session lock so that a
scene switch cannot swap the geometry mid-click.
"""
from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import quote

import numpy as np

from sas_engine.errors import SASError

from .picking import pick_point

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session
    from .state import AppState

log = logging.getLogger(__name__)

PAIR_FAR_BASE = 1024.0
"""Far plane (metres) of the viewer's camera; the pairing code is added to it in units of :data:`PAIR_FAR_STEP`."""
PAIR_FAR_STEP = 2.0 ** -20
PAIR_CODES = 2 ** 30
"""Pairing codes are drawn from 1 .. PAIR_CODES - 1 (so the far plane stays below 2048 m, where the step is exact)."""


def pairing_far(code: int) -> float:
    """The camera far plane that carries pairing ``code`` (exact in float64)."""
    if not 1 <= int(code) < PAIR_CODES:
        raise ValueError(f"pairing code {code} outside 1..{PAIR_CODES - 1}")
    return PAIR_FAR_BASE + int(code) * PAIR_FAR_STEP


def pairing_code(far: object) -> Optional[int]:
    """The pairing code a reported far plane carries, or ``None`` (viser's default far, or anything else)."""
    try:
        x = (float(far) - PAIR_FAR_BASE) / PAIR_FAR_STEP
    except (TypeError, ValueError):
        return None
    if not np.isfinite(x):
        return None
    k = round(x)
    return int(k) if abs(x - k) < 1e-3 and 1 <= k < PAIR_CODES else None


@dataclass
class ClientView:
    """What one connected viser client shows."""

    client: Any
    token: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    scene_id: Optional[str] = None
    a: Any = None
    b: Any = None
    offset_b: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    center: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    local: Optional[np.ndarray] = None
    keep: Optional[np.ndarray] = None
    point_size: float = 0.02
    markdown: Any = None
    marker: Any = None
    labels: list = field(default_factory=list)
    objects_version: int = -1
    compare_shown: Optional[bool] = None
    camera: Optional[tuple] = None  # (position, look-at, up) last framed, in the viewer's (centred) coordinates
    camera_aspect: float = 0.0  # the canvas width / height it was framed for
    boxes: list = field(default_factory=list)  # instance boxes and their labels (app/instances.py)
    instances_version: int = -1
    focus_version: int = -1
    gaussians: Any = None  # the scene's Gaussian splats when shown (app/gaussians.py)

    def shown(self, colors: np.ndarray) -> np.ndarray:
        """The colours of the displayed points (all, or all but a hidden ceiling; ``np.take``: 5x faster than fancy
        indexing of 3-byte rows)."""
        return colors if self.keep is None else np.take(colors, self.keep, axis=0)


def ceiling_points(points: np.ndarray, band: float = 0.05, min_fraction: float = 0.03) -> np.ndarray:
    """bool [N]: a horizontal layer of points at the top of a z-up room (a ceiling hides the room from above).

    Points within ``band`` metres of the highest point count when they are at least ``min_fraction`` of the scene and
    the scene is taller than 1.5 m; otherwise nothing is flagged (ScanNet meshes usually have no ceiling).
    """
    z = points[:, 2]
    top = float(z.max())
    near = z > top - band
    if top - float(z.min()) < 1.5 or near.mean() < min_fraction:
        return np.zeros(len(points), bool)
    return near


def display_geometry(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, str, float]:
    """(centred float32 points, centre, point size, precision, side-by-side offset along x) for a scene."""
    lo, hi = points.min(0), points.max(0)
    center = ((lo + hi) / 2).astype(np.float32)
    local = (points - center).astype(np.float32)
    ext = np.maximum(hi - lo, 1e-3)
    area = 2 * (ext[0] * ext[1] + ext[1] * ext[2] + ext[0] * ext[2])
    spacing = float(np.sqrt(area / max(len(points), 1)))
    size = float(np.clip(1.5 * spacing, 0.004, 0.1))
    precision = "float32" if float(np.abs(local).max()) > 30 else "float16"
    return local, center, size, precision, float(ext[0] * 1.15 + 0.2)


def box_edges(lo, hi) -> np.ndarray:
    """float32 [12, 2, 3] the edges of the axis-aligned box with corners ``lo`` and ``hi``."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    c = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8) if bin(i ^ j).count("1") == 1]
    return np.stack([c[[i, j]] for i, j in pairs]).astype(np.float32)


INSTANCE_COLOURS = ((255, 140, 0), (0, 170, 255), (255, 60, 160), (60, 200, 60), (200, 120, 255), (255, 220, 0))
"""Box colours of the listed instances, by rank."""
VIEW_ELEVATION = 40.0
"""Degrees above the horizon the camera looks down from when a scene opens."""
VIEW_AZIMUTH = 30.0
"""Degrees the opening view is turned from straight across the scene's longer horizontal side (a 3/4 view)."""
DEFAULT_FOV = np.deg2rad(75.0)
"""Vertical field of view assumed before the browser reports its own (viser's default)."""


def scene_box(points: np.ndarray, trim: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) corners of the box holding the points without the ``trim`` share of outliers at each end of each axis
    (a few stray points of a reconstruction must not shrink the room on screen)."""
    pts = np.asarray(points, np.float64)
    if len(pts) < 200 or trim <= 0:
        return pts.min(0), pts.max(0)
    return np.quantile(pts, trim, axis=0), np.quantile(pts, 1.0 - trim, axis=0)


def _fit_distance(lo, hi, back, fov: float, aspect: float) -> float:
    """Smallest distance from the centre of the z-up box (``lo``, ``hi``), along the unit vector ``back`` (centre ->
    camera), at which a camera looking back at the centre with +z up has all 8 corners inside its view frustum
    (vertical ``fov`` in radians, width / height ``aspect``)."""
    center = (lo + hi) / 2
    fwd = -back
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up_cam = np.cross(right, fwd)
    tan_v = np.tan(float(fov) / 2)
    tan_h = tan_v * max(float(aspect), 1e-3)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]) - center
    need = np.maximum(np.abs(corners @ right) / tan_h, np.abs(corners @ up_cam) / tan_v) - corners @ fwd
    return float(need.max())


def frame_camera(lo, hi, fov: float = DEFAULT_FOV, aspect: float = 16 / 9, elevation: float = VIEW_ELEVATION,
                 azimuth: float = VIEW_AZIMUTH, margin: float = 1.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(camera position, look-at point, up direction) that frame a z-up box from a 3/4 elevated viewpoint.

    The camera looks at the box's centre with +z up, from ``elevation`` degrees above the horizon, turned
    ``azimuth`` degrees from straight across the box's longer horizontal side (so the long side runs across the
    screen). Its distance is the smallest at which all 8 corners are inside the view frustum (vertical ``fov`` in
    radians, width / height ``aspect``), times ``margin``, and at least the box's half diagonal, so the camera is
    never inside the box.
    """
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    center = (lo + hi) / 2
    ext = np.maximum(hi - lo, 1e-3)
    el, az = np.deg2rad(elevation), np.deg2rad(azimuth)
    # horizontal direction from the centre to the camera: across the longer side, turned by the azimuth
    if ext[0] >= ext[1]:
        across, along = np.array([0.0, -1.0, 0.0]), np.array([-1.0, 0.0, 0.0])
    else:
        across, along = np.array([-1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    horiz = np.cos(az) * across + np.sin(az) * along
    back = np.cos(el) * horiz + np.array([0.0, 0.0, np.sin(el)])  # unit vector, centre -> camera
    dist = max(_fit_distance(lo, hi, back, fov, aspect) * margin, float(np.linalg.norm(ext)) / 2 * 1.01)
    return center + dist * back, center, np.array([0.0, 0.0, 1.0])


def frame_object(lo, hi, room_lo, room_hi, fov: float = DEFAULT_FOV, aspect: float = 16 / 9,
                 elevation: float = 45.0, margin: float = 1.6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(camera position, look-at point, up direction) framing an object's z-up box (``lo``, ``hi``) inside a room
    (``room_lo``, ``room_hi``): seen from the room's middle side, ``elevation`` degrees above the horizon, at the
    distance that fits the box in the view (times ``margin``) but never outside the room, where walls would hide
    it."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    rlo, rhi = np.asarray(room_lo, np.float64), np.asarray(room_hi, np.float64)
    center = (lo + hi) / 2
    d = ((rlo + rhi) / 2 - center)[:2]
    horiz = np.array([0.0, -1.0, 0.0]) if np.linalg.norm(d) < 1e-6 else np.array([d[0], d[1], 0.0]) / np.linalg.norm(d)
    el = np.deg2rad(elevation)
    back = np.cos(el) * horiz + np.array([0.0, 0.0, np.sin(el)])
    dist = max(_fit_distance(lo, hi, back, fov, aspect) * margin, float(np.linalg.norm(hi - lo)) / 2 * 1.01, 0.3)
    # stay inside the room (5 cm from its walls, floor and ceiling)
    inner_lo, inner_hi = rlo + 0.05, rhi - 0.05
    t_max = np.inf
    for k in range(3):
        if back[k] > 1e-9:
            t_max = min(t_max, (inner_hi[k] - center[k]) / back[k])
        elif back[k] < -1e-9:
            t_max = min(t_max, (inner_lo[k] - center[k]) / back[k])
    if np.isfinite(t_max) and t_max > 0:
        dist = min(dist, t_max)
    return center + dist * back, center, np.array([0.0, 0.0, 1.0])


class Viewer:
    """A viser server bound to the app state.

    Args:
        state: the app state (its ``viewer`` attribute is set to this object).
        host: interface to bind (default loopback only).
        port: port to try first (viser moves to the next free one; see :attr:`port`).
    """

    def __init__(self, state: "AppState", host: str = "127.0.0.1", port: int = 8080):
        import viser

        self.state = state
        self.host = host
        self.server = viser.ViserServer(host=host, port=port, label="SAS viewer", verbose=False)
        self.port = int(self.server.get_port())
        self.server.scene.set_up_direction("+z")
        self._views: dict[int, ClientView] = {}
        self._codes: dict[int, str] = {}  # pairing code -> session token
        self._code_of: dict[str, int] = {}  # session token -> pairing code
        self._lock = threading.Lock()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        state.viewer = self

    def pair(self, token: str) -> int:
        """The pairing code of a tab's session (made on first use; :meth:`forget` drops it)."""
        with self._lock:
            code = self._code_of.get(token)
            if code is None:
                code = secrets.randbelow(PAIR_CODES - 1) + 1
                while code in self._codes:
                    code = secrets.randbelow(PAIR_CODES - 1) + 1
                self._codes[code] = token
                self._code_of[token] = code
            return code

    def forget(self, token: str) -> None:
        """A session closed: its pairing code no longer joins it."""
        with self._lock:
            code = self._code_of.pop(token, None)
            if code is not None:
                self._codes.pop(code, None)

    def url(self, token: Optional[str] = None, host: Optional[str] = None) -> str:
        """URL of the viewer page; with ``token`` its camera carries the tab's pairing value (:func:`pairing_far`)."""
        h = host or self.host
        base = f"http://{h}:{self.port}/"
        if token is None:
            return base
        return base + "?initialCameraFar=" + quote(repr(pairing_far(self.pair(token))), safe="")

    def stop(self) -> None:
        self.server.stop()

    # -- clients -----------------------------------------------------------------------------------------------
    def _token_of(self, client) -> Optional[str]:
        """The session token a connecting client was paired with, read from the far plane its browser reported
        (``client.camera.far``: public viser API; the first camera message arrives before ``on_client_connect``)."""
        try:
            far = client.camera.far
        except AttributeError:  # a client object without a reported camera
            return None
        code = pairing_code(far)
        if code is None:
            return None
        with self._lock:
            return self._codes.get(code)

    def clients_of(self, token: str) -> list[ClientView]:
        with self._lock:
            return [v for v in self._views.values() if v.token == token]

    def _connect(self, client) -> None:
        token = self._token_of(client)
        session = None
        if token is not None:
            try:
                session = self.state.session(token)
            except SASError:
                session = None
        if session is None:  # opened directly (or a stale tab): an own session showing the first scene
            session = self.state.new_session(f"viser{client.client_id}")
            ids = self.state.scene_ids()
            if ids and session.scene_id is None:
                try:
                    session.select_scene(ids[0])
                except SASError as e:
                    log.warning("viewer: %s", e)
        cv = ClientView(client, session.token)
        try:  # a small panel that folds away: the inspection must not cover the scene (the full text is in the page)
            client.gui.configure_theme(control_layout="floating", control_width="small", show_share_button=False)
        except (TypeError, AttributeError) as e:  # older viser: its default floating panel
            log.debug("viewer theme not set: %s", e)
        with client.gui.add_folder("Point inspection"):
            cv.markdown = client.gui.add_markdown("Click a point to see what each teacher, the fusion and the "
                                                  "distilled model say about it.")
        client.scene.on_click()(self._on_click)
        on_update = getattr(client.camera, "on_update", None)
        if on_update is not None:
            on_update(lambda cam, cv=cv: self._camera_update(cv, cam))
        with self._lock:
            self._views[client.client_id] = cv
        self._show(cv, session, geometry=True)

    def _disconnect(self, client) -> None:
        with self._lock:
            cv = self._views.pop(client.client_id, None)
        if cv is not None and cv.token.startswith("viser"):
            self.state.drop_session(cv.token)

    # -- updates -----------------------------------------------------------------------------------------------
    def update(self, session: "Session", geometry: bool = False) -> None:
        """Push a session's current colours (and points when ``geometry``) to its connected clients."""
        for cv in self.clients_of(session.token):
            try:
                self._show(cv, session, geometry)
            except (OSError, RuntimeError) as e:  # a closing websocket must not break the panel's handler (an
                # engine error, SASError, is not caught: the panel shows it)
                log.warning("viewer update failed for client %s: %s", cv.client.client_id, e)

    def _show(self, cv: ClientView, session: "Session", geometry: bool) -> None:
        with session.lock, cv.lock:  # lock order: session, then client view (as in the panel's handlers)
            if session.scene_id is None or session.view_a is None:
                return
            client = cv.client
            scene = session.layers().scene
            new_scene = cv.scene_id != scene.scene_id or cv.a is None
            with client.atomic():
                if new_scene or geometry:
                    if new_scene:
                        self._add_a(cv, scene, session)
                    self._sync_b(cv, scene, session)
                    if new_scene or cv.compare_shown != session.compare:
                        self._camera(cv, session.compare)
                        cv.compare_shown = session.compare
                else:
                    cv.a.colors = cv.shown(session.view_a.colors)
                    if session.view_b is not None:
                        if cv.b is None:
                            self._sync_b(cv, scene, session)
                        else:
                            cv.b.colors = cv.shown(session.view_b.colors)
                            cv.b.visible = True
                    elif cv.b is not None:
                        cv.b.visible = False
                self._objects(cv, session)
                self._instances(cv, session)

    def _add_a(self, cv: ClientView, scene, session: "Session") -> None:
        client = cv.client
        for h in (cv.a, cv.b, cv.marker, cv.gaussians):
            if h is not None:
                h.remove()
        cv.b = cv.marker = cv.gaussians = None
        hidden = ceiling_points(scene.points)
        cv.keep = np.flatnonzero(~hidden) if hidden.any() else None
        local, center, size, precision, dx = display_geometry(scene.points)
        if cv.keep is not None:
            local = np.ascontiguousarray(local[cv.keep])
            cv.markdown.content = (f"Ceiling hidden ({int(hidden.sum()):,} points). Click a point to see what each "
                                   "teacher, the fusion and the distilled model say about it.")
        cv.local, cv.center, cv.point_size = local, center, size
        cv.offset_b = np.array([dx, 0, 0], np.float32)
        cv.a = client.scene.add_point_cloud("/sas/a", local, cv.shown(session.view_a.colors), point_size=size,
                                            precision=precision, point_shape="circle", point_shading="flat")
        cv.scene_id = scene.scene_id
        cv.objects_version = -1

    def _sync_b(self, cv: ClientView, scene, session: "Session") -> None:
        if session.view_b is None:
            if cv.b is not None:
                cv.b.visible = False
            return
        if cv.b is None:
            precision = "float32" if float(np.abs(cv.local).max()) > 30 else "float16"
            cv.b = cv.client.scene.add_point_cloud("/sas/b", cv.local, cv.shown(session.view_b.colors),
                                                   point_size=cv.point_size,
                                                   precision=precision, position=tuple(cv.offset_b),
                                                   point_shape="circle", point_shading="flat")
        else:
            cv.b.colors = cv.shown(session.view_b.colors)
            cv.b.visible = True
        cv.a.colors = cv.shown(session.view_a.colors)

    def _camera(self, cv: ClientView, compare: bool) -> None:
        """Frame the shown cloud (both clouds when comparing) from a 3/4 elevated view, z up (:func:`frame_camera`),
        through viser's per-client camera (its field of view and aspect as the browser reports them)."""
        lo, hi = scene_box(cv.local)
        if compare:
            lo, hi = np.minimum(lo, lo + cv.offset_b), np.maximum(hi, hi + cv.offset_b)
        cam = cv.client.camera
        try:
            fov, aspect = float(cam.fov), float(cam.aspect)
        except (AttributeError, TypeError, ValueError):  # no camera reported (or a stand-in client): defaults
            fov, aspect = DEFAULT_FOV, 16 / 9
        if not (0.05 < fov < 3.0 and 0.1 < aspect < 10):
            fov, aspect = DEFAULT_FOV, 16 / 9
        pos, target, up = frame_camera(lo, hi, fov=fov, aspect=aspect)
        cv.camera, cv.camera_aspect = (pos, target, up), aspect
        try:
            cam.up_direction = tuple(float(x) for x in up)
            cam.position = tuple(float(x) for x in pos)  # viser moves look_at along with the position...
            cam.look_at = tuple(float(x) for x in target)  # ...so the target is set last
        except (AttributeError, OSError, RuntimeError) as e:  # a client that left meanwhile; framing is a convenience
            log.debug("camera not set: %s", e)

    def _camera_update(self, cv: ClientView, cam) -> None:
        """The browser reported its camera: when the canvas changed shape since the scene was framed (the page's
        layout settles after the viewer connects) and the user has not moved the view yet, frame it again."""
        with cv.lock:
            if cv.camera is None or cv.local is None:
                return
            try:
                aspect = float(cam.aspect)
                moved = max(float(np.linalg.norm(np.asarray(cam.position) - cv.camera[0])),
                            float(np.linalg.norm(np.asarray(cam.look_at) - cv.camera[1])))
            except (AttributeError, TypeError, ValueError):  # nothing reported yet
                return
            scale = float(np.linalg.norm(cv.camera[0] - cv.camera[1]))
            if abs(aspect / max(cv.camera_aspect, 1e-6) - 1) < 0.05 or moved > 1e-3 * scale:
                return
            self._camera(cv, bool(cv.compare_shown))

    def _objects(self, cv: ClientView, session: "Session") -> None:
        """The top regions' labels: the existing label nodes are moved and re-worded (viser sends only the fields
        that changed), extra ones removed, missing ones added."""
        if cv.objects_version == session.objects_serial:
            return
        keep = min(len(cv.labels), len(session.objects))
        for h in cv.labels[keep:]:
            h.remove()
        cv.labels = cv.labels[:keep]
        for i, h in enumerate(session.objects):
            pos = tuple(float(x) for x in h.center - cv.center)
            text = f"#{i + 1} {h.score:.2f}"
            if i < keep:
                cv.labels[i].text = text
                cv.labels[i].position = pos
            else:
                cv.labels.append(cv.client.scene.add_label(f"/sas/objects/{i}", text, position=pos))
        cv.objects_version = session.objects_serial

    def _instances(self, cv: ClientView, session: "Session") -> None:
        """Draw the last instance answer's boxes (their 12 edges, 3 px wide, labelled "#rank label score"), and
        frame the camera on the instance the panel picked."""
        ans = getattr(session, "instances", None)
        if cv.instances_version != getattr(session, "instances_serial", 0):
            for h in cv.boxes:
                h.remove()
            cv.boxes = []
            if ans is not None and ans.get("scene") == cv.scene_id:
                for r in ans["instances"]:
                    lo = np.asarray(r["bbox_min"], np.float64) - cv.center
                    hi = np.asarray(r["bbox_max"], np.float64) - cv.center
                    col = INSTANCE_COLOURS[(r["rank"] - 1) % len(INSTANCE_COLOURS)]
                    cv.boxes.append(cv.client.scene.add_line_segments(
                        f"/sas/instances/{r['rank']}", box_edges(lo, hi), np.array(col, np.uint8),
                        thickness=3.0, thickness_units="screen"))
                    top = ((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, hi[2] + 0.05)
                    cv.boxes.append(cv.client.scene.add_label(
                        f"/sas/instance_labels/{r['rank']}", f"#{r['rank']} {r['label']} {r['score']:.2f}",
                        position=tuple(float(x) for x in top)))
            cv.instances_version = getattr(session, "instances_serial", 0)
        if cv.focus_version != getattr(session, "focus_serial", 0):
            cv.focus_version = getattr(session, "focus_serial", 0)
            r = getattr(session, "focus", None)
            if r is not None and ans is not None and ans.get("scene") == cv.scene_id:
                self.frame_box(cv, np.asarray(r["bbox_min"]) - cv.center, np.asarray(r["bbox_max"]) - cv.center)

    def frame_box(self, cv: ClientView, lo, hi) -> None:
        """Point the client's camera at an object's box (viewer coordinates) from inside the room
        (:func:`frame_object`)."""
        cam = cv.client.camera
        try:
            fov, aspect = float(cam.fov), float(cam.aspect)
        except (AttributeError, TypeError, ValueError):  # no camera message yet: viser's defaults
            fov, aspect = DEFAULT_FOV, 16 / 9
        if not (0.05 < fov < 3.0 and 0.1 < aspect < 10):
            fov, aspect = DEFAULT_FOV, 16 / 9
        room_lo, room_hi = scene_box(cv.local)
        pos, target, up = frame_object(lo, hi, room_lo, room_hi, fov=fov, aspect=aspect)
        cv.camera, cv.camera_aspect = (pos, target, up), aspect
        try:
            cam.up_direction = tuple(float(x) for x in up)
            cam.position = tuple(float(x) for x in pos)
            cam.look_at = tuple(float(x) for x in target)
        except (AttributeError, OSError, RuntimeError) as e:  # a client that disconnected meanwhile
            log.debug("camera not set: %s", e)

    # -- picking -----------------------------------------------------------------------------------------------
    def _on_click(self, event) -> None:
        """A click ray from a client: inspect the nearest shown point. The whole click runs under the tab's session
        lock (the lock order of :meth:`_show`: session, then client view), so a scene switch from the panel waits
        for it and the geometry the ray is picked on is the geometry of the scene that gets inspected."""
        with self._lock:
            cv = self._views.get(event.client_id)
        if cv is None or event.ray_origin is None or event.ray_direction is None:
            return
        try:
            session = self.state.session(cv.token)
        except SASError:
            return
        o = np.asarray(event.ray_origin, np.float64)
        d = np.asarray(event.ray_direction, np.float64)
        with session.lock:
            with cv.lock:
                if cv.local is None or cv.scene_id is None:
                    return
                local, keep, size, scene_id = cv.local, cv.keep, cv.point_size, cv.scene_id
                offsets = [np.zeros(3)] + ([cv.offset_b.copy()] if cv.b is not None and session.compare else [])
            if session.scene_id != scene_id:  # the tab moved on and this client was not updated (yet)
                return
            best = None
            for off in offsets:
                i = pick_point(local, o - off, d, size)
                if i is not None:
                    dist = float(np.linalg.norm(local[i] + off - o))
                    if best is None or dist < best[0]:
                        best = (dist, i, off)
            if best is None:
                with cv.lock:
                    cv.markdown.content = "No point under the cursor: click directly on the cloud."
                return
            _, i, off = best
            idx = int(i if keep is None else keep[i])  # displayed index -> scene point index
            try:
                session.inspect(idx)
                md = session.inspection_short
            except SASError as e:
                md = f"Inspection failed: {e}"
            with cv.lock:
                if cv.scene_id != scene_id:
                    return
                cv.markdown.content = md
                pos = tuple(float(x) for x in local[i] + off)
                if cv.marker is None:
                    cv.marker = cv.client.scene.add_icosphere("/sas/pick", radius=size * 2, color=(255, 0, 0),
                                                              position=pos)
                else:
                    cv.marker.position = pos
