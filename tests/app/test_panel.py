"""The gradio page built without launching, and its handlers called directly."""
from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from app.panel import Panel, build_blocks
from app.picking import pick_point
from app.viewer import ceiling_points, display_geometry

SID = "fixture0000_00"


def _skip(x) -> bool:
    return isinstance(x, dict) and x.get("__type__") == "update" and len(x) == 1


def test_blocks_build_without_launching(fixture_state):
    demo = build_blocks(fixture_state)
    assert isinstance(demo, gr.Blocks)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    for want in ("sas-viewer", "sas-query", "sas-query-btn", "sas-threshold", "sas-mode-a", "sas-compare",
                 "sas-inspect", "sas-colorbar", "sas-legend", "sas-vocab", "sas-scene"):
        assert want in ids
    assert len(demo.fns) >= 15  # every control is wired
    assert isinstance(demo.panel, Panel)


def test_load_creates_a_session_and_shows_the_first_scene(fixture_state):
    p = Panel(fixture_state)
    out = p.load(None)
    msg, token, viewer_html, scene_dd, build_md = out[:5]
    assert "fixture0000\\_00" in msg and token in fixture_state.sessions  # underscores escaped for Markdown
    assert "3D viewer not running" in viewer_html  # no viser in this test
    assert scene_dd["value"] == SID and scene_dd["choices"] == [SID]
    mode_a, mode_b, vocab = out[5:8]
    assert ("teacher disagreement", "disagreement") in [tuple(c) for c in mode_a["choices"]]
    assert vocab.startswith("wall, floor, cabinet")
    assert out[8]["value"] == "pred3d.demo"


def test_handlers_query_modes_inspect_export(fixture_state):
    p = Panel(fixture_state)
    token = p.load(None)[1]
    msg, legend, colorbar, rows = p.query(token, "a chair in a scene", 0.6, 3, None)
    assert "relevance ≥ 0.60" in msg and "relevance" in colorbar and 1 <= len(rows) <= 3
    assert rows[0][1] >= 350 and rows[0][0] == 1
    msg, legend, colorbar, rows = p.threshold(token, 0.9, 3)
    assert "relevance ≥ 0.90" in msg
    msg, legend, *_ = p.query(token, "chair, sofa, table", 0.5, 5, "fused.sas")
    assert "labelled 3 names on SAS-fused" in msg and "sofa" in legend
    # ticking the comparison before choosing its mode is not an error: the page asks for the mode
    msg, legend, colorbar, rows = p.set_modes(token, "gt", True, None)
    assert "choose a mode under 'Compare with (right)'" in msg and "⚠" not in msg
    assert fixture_state.session(token).view_b is None
    msg, legend, colorbar, rows = p.set_modes(token, "gt", True, "disagreement")
    assert "ground truth" in msg and "teacher disagreement" in msg and colorbar == "" and rows == []
    msg, md = p.inspect(token, 900)
    assert "inspected point 900" in msg and "ground truth: **chair**" in md
    insp, serial, build_md, scenes = p.poll(token, 0)
    assert insp == md and serial == 1 and _skip(scenes)
    assert _skip(p.poll(token, 1)[0])  # nothing new since
    msg, files = p.export(token)
    assert len(files) == 2 and files[0].endswith(".ply") and files[1].endswith(f"{SID}.txt")
    assert "fixture0000\\_00\\_" in msg and "_00_" not in msg  # file names survive Markdown
    note, rows = p.metrics(token)
    assert len(rows) == 5 and all(0 <= r[1] <= 100 for r in rows)
    note, img, cls, gallery = p.capability(token, "capability.tiny_sd")
    assert img.shape[2] == 3 and cls["choices"] == ["chair"] and len(gallery) == 1
    msg, legend, vocab, template = p.set_vocab(token, "chair, sofa", "a {} in a room")
    assert vocab == "chair, sofa" and template == "a {} in a room"


@pytest.mark.parametrize("text", ["", "   ", "x" * 300, ",,,"])
def test_bad_queries_show_a_message_and_change_nothing(fixture_state, text):
    p = Panel(fixture_state)
    token = p.load(None)[1]
    s = fixture_state.session(token)
    before = s.view_a.colors.copy()
    out = p.query(token, text, 0.5, 5, None)
    assert out[0].startswith("⚠️") and all(_skip(o) for o in out[1:])
    np.testing.assert_array_equal(s.view_a.colors, before)


def test_bad_inputs_through_handlers(fixture_state, tmp_path):
    p = Panel(fixture_state)
    token = p.load(None)[1]
    assert "unknown scene" in p.select_scene(token, "nope")[0]
    assert p.select_scene(token, None)[0] == ""  # an emptied dropdown is not an error
    assert "outside the configured data roots" in p.open_folder(token, "/etc")[0]
    assert "outside the configured data roots" in p.open_folder(token, f"{fixture_state.data_roots[0]}/../..")[0]
    assert "expired" in p.query("not-a-token", "chair", 0.5, 5, None)[0]
    assert "not available" in p.set_modes(token, "layer:fused.linear", False, None)[0]
    assert "outside" in p.inspect(token, 10 ** 9)[0]
    assert p.inspect(token, None)[0].startswith("⚠️")
    msg = p.query(token, "<script>alert(1)</script>", 0.5, 5, None)[0]
    assert "<script>" not in msg  # escaped in the message


def test_pick_point_and_display_geometry():
    pts = np.array([[0, 0, 5], [0, 0, 2], [0.5, 0, 1], [3, 3, 3]], np.float32)
    assert pick_point(pts, (0, 0, 0), (0, 0, 1), 0.1) == 1  # nearest of the two on the ray
    assert pick_point(pts, (0, 0, 0), (0, 0, -1), 0.1) is None  # behind the camera
    assert pick_point(pts, (0.45, 0, 0), (0, 0, 1), 0.02) == 2  # within 4 x radius of the ray
    assert pick_point(pts, (0, 0, 0), (0, 0, 0), 0.1) is None
    local, center, size, precision, dx = display_geometry(pts)
    np.testing.assert_allclose(local.min(0) + local.max(0), 0, atol=1e-6)
    assert precision == "float16" and 0.004 <= size <= 0.1 and dx > 3
    far = pts * 100
    assert display_geometry(far)[3] == "float32"


def test_ceiling_detection():
    g = np.random.default_rng(0)
    floor = np.c_[g.uniform(0, 4, (500, 2)), np.zeros(500)]
    ceiling = np.c_[g.uniform(0, 4, (500, 2)), np.full(500, 2.6)]
    chair = g.uniform(0, 1, (200, 3))
    room = np.concatenate([floor, ceiling, chair]).astype(np.float32)
    hidden = ceiling_points(room)
    assert hidden[500:1000].all() and not hidden[:500].any() and not hidden[1000:].any()
    no_ceiling = np.concatenate([floor, chair]).astype(np.float32)
    assert not ceiling_points(no_ceiling).any()  # the chair top is a few points, not a layer
