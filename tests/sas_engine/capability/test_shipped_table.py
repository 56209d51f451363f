"""A shipped capability table is installed into a store only when its stamp matches exactly."""
import json

import numpy as np

from sas_engine.capability import CapabilityTable, save_capability_table
from sas_engine.capability.shipped import export_shipped_table, install_shipped_table
from sas_engine.store import ArtefactStore


def _store_with_table(root, conf, inputs):
    store = ArtefactStore(root)
    store.write_bytes(None, "capimg.rooms.000.0.jpg", b"jpeg bytes")
    store.write_bytes(None, "capimg.rooms.000.0.mask.png", b"png bytes")
    t = CapabilityTable(scores=np.array([[0.5, np.nan], [0.25, 0.75]]), teachers=["a", "b"], classes=["x", "y"],
                        images=[{"class": "x", "image": "capimg.rooms.000.0.jpg", "mask": "capimg.rooms.000.0.mask.png"}])
    save_capability_table(store, t, "rooms", config=conf)
    return store


def test_install_only_on_an_exact_match(tmp_path):
    conf = {"synth": "rooms", "m": 50, "teacher_configs": [{"checkpoint": "sha256:aa"}]}
    inputs = {"teachers": ["a", "b"], "classes": ["x", "y"]}
    src = _store_with_table(tmp_path / "made", conf, inputs)
    ship = tmp_path / "ship"
    export_shipped_table(src, "capability.rooms", ship)
    assert sorted(p.name for p in ship.iterdir()) == ["capability.rooms.json", "capimg.rooms.000.0.jpg",
                                                      "capimg.rooms.000.0.mask.png"]
    fresh = ArtefactStore(tmp_path / "fresh")
    other = dict(conf, teacher_configs=[{"checkpoint": "sha256:bb"}])     # a retrained teacher: never reused
    assert not install_shipped_table(fresh, "capability.rooms", other, inputs, folder=ship)
    assert not install_shipped_table(fresh, "capability.rooms", conf, {**inputs, "teachers": ["b", "a"]}, folder=ship)
    assert not fresh.path(None, "capability.rooms", ".json").exists()
    assert install_shipped_table(fresh, "capability.rooms", conf, inputs, folder=ship)
    got = fresh.load_json(None, "capability.rooms", kind="capability", config=conf, inputs=inputs)
    assert got["scores"] == [[0.5, None], [0.25, 0.75]]
    assert (fresh.root / "_shared" / "capimg.rooms.000.0.jpg").read_bytes() == b"jpeg bytes"


def test_broken_or_incomplete_shipped_tables_are_ignored(tmp_path):
    conf, inputs = {"synth": "rooms"}, {"teachers": ["a", "b"], "classes": ["x", "y"]}
    ship = tmp_path / "ship"
    ship.mkdir()
    (ship / "capability.rooms.json").write_text("{not json")
    assert not install_shipped_table(ArtefactStore(tmp_path / "s1"), "capability.rooms", conf, inputs, folder=ship)
    src = _store_with_table(tmp_path / "made", conf, inputs)
    export_shipped_table(src, "capability.rooms", ship)
    (ship / "capimg.rooms.000.0.jpg").unlink()                             # gallery incomplete
    assert not install_shipped_table(ArtefactStore(tmp_path / "s2"), "capability.rooms", conf, inputs, folder=ship)
    assert json.loads((ship / "capability.rooms.json").read_text())["__header__"]["kind"] == "capability"


def test_sas_capability_ship_then_a_fresh_store_installs_it(tmp_path, monkeypatch):
    """`sas capability --ship` builds the pipeline's own table and exports it; a fresh store then gets it from the
    export without rendering or scoring anything, and a changed teacher computes its own."""
    import pytest

    from sas_engine import teachers
    from sas_engine.capability import shipped
    from sas_engine.capability.synthesizer import SyntheticSynthesizer
    from sas_engine.cli import main
    from sas_engine.pipeline import PipelineConfig, build_teachers, ensure_capability
    from sas_engine.teachers import MaskPrediction, MaskTeacher

    class Says(MaskTeacher):
        version = 1

        def __init__(self, word):
            self.word = word

        def config(self):
            return {"name": self.name, "version": Says.version}

        def predict_batch(self, images, *, frame_ids=None):
            out = []
            for image in images:
                fg = np.abs(image.astype(int) - image[0, 0].astype(int)).sum(-1) > 30
                out.append([MaskPrediction(fg, self.word, 1.0)])
            return out

    monkeypatch.setitem(teachers.TEACHERS, "says_chair", lambda **kw: Says("chair"))
    monkeypatch.setitem(teachers.TEACHERS, "says_table", lambda **kw: Says("table"))
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "ship")
    rc = main(["capability", "--ship", "--teachers", "says_chair,says_table", "--m", "1",
               "--store", str(tmp_path / "made")])
    assert rc == 0 and (tmp_path / "ship" / "capability.rooms.json").is_file()
    made = json.loads((tmp_path / "ship" / "capability.rooms.json").read_text())
    assert made["teachers"] == ["says_chair", "says_table"] and len(made["images"]) == 20

    def no_render(*a, **k):
        raise AssertionError("rendered")

    monkeypatch.setattr(SyntheticSynthesizer, "synthesize", no_render)
    cfg = PipelineConfig(teachers=("says_chair", "says_table"), capability_images=1)
    fresh = ArtefactStore(tmp_path / "fresh")
    table = ensure_capability(fresh, build_teachers(cfg), cfg)
    assert np.allclose(table.scores, np.array(made["scores"], dtype=float), equal_nan=True)
    assert all((fresh.root / "_shared" / it["image"]).is_file() for it in made["images"])
    Says.version = 2                                                       # "retrained": the shipped one is not it
    with pytest.raises(AssertionError, match="rendered"):
        ensure_capability(ArtefactStore(tmp_path / "other"), build_teachers(cfg), cfg)
