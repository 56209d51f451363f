"""The viser side without a browser: a recording stand-in for one connected client checks what is sent."""
from __future__ import annotations

import contextlib
import types
import urllib.parse

import numpy as np
import pytest

from app.viewer import Viewer

SID = "fixture0000_00"


class Handle:
    """Records every property assignment (what viser would send)."""

    def __init__(self, log, name, **props):
        object.__setattr__(self, "_log", log)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "props", dict(props))
        object.__setattr__(self, "removed", False)

    def __setattr__(self, k, v):
        self._log.append(("set", self.name, k))
        self.props[k] = v

    def __getattr__(self, k):
        try:
            return self.props[k]
        except KeyError:
            raise AttributeError(k) from None

    def remove(self):
        object.__setattr__(self, "removed", True)
        self._log.append(("remove", self.name, None))


class FakeClient:
    def __init__(self, client_id=7):
        self.client_id = client_id
        self.log: list = []
        self.click_cb = None
        log = self.log
        outer = self

        def add(kind):
            def f(name, *args, **kw):
                log.append((kind, name, None))
                if kind == "add_point_cloud":
                    kw.update(points=args[0], colors=args[1], visible=kw.get("visible", True))
                if kind == "add_label":
                    kw.update(text=args[0])
                return Handle(log, name, **kw)
            return f

        def on_click(**kw):
            def deco(fn):
                outer.click_cb = fn
                return fn
            return deco

        self.scene = types.SimpleNamespace(add_point_cloud=add("add_point_cloud"), add_label=add("add_label"),
                                           add_icosphere=add("add_icosphere"), on_click=on_click)
        self.gui = types.SimpleNamespace(add_folder=lambda *a, **k: contextlib.nullcontext(),
                                         add_markdown=lambda text: Handle(log, "markdown", content=text))
        self.camera = types.SimpleNamespace()

    def atomic(self):
        return contextlib.nullcontext()

    def count(self, kind, name=None):
        return sum(1 for k, n, _ in self.log if k == kind and (name is None or n == name))


@pytest.fixture
def viewer(fixture_state, monkeypatch):
    v = Viewer(fixture_state, port=0)
    yield v
    v.stop()
    fixture_state.viewer = None


def paired(client, viewer, token):
    """The camera a browser reports after opening ``viewer.url(token)`` (its far plane from ``initialCameraFar``)."""
    url = viewer.url(token)
    client.camera.far = float(urllib.parse.unquote(url.split("initialCameraFar=", 1)[1]))
    return client


def _connected_tab(st, viewer, monkeypatch):
    """A session "tab1" showing SID, and a fake browser connected to the viewer as that tab."""
    s = st.new_session("tab1")
    s.select_scene(SID)
    client = paired(FakeClient(), viewer, "tab1")
    viewer._connect(client)
    return st, s, client


def test_points_sent_once_then_only_colours(fixture_state, viewer, monkeypatch):
    st, s, client = _connected_tab(fixture_state, viewer, monkeypatch)
    assert client.count("add_point_cloud", "/sas/a") == 1
    a = [h for h in viewer.clients_of("tab1")][0].a
    np.testing.assert_array_equal(a.colors, st.scene(SID).colors)
    pts = a.points
    np.testing.assert_allclose(pts + viewer.clients_of("tab1")[0].center, st.scene(SID).points, atol=1e-5)

    s.run_query("a chair in a scene")
    s.set_threshold(0.8)
    s.set_modes("layer:fused.sas")
    s.run_query("chair, sofa")
    assert client.count("add_point_cloud") == 1  # no points re-sent
    assert client.count("set", "/sas/a") >= 4
    np.testing.assert_array_equal(a.colors, s.view_a.colors)
    assert client.count("add_label") >= 1  # top-k regions of the heat query were labelled in 3D

    s.set_modes("gt", compare=True, mode_b="disagreement")
    assert client.count("add_point_cloud", "/sas/b") == 1
    b = viewer.clients_of("tab1")[0].b
    np.testing.assert_array_equal(b.colors, s.view_b.colors)
    assert b.position[0] > 0 and b.visible
    s.run_query("a sofa in a scene")
    s.set_modes("rgb", compare=False)
    s.set_modes("gt", compare=True, mode_b="superpoints")
    assert client.count("add_point_cloud") == 2  # each cloud's points went out exactly once
    assert b.visible and not a.removed

    # another tab's actions never touch this client
    other = st.new_session("tab2")
    other.select_scene(SID)
    before = len(client.log)
    other.run_query("a table in a scene")
    assert len(client.log) == before


