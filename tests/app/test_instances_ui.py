"""Instances in the page: ranked list, "how many" status, boxes in the viewer, framing the camera on a row."""
from __future__ import annotations

import numpy as np
import pytest

from app.instances import question_text
from app.panel import Panel
from sas_engine.errors import SASInputError

from .test_viewer import SID, FakeClient, Handle, paired, viewer  # noqa: F401 (viewer is a fixture)


class BoxClient(FakeClient):
    def __init__(self):
        super().__init__()
        log = self.log

        def add_line_segments(name, points, colors, **kw):
            log.append(("add_box", name, None))
            return Handle(log, name, points=points, colors=colors, **kw)

        self.scene.add_line_segments = add_line_segments


def test_question_text():
    assert question_text("how many chairs are there?") == "chairs"
    assert question_text("Where is the sofa") == "sofa"
    assert question_text("is there a toilet in the room?") == "toilet"
    assert question_text("somewhere to sit") == "somewhere to sit"
    with pytest.raises(SASInputError):
        question_text("  ")


def test_boxes_list_and_framing(fixture_state, viewer, monkeypatch):  # noqa: F811
    st = fixture_state
    s = st.new_session("tab1")
    s.select_scene(SID)
    client = BoxClient()
    viewer._connect(paired(client, viewer, "tab1"))
    cv = viewer.clients_of("tab1")[0]

    msg = s.find_instances("where is the chair?")
    assert msg.startswith("1 instance of 'chair'") and "best: chair" in msg
    rows = s.instance_rows()
    assert len(rows) == 1 and rows[0][:2] == [1, "chair"] and rows[0][3] == 400
    assert client.count("add_box") == 1
    box = next(h for h in cv.boxes if h.name == "/sas/instances/1")
    chair = st.scene(SID).points[st.scene(SID).instances == 2]
    lo, hi = chair.min(0) - cv.center, chair.max(0) - cv.center
    edges = np.asarray(box.points)
    assert edges.shape == (12, 2, 3)
    np.testing.assert_allclose(edges.reshape(-1, 3).min(0), lo, atol=1e-3)
    np.testing.assert_allclose(edges.reshape(-1, 3).max(0), hi, atol=1e-3)
    assert (np.abs(edges[:, 0] - edges[:, 1]) > 1e-6).sum(1).tolist() == [1] * 12  # axis-parallel edges
    assert any(k == "add_label" and n == "/sas/instance_labels/1" for k, n, _ in client.log)

    # a row click frames the camera on the instance
    whole = np.linalg.norm(np.subtract(client.camera.position, client.camera.look_at))
    assert s.frame_instance(1).startswith("framed instance #1 (chair")
    np.testing.assert_allclose(client.camera.look_at, (lo + hi) / 2, atol=1e-3)
    assert np.linalg.norm(np.subtract(client.camera.position, client.camera.look_at)) < whole
    with pytest.raises(SASInputError, match="not listed"):
        s.frame_instance(2)

    # absent objects: no boxes, an empty list, the status says so
    assert s.find_instances("bathtub").startswith("No 'bathtub' found here")
    assert s.instance_rows() == [] and box.removed and client.count("add_box") == 1

    # the panel's handlers (what the page calls); errors come back as a message, not an exception
    p = Panel(st)
    msg, rows = p.instances("tab1", "table", None)
    assert "1 instance of 'table'" in msg and rows[0][1] == "table"
    assert "framed instance #1" in p.frame_instance("tab1", type("E", (), {"index": [0, 2]})())[0]
    msg, rows = p.clear_instances("tab1")
    assert msg == "instances cleared" and rows == [] and s.instances is None
    assert "no instances listed" in p.frame_instance("tab1", type("E", (), {"index": [0, 0]})())[0]
