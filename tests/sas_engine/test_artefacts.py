"""Artefact schemas (sas_engine.artefacts): every kind round-trips through the store; a wrong shape, dtype, kind,
stale geometry or format version is refused naming the file; JSON artefacts never stringify unknown values."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import sas_engine.store as store_mod
from sas_engine import artefacts
from sas_engine.errors import SASInputError
from sas_engine.scene import geometry_digest
from sas_engine.store import ArtefactStore, make_header

N = 7
POINTS = np.arange(N * 3, dtype=np.float32).reshape(N, 3)
GEO = geometry_digest(POINTS)
OTHER_GEO = geometry_digest(POINTS[::-1])


def _examples() -> dict:
    """kind -> (artefact name, scene id or None, payload) as the pipeline's writers make them."""
    g = torch.Generator().manual_seed(0)
    f16 = lambda *s: torch.randn(*s, generator=g).half()  # noqa: E731
    return {
        "superpoints": ("superpoints", "s", {"superpoints": torch.tensor([0, 0, 1, 1, 2, 2, 2])}),
        "fused": ("fused.sas", "s", {"features": f16(N, 4), "mask": torch.ones(N, dtype=torch.bool),
                                     "weights": torch.rand(N, 2, generator=g), "teachers": ["a", "b"]}),
        "pred3d": ("pred3d.student", "s", {"features": f16(N, 4)}),
        "instance_proposals": ("instances.proposals", "s", {
            "indices": torch.tensor([0, 1, 4, 5, 6]), "offsets": torch.tensor([0, 2, 5]), "num_points": N,
            "source": ["feat", "region"], "scores": torch.tensor([0.5, 0.7])}),
        "instance_labels": ("instances.fused.sas", "s", {
            "labels": torch.tensor([1, -1]), "scores": torch.tensor([0.9, 0.1]), "probs": torch.rand(2, 3),
            "pooled": f16(2, 4), "coverage": torch.tensor([1.0, 0.5]), "names": ["wall", "floor", "chair"]}),
        "capability_images": ("capimages.synthetic", None, {
            "images": torch.zeros(2, 4, 5, 3, dtype=torch.uint8), "masks": torch.zeros(2, 4, 5, dtype=torch.bool),
            "classes": torch.tensor([0, 3]), "provenance": [{"seed": 1}, {"seed": 2}]}),
        "history": ("history.run", "s", {"history": torch.rand(N, 4), "epoch": 3}),
        "feat2d.dense": ("feat2d.t.0", "s", {"feat": f16(3, 4, 8), "image_size": [6, 8],
                                             "valid": torch.ones(3, 4, dtype=torch.bool)}),
        "feat2d.mask": ("feat2d.m.0", "s", {"seg": torch.zeros(6, 8, dtype=torch.int16), "emb": f16(2, 8),
                                            "labels": ["a", "b"], "texts": ["an a", "a b"],
                                            "scores": torch.tensor([0.5, 0.25])}),
        "capability": ("capability.rooms", None, {
            "teachers": ["a", "b"], "classes": ["wall", "chair", "sofa"], "mode": "pooled",
            "scores": [[0.5, None, 0.25], [0.75, 0.5, 0.0]], "image_counts": [3, 0, 2], "linear_weights": [0.4, 0.6],
            "linear_miou": 0.5, "words": ["wall", "chair", "sofa"], "images": [], "provenance": []}),
        "feat2d.index": ("feat2d.t", "s", {"teacher": "t", "frames": {"0": {"shape": [3, 4, 8], "bytes": 10}},
                                           "complete": True}),
        # Gaussians: G = 5 of them on the N = 7 points' scene
        "gaussians": ("gaussians.fit", "s", {
            "means": torch.rand(5, 3, generator=g), "quats": torch.rand(5, 4, generator=g),
            "log_scales": torch.rand(5, 3, generator=g), "opacity_logits": torch.rand(5, generator=g),
            "color_logits": torch.rand(5, 3, generator=g), "fit_frames": [0, 1, 2, 3], "heldout_frames": [4],
            "stats": {"seconds": 1.5, "num_gaussians": 5}}),
        "gaussian_features": ("gaussians.lift.sas", "s", {
            "features": f16(5, 4), "mask": torch.ones(5, dtype=torch.bool), "weights": torch.rand(5, 2, generator=g),
            "view_count": torch.tensor([1, 2, 0, 3, 1], dtype=torch.int32), "seconds": 4.8}),
        "gaussian_eval": ("gaussians.eval.sas.lifted", "s", {"confusion": [[3, 0, 1], [1, 5, 0]],
                                                             "views": ["4", "9"]}),
    }