def test_click_inspects_the_nearest_point(fixture_state, viewer, monkeypatch):
    st, s, client = _connected_tab(fixture_state, viewer, monkeypatch)
    cv = viewer.clients_of("tab1")[0]
    target = 900
    p = cv.local[target]
    origin = p + np.array([0.0, 0.0, 5.0])
    ev = types.SimpleNamespace(client_id=client.client_id, ray_origin=tuple(origin), ray_direction=(0.0, 0.0, -1.0))
    client.click_cb(ev)
    assert s.inspect_serial == 1 and s.inspection.startswith("**Point ")
    picked = int(s.inspection.split()[1].strip("*"))
    # the picked point lies on the ray (within the pick radius) and is the first one hit from above
    d = np.linalg.norm(cv.local[picked, :2] - p[:2])
    assert d <= cv.point_size + 1e-6 and cv.local[picked, 2] >= p[2] - 1e-6
    # the overlay keeps to a short summary (the point, its labels); the full text is in the page's Inspect tab
    assert cv.markdown.content == s.inspection_short and cv.markdown.content.startswith(f"**Point {picked}**")
    assert "Inspect tab" in cv.markdown.content and len(cv.markdown.content) < len(s.inspection)
    assert client.count("add_icosphere", "/sas/pick") == 1
    miss = types.SimpleNamespace(client_id=client.client_id, ray_origin=(50.0, 50.0, 50.0),
                                 ray_direction=(0.0, 0.0, 1.0))
    client.click_cb(miss)
    assert s.inspect_serial == 1 and "No point" in cv.markdown.content


def test_direct_visitor_gets_its_own_session(fixture_state, viewer, monkeypatch):
    client = FakeClient(client_id=3)
    client.camera.far = 1000.0  # viser's own default: the viewer was opened on its own
    viewer._connect(client)
    assert "viser3" in fixture_state.sessions
    assert fixture_state.session("viser3").scene_id == SID
    assert client.count("add_point_cloud", "/sas/a") == 1
    viewer._disconnect(client)
    assert "viser3" not in fixture_state.sessions
    assert viewer.url().rstrip("/").endswith(str(viewer.port))


class Strict:
    """A proxy that fails the test on any private attribute read (``_name``) of the object it wraps."""

    def __init__(self, obj, what):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_what", what)

    def __getattr__(self, k):
        if k.startswith("_"):
            raise AssertionError(f"private attribute {k} of {object.__getattribute__(self, '_what')} read")
        return getattr(object.__getattribute__(self, "_obj"), k)

    def __setattr__(self, k, v):
        if k.startswith("_"):
            raise AssertionError(f"private attribute {k} of {object.__getattribute__(self, '_what')} written")
        setattr(object.__getattribute__(self, "_obj"), k, v)


