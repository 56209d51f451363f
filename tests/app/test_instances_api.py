"""``GET /api/instances`` on the running app: the same JSON as the Python API, clear JSON errors, loopback bind."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

from app.instances import answer_instances, instance_rows, status_line
from app.server import start_app

from .test_browser import free_port


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_python_answer_finds_the_chair(fixture_state):
    ans = answer_instances(fixture_state, "fixture0000_00", "chair")
    assert ans["features"] == "pred3d.demo" and ans["count"] == 1 and ans["resolved"] == "chair"
    inst = ans["instances"][0]
    scene = fixture_state.scene("fixture0000_00")
    assert (scene.instances[inst["point_indices"]] == 2).all() and inst["num_points"] == 400  # the chair blob
    np.testing.assert_allclose(inst["centroid"], scene.points[scene.instances == 2].mean(0), atol=1e-3)
    assert instance_rows(ans)[0][:2] == [1, "chair"] and status_line(ans).startswith("1 instance of 'chair'")
    none = answer_instances(fixture_state, "fixture0000_00", "bathtub", include_points=False)
    assert none["count"] == 0 and "No 'bathtub'" in status_line(none)
    # the SAS layer trusts the mask teacher on sofas: it finds the sofa too
    assert answer_instances(fixture_state, "fixture0000_00", "sofa", features="fused.sas")["count"] == 1


def test_http_endpoint(fixture_state):
    app = start_app(fixture_state, port=free_port(), viser_port=free_port(), viewer=False)
    try:
        assert app.url.startswith("http://127.0.0.1:")
        base = app.url.rstrip("/") + "/api/instances?"
        code, ans = _get(base + urllib.parse.urlencode({"scene": "fixture0000_00", "q": "chair"}))
        assert code == 200
        assert ans == answer_instances(fixture_state, "fixture0000_00", "chair")
        code, ans = _get(base + urllib.parse.urlencode({"scene": "fixture0000_00", "q": "table", "points": "0"}))
        assert code == 200 and ans["count"] == 1 and "point_indices" not in ans["instances"][0]
        code, err = _get(base + urllib.parse.urlencode({"scene": "nope", "q": "chair"}))
        assert code == 404 and "unknown scene" in err["error"]
        code, err = _get(base + urllib.parse.urlencode({"scene": "fixture0000_00"}))
        assert code == 400 and "'q'" in err["error"]
        code, err = _get(base + urllib.parse.urlencode({"scene": "fixture0000_00", "q": "   "}))
        assert code == 400 and "empty" in err["error"]
        code, err = _get(base + urllib.parse.urlencode({"scene": "fixture0000_00", "q": "chair",
                                                        "features": "pred3d.none"}))
        assert code == 404 and "pred3d.none" in err["error"]
        # the page itself still answers
        with urllib.request.urlopen(app.url, timeout=30) as r:
            assert r.status == 200
    finally:
        app.close()