EXAMPLES = _examples()


def _save(st, kind, name, sid, payload, geometry=GEO):
    if artefacts.SCHEMAS[kind].ext == ".json":
        return st.save_json(sid, name, payload, kind=kind, config={"c": 1})
    return st.save(sid, name, payload, kind=kind, config={"c": 1},
                   geometry=geometry if artefacts.SCHEMAS[kind].per_point else None)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_every_kind_has_an_example():
    assert set(EXAMPLES) == set(artefacts.SCHEMAS)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_round_trip(tmp_path, kind):
    name, sid, payload = EXAMPLES[kind]
    st = ArtefactStore(tmp_path)
    p = _save(st, kind, name, sid, payload)
    assert p.suffix == artefacts.SCHEMAS[kind].ext
    if p.suffix == ".json":
        got = artefacts.read_json(st, sid, name, kind=kind)
        assert got == payload
        return
    got = st.load(sid, name, kind=kind, config={"c": 1})
    assert _same(got, payload)
    by_name = artefacts.kind_for_name(name)
    assert by_name in (kind, None)  # feat2d frames are dense or mask by their teacher, not by name
    got = artefacts.read(st, sid, name, geometry=GEO if artefacts.SCHEMAS[kind].per_point else None, kind=kind,
                         header=True)
    assert got.pop("__header__")["kind"] == kind and _same(got, payload)


def test_kind_for_name():
    assert [artefacts.kind_for_name(n) for n in ("fused.lseg_compact", "study.sas_m2", "pred3d.x", "superpoints",
                                                 "instances.proposals", "instances.pred3d.x", "history.r",
                                                 "capimages.synthetic", "feat2d.t.0", "mine")] == \
        ["fused", "fused", "pred3d", "superpoints", "instance_proposals", "instance_labels", "history",
         "capability_images", None, None]
    assert artefacts.kind_for_name("capability.rooms", ".json") == "capability"
    assert [artefacts.kind_for_name(n) for n in ("gaussians.fit", "gaussians.lift.sas", "gaussians.feat.lseg_compact",
                                                 "gaussians.other")] == \
        ["gaussians", "gaussian_features", "gaussian_features", None]
    assert artefacts.kind_for_name("gaussians.eval.sas.lifted", ".json") == "gaussian_eval"
    assert artefacts.points_of(GEO) == N and artefacts.points_of(None) is None and artefacts.points_of("x") is None