def test_tabs_pair_through_public_viser_api_only(fixture_state, viewer, monkeypatch):
    """Each tab's viewer URL carries its own pairing value; a client reporting it joins that tab's session, with
    the viser server and the client wrapped so that any private attribute use fails; a closed session's value no
    longer pairs."""
    from app.viewer import pairing_code, pairing_far

    st = fixture_state
    viewer.server = Strict(viewer.server, "the viser server")
    s1, s2 = st.new_session("tabA"), st.new_session("tabB")
    s1.select_scene(SID)
    s2.select_scene(SID)
    u1, u2 = viewer.url("tabA"), viewer.url("tabB")
    assert u1 != u2 and viewer.url("tabA") == u1  # stable per tab
    f1 = float(urllib.parse.unquote(u1.split("initialCameraFar=", 1)[1]))
    assert 1024.0 < f1 < 2048.0 and pairing_far(pairing_code(f1)) == f1  # exact round trip
    assert pairing_code(1000.0) is None and pairing_code(float("nan")) is None and pairing_code("x") is None
    c1 = paired(FakeClient(client_id=11), viewer, "tabA")
    c2 = paired(FakeClient(client_id=12), viewer, "tabB")
    viewer._connect(Strict(c1, "client 11"))
    viewer._connect(Strict(c2, "client 12"))
    assert [cv.client.client_id for cv in viewer.clients_of("tabA")] == [11]
    assert [cv.client.client_id for cv in viewer.clients_of("tabB")] == [12]
    before = len(c2.log)
    s1.run_query("a chair in a scene")  # recolours tab A's client only
    assert c1.count("set", "/sas/a") >= 1 and len(c2.log) == before
    cv1 = viewer.clients_of("tabA")[0]
    p = cv1.local[900]
    c1.click_cb(types.SimpleNamespace(client_id=11, ray_origin=tuple(p + [0, 0, 5.0]), ray_direction=(0, 0, -1.0)))
    assert s1.inspect_serial == 1 and s2.inspect_serial == 0
    viewer._disconnect(Strict(c1, "client 11"))
    assert viewer.clients_of("tabA") == [] and "tabA" in st.sessions  # a page's session outlives its viewer
    st.drop_session("tabA")  # the tab closed: its pairing value is forgotten
    again = FakeClient(client_id=13)
    again.camera.far = f1
    viewer._connect(again)
    assert viewer.clients_of("tabA") == [] and "viser13" in st.sessions


def test_click_holds_the_session_while_a_scene_switch_waits(fixture_state, viewer, monkeypatch):
    """A click picks and inspects on one consistent geometry: a scene switch requested meanwhile (the panel, another
    thread) waits for it, then the client gets the new scene."""
    import threading

    import app.viewer as V

    st, s, client = _connected_tab(fixture_state, viewer, monkeypatch)
    other = fixture_state.scene(SID)
    from sas_engine.scene import Scene

    g = np.random.default_rng(5)
    st.add_scene(Scene("small0000_00", g.uniform(0, 1, (300, 3)).astype(np.float32),
                       np.full((300, 3), 50, np.uint8)))
    switched = {}
    real_pick = V.pick_point

    def pick_during_switch(points, o, d, r):
        t = threading.Thread(target=lambda: switched.setdefault("msg", s.select_scene("small0000_00")))
        t.start()
        t.join(0.5)
        switched["waited"] = t.is_alive()  # the switch is blocked while the click holds the session
        switched["thread"] = t
        return real_pick(points, o, d, r)

    monkeypatch.setattr(V, "pick_point", pick_during_switch)
    cv = viewer.clients_of("tab1")[0]
    target = 900
    p = cv.local[target]
    client.click_cb(types.SimpleNamespace(client_id=client.client_id, ray_origin=tuple(p + [0, 0, 5.0]),
                                          ray_direction=(0.0, 0.0, -1.0)))
    switched["thread"].join(10)
    assert switched["waited"] is True and s.inspect_serial == 1
    picked = int(s.inspection_short.split()[1].strip("*"))  # the switch cleared the page's inspection text since
    assert picked >= 800 and np.linalg.norm(other.points[picked, :2] - other.points[target, :2]) < 0.1
    assert cv.scene_id == "small0000_00" and len(cv.local) == 300  # then the switch went through
    # a click that arrives with the old geometry after the tab moved on is dropped, not inspected on the new scene
    monkeypatch.setattr(V, "pick_point", real_pick)
    with cv.lock:
        cv.scene_id = SID
    client.click_cb(types.SimpleNamespace(client_id=client.client_id, ray_origin=(0.0, 0.0, 5.0),
                                          ray_direction=(0.0, 0.0, -1.0)))
    assert s.inspect_serial == 1


