"""App logic without servers: layers shown only when stored, colour modes, queries, inspection, export, robustness."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch

from app.colors import AGREE, NO_FEATURE, TEACHER_COLORS, class_palette, heat_colors, label_colors
from app.layers import SceneLayers
from app.modes import mode_choices
from app.reports import capability_images, capability_plot, scene_metrics
from sas_engine.errors import SASInputError
from sas_engine.io.ply import read_ply
from sas_engine.io.writers import read_scannet_submission
from sas_engine.labels import SCANNET20, SCANNET20_NYU40
from app import colors as C
from sas_engine.query import RELEVANCE, find_regions


SID = "fixture0000_00"
CHAIR = slice(800, 1200)
SOFA = slice(1200, 1600)
TABLE = slice(1600, 2000)


def test_layers_list_only_what_is_stored(fixture_state, scene_factory):
    lay = fixture_state.layers(SID)
    assert [l.artefact for l in lay.teachers] == ["fused.lseg_compact", "fused.seem_compact"]
    # teachers are named for what they are (display names from the teachers' registry)
    assert [l.label for l in lay.teachers] == ["dense teacher (compact, LSeg-style)",
                                               "mask teacher (compact, SEEM-style)"]
    assert [l.artefact for l in lay.fusions] == ["fused.add", "fused.sas"]  # no fused.linear stored, not listed
    assert [l.artefact for l in lay.pred3d] == ["pred3d.demo"]
    assert [l.artefact for l in lay.query_layers()][:2] == ["pred3d.demo", "fused.sas"]
    assert lay.capability_tables() == ["capability.tiny_sd"]
    keys = [k for _, k in mode_choices(lay)]
    assert keys == ["rgb", "gt", "instances", "layer:fused.lseg_compact", "layer:fused.seem_compact",
                    "layer:fused.add", "layer:fused.sas", "layer:pred3d.demo", "disagreement", "superpoints"]
    # a scene with an empty store offers RGB / GT only
    bare = SceneLayers(scene_factory(scene_id="other0000_00"), lay.store)
    assert [k for _, k in mode_choices(bare)] == ["rgb", "gt", "instances", "superpoints"]


def test_broken_layer_is_refused_not_faked(fixture_state, encoder):
    st = fixture_state
    st.store.save(SID, "fused.stale", {"features": torch.zeros(10, 16, dtype=torch.float16)}, kind="fused")
    st.refresh()
    s = st.new_session("t1")
    s.select_scene(SID)
    assert "layer:fused.stale" in [k for _, k in s.modes()]
    with pytest.raises(SASInputError, match="fused.stale.pt: computed on points \\(not recorded\\)"):
        s.set_modes("layer:fused.stale")
    assert "layer:fused.stale" not in [k for _, k in s.modes()]
    assert s.mode_a == "rgb"  # the failed switch left the view as it was


def test_segmentation_gt_and_superpoint_modes(fixture_state):
    st = fixture_state
    s = st.new_session("t1")
    s.select_scene(SID)
    np.testing.assert_array_equal(s.view_a.colors, st.scene(SID).colors)
    s.set_modes("layer:pred3d.demo")
    lab, _ = st.engine(SID, "pred3d.demo").segment(s.vocab, s.template)
    np.testing.assert_array_equal(s.view_a.labels, lab)
    np.testing.assert_array_equal(s.view_a.colors, label_colors(lab, class_palette(s.vocab)))
    gt = st.scene(SID).labels
    ok = gt != 255
    assert (lab[ok] == gt[ok]).mean() > 0.97  # the fixture's distilled features are nearly perfect
    s.set_modes("gt")
    scene = st.scene(SID)
    assert (s.view_a.colors[:7] == NO_FEATURE).all()
    np.testing.assert_array_equal(s.view_a.colors[900], class_palette(SCANNET20)[SCANNET20.index("chair")])
    legend = {name: count for name, _, count in s.view_a.legend}
    assert legend["chair"] == 400 and legend["no feature / ignore"] == 7
    s.set_modes("superpoints")
    assert len({tuple(c) for c in s.view_a.colors}) == len(np.unique(scene.superpoints))


def test_disagreement_coloured_by_trusted_teacher(fixture_state):
    s = fixture_state.new_session("t1")
    s.select_scene(SID)
    s.set_modes("disagreement")
    c = s.view_a.colors
    # dense teacher says chair on sofas, SAS trusted the mask teacher there (weights 0.1 / 0.9)
    assert (c[SOFA][:-1] == TEACHER_COLORS[1]).all(1).mean() > 0.95
    # mask teacher says desk on tables, SAS trusted the dense teacher there
    assert (c[TABLE][:-30] == TEACHER_COLORS[0]).all(1).mean() > 0.95
    assert (c[CHAIR] == AGREE).all(1).mean() > 0.9  # both teachers get chairs right
    names = [n for n, _, k in s.view_a.legend if k > 0]
    assert any("trusted lseg_compact" in n or "trusted dense" in n for n in names)


def test_side_by_side_views(fixture_state):
    s = fixture_state.new_session("t1")
    s.select_scene(SID)
    s.set_modes("gt", compare=True, mode_b="layer:fused.lseg_compact")
    assert s.view_b is not None and s.view_b.names == s.vocab
    html = s.legend_html()
    assert "left: ground truth" in html and "right:" in html and "sofa" in html
    with pytest.raises(SASInputError, match="not available"):
        s.set_modes("gt", compare=True, mode_b="layer:fused.linear")


def test_heat_query_threshold_and_top_regions(fixture_state, encoder):
    st = fixture_state
    s = st.new_session("t1")
    s.select_scene(SID)
    msg = s.run_query("a chair in a scene", threshold=0.6, topk=3)
    assert "distilled 3D" in msg and "region(s) with relevance ≥ 0.60" in msg
    rel = st.engine(SID, "pred3d.demo").relevance("a chair in a scene", s.vocab)
    lay = st.layers(SID)
    regions, shown = find_regions(rel.score, lay.scene.points, 0.6, groups=lay.superpoints(),
                                  voxel=max(0.02, 2.5 * lay.spacing()))
    np.testing.assert_array_equal(s.view_a.colors, heat_colors(shown, 0.6, st.scene(SID).colors))
    coloured = np.isfinite(shown) & (shown >= 0.6)
    in_regions = np.isin(np.arange(len(shown)), np.concatenate([r.indices for r in regions]))
    np.testing.assert_array_equal(coloured, in_regions)  # the map shows exactly the regions
    assert s.objects and s.objects[0].size >= 350
    assert np.isin(s.objects[0].indices, np.arange(800, 1200)).mean() > 0.95
    bar = s.colorbar_html()
    assert "relevance" in bar and "0.000" in bar and "1.000" in bar  # an absolute scale, not the scene's min-max
    calls = encoder.calls
    s.set_threshold(0.999)
    assert encoder.calls == calls  # moving the threshold re-colours only
    assert (s.view_a.colors != heat_colors(shown, 0.6, st.scene(SID).colors)).any()
    s.clear_query()
    np.testing.assert_array_equal(s.view_a.colors, st.scene(SID).colors)


def test_absent_object_gives_an_empty_map_and_says_so(fixture_state):
    st = fixture_state
    s = st.new_session("t1")
    s.select_scene(SID)
    msg = s.run_query("bed")  # the fixture room holds floor, wall, chair, sofa and table
    assert msg.startswith("Nothing matches 'bed' here") and f"below the threshold {RELEVANCE.threshold:.2f}" in msg
    assert s.objects == [] and s.objects_rows() == []
    lay = st.layers(SID)
    grey = C.unpack_rgb(lay.dimmed())
    feat = np.isfinite(s.query.heat)
    assert (s.view_a.colors[feat] == grey[feat]).all()  # every point keeps its greyed colour: an empty map
    assert (s.view_a.colors[~feat] == NO_FEATURE).all()
    assert np.nanmax(s.query.sim) < RELEVANCE.threshold
    # the chair is there: the same scale colours it (the fixture's features are its class prompts' embeddings)
    s.run_query("a chair in a scene")
    assert s.objects and np.isin(s.objects[0].indices, np.arange(800, 1200)).mean() > 0.95


def test_multi_query_and_editable_label_set(fixture_state):
    s = fixture_state.new_session("t1")
    s.select_scene(SID)
    s.run_query("chair, sofa, lamp")
    assert s.query.kind == "labels" and s.view_a.names == ["chair", "sofa", "lamp"]
    assert (s.view_a.labels[CHAIR] == 0).mean() > 0.95 and (s.view_a.labels[SOFA] == 1).mean() > 0.95
    s.set_vocab("chair, sofa,  table ", "there is a {} here")
    assert s.vocab == ["chair", "sofa", "table"] and s.template == "there is a {} here"
    s.set_modes("layer:fused.sas")
    assert set(np.unique(s.view_a.labels)) <= {-1, 0, 1, 2}
    with pytest.raises(SASInputError, match="placeholder"):
        s.set_vocab("chair", "no placeholder")
    s.select_scene(SID)
    assert s.vocab == ["chair", "sofa", "table"]  # a custom label set survives re-selecting


def test_inspection(fixture_state):
    s = fixture_state.new_session("t1")
    s.select_scene(SID)
    md = s.inspect(1300)  # a sofa point
    assert "ground truth: **sofa**" in md and "superpoint id: 3" in md
    assert "seen in 3 views" in md and "weights" in md
    lines = md.splitlines()
    dense = next(l for l in lines if l.startswith("- lseg_compact") or l.startswith("- dense teacher"))
    assert dense.split(": ", 1)[1].startswith("chair")  # the dense teacher's top-1 is wrong on sofas
    mask = next(l for l in lines if l.startswith("- seem_compact") or l.startswith("- mask teacher"))
    assert mask.split(": ", 1)[1].startswith("sofa")
    assert "0.10" in md and "0.90" in md
    assert "distilled 3D (demo): **sofa**" in md
    assert "no feature" in s.inspect(1999)  # masked point
    for bad in (-1, 2000, "abc", 1.5, None):
        with pytest.raises(SASInputError):
            s.inspect(bad)


def test_export_ply_and_benchmark_file(fixture_state):
    st = fixture_state
    s = st.new_session("t1")
    s.select_scene(SID)
    s.set_modes("gt")
    ply, txt, msg = s.export()
    v = read_ply(ply)["vertex"]
    np.testing.assert_array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), s.view_a.colors)
    np.testing.assert_allclose(v["x"], st.scene(SID).points[:, 0])
    nyu = read_scannet_submission(txt)
    gt = st.scene(SID).labels
    np.testing.assert_array_equal(nyu[gt != 255], np.array(SCANNET20_NYU40)[gt[gt != 255]])
    assert (nyu[gt == 255] == 0).all() and "written as 0" in msg
    s.run_query("somewhere to sit")
    ply2, txt2, msg2 = s.export()
    assert txt2 is None and "not a labelling" in msg2 and ply2.exists()


def test_metrics_and_capability(fixture_state, scene_factory):
    st = fixture_state
    lay = st.layers(SID)
    rows, note = scene_metrics(st, lay, "a {} in a scene")
    by = {r[0]: r[1] for r in rows}
    assert by["distilled 3D (demo)"] > 95
    dense = [v for k, v in by.items() if "lseg" in k or "dense" in k][0]
    assert dense < by["distilled 3D (demo)"] - 5  # loses the sofa class
    assert "scannet20" in note
    table = lay.capability("capability.tiny_sd")
    img = capability_plot(table)
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[0] > 100
    chairs = capability_images(table, st.store.root, "chair")
    assert len(chairs) == 1 and (chairs[0][0][10, 10] != chairs[0][0][0, 0]).any()  # mask tinted
    assert capability_images(table, st.store.root, "sofa") == []  # path escaping the store refused
    bare = SceneLayers(scene_factory(scene_id="nogt"), None)
    bare.scene.labels = None
    assert scene_metrics(st, bare)[0] == []


def test_bad_inputs_give_clear_errors(fixture_state, tmp_path):
    st = fixture_state
    s = st.new_session("t1")
    with pytest.raises(SASInputError, match="no scene selected"):
        s.run_query("chair")
    with pytest.raises(SASInputError, match="unknown scene"):
        s.select_scene("../../etc")
    with pytest.raises(SASInputError, match="choose a scene"):
        s.select_scene(None)
    s.select_scene(SID)
    for bad in ("", "   ", "x" * 500, ", ,"):
        with pytest.raises(SASInputError):
            s.run_query(bad)
    assert "labelled 2 names" in s.run_query("fauteuil près de la fenêtre, 椅子")  # non-ASCII works
    assert s.query.names == ["fauteuil près de la fenêtre", "椅子"]
    assert "relevance" in s.run_query("chaise longue près de la fenêtre")
    with pytest.raises(SASInputError):
        s.set_threshold(1.5)
    # scene folders outside the data roots are refused, also through '..' and symlinks
    outside = tmp_path / "outside"
    outside.mkdir()
    root = st.data_roots[0]
    for p in (outside, root / ".." / "outside", "/etc"):
        with pytest.raises(SASInputError, match="outside the configured data roots"):
            st.add_scene_path(p)
    os.symlink(outside, root / "link")
    with pytest.raises(SASInputError, match="outside the configured data roots"):
        st.add_scene_path(root / "link")
    with pytest.raises(SASInputError, match="not found"):
        st.add_scene_path(root / "missing")
    with pytest.raises(SASInputError, match="expired"):
        st.session("nope")


def test_concurrent_sessions_get_their_own_results(fixture_state):
    st = fixture_state
    queries = ["a chair in a scene", "a sofa in a scene", "a table in a scene", "a wall in a scene"]
    sessions = [st.new_session(f"tab{i}") for i in range(len(queries))]
    for s in sessions:
        s.select_scene(SID)
    errors = []

    def run(s, q):
        try:
            for thr in (0.3, 0.5, 0.7):
                s.run_query(q, threshold=thr)
                rel = st.engine(SID, "pred3d.demo").relevance(q, s.vocab)
                lay = st.layers(SID)
                shown = find_regions(rel.score, lay.scene.points, thr, groups=lay.superpoints(),
                                     voxel=max(0.02, 2.5 * lay.spacing()))[1]
                np.testing.assert_array_equal(s.view_a.colors, heat_colors(shown, thr, st.scene(SID).colors))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=run, args=(s, q)) for s, q in zip(sessions, queries)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]
    assert [s.query.text for s in sessions] == queries


def test_query_handler_logs_its_timing(fixture_state, caplog):
    """One JSON timing record per query on the ``sas.timing`` logger (read by benchmarks/bench_page_query.py)."""
    import json
    import logging

    s = fixture_state.new_session("timing")
    s.select_scene(SID)
    with caplog.at_level(logging.DEBUG, logger="sas.timing"):
        s.run_query("a chair in a scene")
        s.run_query("chair, sofa")
    recs = [json.loads(r.getMessage()) for r in caplog.records if r.name == "sas.timing"]
    assert [r["kind"] for r in recs] == ["heat", "labels"]
    for r in recs:
        parts = [r[k] for k in ("engine_ms", "regions_ms", "colours_ms", "push_ms")]
        assert all(p >= 0 for p in parts) and r["total_ms"] >= max(parts)


def test_queries_prefer_the_pipelines_student_over_other_distilled_layers():
    """A store that also holds ``sas ablate``'s rows (``pred3d.abl_*``, sorting before ``pred3d.student``) still
    answers queries on the shipped student, the layer the query calibration was fitted for."""
    from types import SimpleNamespace

    from app.layers import STUDENT_LAYER, Layer

    names = [("fused.lseg_compact", "teacher"), ("pred3d.abl_stage1_point", "pred3d"), ("fused.sas", "fusion"),
             (STUDENT_LAYER, "pred3d"), ("fused.add", "fusion")]
    stub = SimpleNamespace(usable=lambda: [Layer(a, k, a) for a, k in names])
    got = [l.artefact for l in SceneLayers.query_layers(stub)]
    assert got == [STUDENT_LAYER, "pred3d.abl_stage1_point", "fused.sas", "fused.add", "fused.lseg_compact"]