@pytest.mark.parametrize("kind, key, bad, problem", [
    ("fused", "features", torch.zeros(N + 1, 4), rf"'features' has shape \[{N + 1}, 4\]: {N + 1} rows but the "
                                                 rf"points' geometry digest says N = {N} points"),
    ("fused", "features", torch.zeros(N, 4, dtype=torch.int32), "'features' has dtype int32, expected float"),
    ("fused", "weights", torch.zeros(N, 3), "'teachers' has 2 entries: T = 2 here but 3 elsewhere"),
    ("fused", "mask", np.ones(N, bool), "'mask' must be a tensor, not ndarray"),
    ("superpoints", "superpoints", torch.zeros(N, 2, dtype=torch.int64), r"has shape \[7, 2\], expected \[N\]"),
    ("pred3d", "features", None, "lacks 'features'"),
    ("instance_proposals", "offsets", torch.tensor([0, 2, 4]), "offsets are inconsistent with the indices"),
    ("instance_labels", "names", ["wall"], "'names' has 1 entries: K = 1 here but 3 elsewhere"),
    ("history", "epoch", 1.5, "'epoch' must be an int"),
    ("gaussians", "quats", torch.zeros(5, 3), r"'quats' has shape \[5, 3\]: dim 1 \(4\): 3 != 4"),
    ("gaussians", "opacity_logits", torch.zeros(6), r"'opacity_logits' has shape \[6\]: dim 0 \(G\): G = 6 here but 5"),
    ("gaussians", "heldout_frames", [3, 4], r"frames \[3\] are both fitted and held out"),
    ("gaussians", "fit_frames", None, "lacks 'fit_frames'"),
    ("gaussian_features", "mask", torch.ones(4, dtype=torch.bool), "G = 4 here but 5 elsewhere"),
    ("gaussian_features", "features", torch.zeros(5, 4, dtype=torch.int64), "'features' has dtype int64"),
])
def test_wrong_payload_is_refused_on_save_and_on_read(tmp_path, kind, key, bad, problem):
    name, sid, payload = EXAMPLES[kind]
    payload = dict(payload)
    if bad is None:
        payload.pop(key)
    else:
        payload[key] = bad
    st = ArtefactStore(tmp_path)
    p = st.path(sid, name)
    with pytest.raises(SASInputError, match=problem) as e:
        _save(st, kind, name, sid, payload)
    assert str(p) in str(e.value) and not p.exists()  # nothing written
    # the same payload written by hand (an older writer, a foreign tool) is refused on reading, naming the file
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"__header__": make_header(kind, {"c": 1}, geometry=GEO), **payload}, p)
    with pytest.raises(SASInputError, match=problem) as e:
        artefacts.read(st, sid, name, geometry=GEO)
    assert str(p) in str(e.value) and "recompute" in str(e.value)
    # and a cached stage recomputes it instead of using it
    good = EXAMPLES[kind][2]
    got = st.get_or_compute(sid, name, lambda: good, kind=kind, config={"c": 1}, geometry=GEO)
    assert _same(got, good) and _same(st.load(sid, name, kind=kind, config={"c": 1}, geometry=GEO), good)


def test_stale_geometry_wrong_version_wrong_kind_missing(tmp_path, monkeypatch):
    st = ArtefactStore(tmp_path)
    name, sid, payload = EXAMPLES["fused"]
    p = _save(st, "fused", name, sid, payload)
    with pytest.raises(SASInputError, match=f"{p}: computed on points {GEO} but the scene now has points {OTHER_GEO}"):
        artefacts.read(st, sid, name, geometry=OTHER_GEO)
    with pytest.raises(SASInputError, match=f"{p}: holds a 'fused' artefact, not 'pred3d'"):
        artefacts.read(st, sid, name, kind="pred3d")
    st.save(sid, "pred3d.x", {"features": torch.zeros(N, 2)}, kind="fused", geometry=GEO)
    with pytest.raises(SASInputError, match="pred3d.x.pt: holds a 'fused' artefact, not 'pred3d'"):
        artefacts.read(st, sid, "pred3d.x", geometry=GEO)  # the kind a name implies is checked by default
    assert artefacts.read(st, sid, "pred3d.missing") is None
    with pytest.raises(SASInputError, match="pred3d.missing.pt: missing artefact 'pred3d.missing' for scene s: "
                                            "run `sas infer`"):
        artefacts.read(st, sid, "pred3d.missing", required=True, hint="run `sas infer`")
    cname, csid, cpayload = EXAMPLES["capability"]
    jp = _save(st, "capability", cname, csid, cpayload)
    monkeypatch.setattr(store_mod, "FORMAT_VERSION", store_mod.FORMAT_VERSION + 1)
    with pytest.raises(SASInputError, match=f"{p}: format version {store_mod.FORMAT_VERSION - 1} != "
                                            f"{store_mod.FORMAT_VERSION}"):
        artefacts.read(st, sid, name, geometry=GEO)
    with pytest.raises(SASInputError, match=f"{jp}: format version"):
        artefacts.read_json(st, csid, cname)


def test_kind_check_off_still_validates_the_names_schema(tmp_path):
    """A reader that takes any kind (the app) still gets the schema the name implies."""
    st = ArtefactStore(tmp_path)
    st.save("s", "fused.x", {"features": torch.zeros(N, 2), "teachers": ["a"], "weights": torch.zeros(N, 1)},
            kind="fused_variant", geometry=GEO)
    assert artefacts.read(st, "s", "fused.x", geometry=GEO, kind=None)["teachers"] == ["a"]
    st.save("s", "fused.y", {"features": torch.zeros(N, 2), "teachers": ["a"], "weights": torch.zeros(N, 2)},
            kind="fused_variant", geometry=GEO)
    with pytest.raises(SASInputError, match=r"fused.y.pt: 'fused' artefact: 'teachers'.*T = 1 here but 2"):
        artefacts.read(st, "s", "fused.y", geometry=GEO, kind=None)