def test_hidden_ceiling_and_index_mapping(fixture_state, viewer, monkeypatch):
    from sas_engine.scene import Scene

    g = np.random.default_rng(1)
    ceiling = np.c_[g.uniform(0, 4, (600, 2)), np.full(600, 2.6)]
    floor = np.c_[g.uniform(0, 4, (600, 2)), np.zeros(600)]
    pts = np.concatenate([ceiling, floor]).astype(np.float32)  # ceiling first: indices must be mapped back
    fixture_state.add_scene(Scene("room0000_00", pts, np.full((1200, 3), 128, np.uint8)))
    s = fixture_state.new_session("tab1")
    s.select_scene("room0000_00")
    client = FakeClient()
    viewer._connect(paired(client, viewer, "tab1"))
    cv = viewer.clients_of("tab1")[0]
    assert len(cv.a.points) == 600 and len(cv.a.colors) == 600  # ceiling not sent
    assert "Ceiling hidden (600 points)" in cv.markdown.content
    target = 900  # a floor point
    p = pts[target] - cv.center
    client.click_cb(types.SimpleNamespace(client_id=client.client_id, ray_origin=tuple(p + [0, 0, 10.0]),
                                          ray_direction=(0.0, 0.0, -1.0)))
    picked = int(s.inspection.split()[1].strip("*"))
    assert 600 <= picked < 1200 and np.linalg.norm(pts[picked, :2] - pts[target, :2]) <= cv.point_size + 1e-6
    s.set_modes("rgb")  # a colour update sends the shown subset too
    assert len(cv.a.colors) == 600


def test_camera_framed_on_connect_and_on_scene_switch(fixture_state, viewer, monkeypatch):
    from sas_engine.scene import Scene

    from app.viewer import frame_camera, scene_box

    st, s, client = _connected_tab(fixture_state, viewer, monkeypatch)
    cv = viewer.clients_of("tab1")[0]
    cam = client.camera
    lo, hi = scene_box(cv.local)
    pos, target, up = frame_camera(lo, hi)  # the stand-in client reports no fov: viser's default is assumed
    np.testing.assert_allclose(cam.position, pos)
    np.testing.assert_allclose(cam.look_at, target)
    assert tuple(cam.up_direction) == (0.0, 0.0, 1.0)
    assert not np.all((np.array(cam.position) >= lo) & (np.array(cam.position) <= hi))
    # another scene, 10x larger: the camera moves back to frame it
    g = np.random.default_rng(3)
    big = Scene("big0000_00", (g.uniform(0, 1, (2000, 3)) * [40, 20, 3]).astype(np.float32),
                np.full((2000, 3), 100, np.uint8))
    st.add_scene(big)
    d0 = np.linalg.norm(np.subtract(cam.position, cam.look_at))
    s.select_scene("big0000_00")
    assert np.linalg.norm(np.subtract(cam.position, cam.look_at)) > 5 * d0
    np.testing.assert_allclose(cam.look_at, np.mean(scene_box(cv.local), axis=0), atol=1e-6)


def test_camera_reframed_when_the_canvas_changes_shape_until_the_user_moves(fixture_state, viewer, monkeypatch):
    from app.viewer import DEFAULT_FOV, frame_camera, scene_box

    st, s, client = _connected_tab(fixture_state, viewer, monkeypatch)
    cv = viewer.clients_of("tab1")[0]
    cam = client.camera
    cam.fov, cam.aspect = DEFAULT_FOV, 0.7  # the page's layout settled: a narrow canvas
    viewer._camera_update(cv, cam)
    assert cv.camera_aspect == 0.7
    np.testing.assert_allclose(cam.position, frame_camera(*scene_box(cv.local), fov=DEFAULT_FOV, aspect=0.7)[0])
    cam.position = tuple(np.add(cam.position, (1.0, 0.0, 0.0)))  # the user orbits: never taken back
    moved = cam.position
    cam.aspect = 1.6
    viewer._camera_update(cv, cam)
    assert cam.position == moved and cv.camera_aspect == 0.7