@dataclass
class _Cfg:
    path: Path
    k: np.int64


def test_json_values_are_converted_or_refused_never_stringified(tmp_path):
    st = ArtefactStore(tmp_path)
    payload = {"a": np.float32(0.5), "b": np.arange(3), "p": Path("/x/y"), "c": _Cfg(Path("z"), np.int64(2)),
               "t": (1, 2), "nested": {"ok": [np.bool_(True)]}}
    st.save_json("s", "misc", payload, kind="misc")
    assert st.load_json("s", "misc", kind="misc") == {"a": 0.5, "b": [0, 1, 2], "p": "/x/y", "c": {"path": "z", "k": 2},
                                                      "t": [1, 2], "nested": {"ok": [True]}}

    class Unknown:
        pass

    for bad, where in (({"x": {"y": [1, Unknown()]}}, r"x\.y\[1\]"), ({"t": torch.ones(2)}, "t"),
                       ({"s": {1, 2}}, "s")):
        with pytest.raises(TypeError, match=f"cannot write .* at key {where} into a JSON artefact"):
            st.save_json("s", "bad", bad, kind="misc")
        assert not st.path("s", "bad", ".json").exists()
    with pytest.raises(TypeError, match="at key <root>"):
        artefacts.to_json_value(Unknown())


def test_capability_table_schema_and_loader(tmp_path):
    from sas_engine.capability.table import CapabilityTable, load_capability_table, save_capability_table

    st = ArtefactStore(tmp_path)
    table = CapabilityTable(scores=np.array([[0.5, np.nan], [0.25, 1.0]]), teachers=["a", "b"], classes=["x", "y"],
                            image_counts=np.array([2, 0]), linear_weights=[0.5, 0.5])
    save_capability_table(st, table, "rooms")
    got = load_capability_table(st, "rooms")
    assert got.teachers == ["a", "b"] and np.isnan(got.scores[0, 1]) and got.scores[1, 1] == 1.0
    with pytest.raises(SASInputError, match="capability.other.json: missing artefact 'capability.other': no "
                                            "capability table"):
        load_capability_table(st, "other")
    bad = table.to_json()
    bad["scores"] = [[0.5], [0.25]]
    with pytest.raises(SASInputError, match=r"capability.bad.json: 'capability' artefact: 'scores' has shape \[2, 1\]"):
        st.save_json(None, "capability.bad", bad, kind="capability")


@pytest.mark.parametrize("bad, problem", [
    ([[3, 0], [1, 5]], r"'confusion' has 2 rows and 2 columns, expected 3 \(K \+ 1\)"),
    ([[3, 0, 1], [1, -5, 0]], "must hold pixel counts"),
    ([[3, 0, 1], [1, 5]], "rows of different lengths"),
])
def test_gaussian_eval_confusion_is_checked_on_save_and_read(tmp_path, bad, problem):
    import json

    from sas_engine.errors import StaleArtefactError

    st = ArtefactStore(tmp_path)
    name, sid, payload = EXAMPLES["gaussian_eval"]
    p = st.path(sid, name, ".json")
    with pytest.raises(SASInputError, match=problem):
        st.save_json(sid, name, dict(payload, confusion=bad), kind="gaussian_eval", config={"c": 1})
    assert not p.exists()
    p.parent.mkdir(parents=True, exist_ok=True)  # written by hand: refused on reading, naming the file
    p.write_text(json.dumps({"__header__": make_header("gaussian_eval", {"c": 1}), **dict(payload, confusion=bad)}))
    with pytest.raises(StaleArtefactError, match=f"{p}.*{problem}"):
        st.load_json(sid, name, kind="gaussian_eval", config={"c": 1})
    with pytest.raises(SASInputError, match=problem):
        artefacts.read_json(st, sid, name)
