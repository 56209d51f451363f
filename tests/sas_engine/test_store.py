"""Artefact store: atomic writes (simulated crash between write and rename) and staleness detection."""
import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import sas_engine.store as store_mod
from sas_engine.errors import SASInputError, StaleArtefactError
from sas_engine.store import ArtefactStore, atomic_write


@dataclass
class Cfg:
    """A tiny config."""

    k: int = 1
    """a knob"""


def _crash(*a, **k):
    raise OSError("simulated crash before rename")


def _no_temp(d):
    return [p.name for p in d.iterdir() if p.name.endswith(".tmp")] == []


def test_crash_between_write_and_rename_keeps_old_artefact(tmp_path, monkeypatch):
    st = ArtefactStore(tmp_path)
    st.save("scene0", "fused.x", {"features": torch.ones(3, 2)}, kind="fused", config=Cfg())
    monkeypatch.setattr(store_mod.os, "replace", _crash)
    with pytest.raises(OSError, match="simulated crash"):
        st.save("scene0", "fused.x", {"features": torch.zeros(3, 2)}, kind="fused", config=Cfg())
    with pytest.raises(OSError):
        st.save_json("scene0", "cap", {"a": 1}, kind="cap")
    with pytest.raises(OSError):
        st.write_bytes("scene0", "plot.png", b"\x89PNG new")
    monkeypatch.undo()
    got = st.load("scene0", "fused.x", kind="fused", config=Cfg())
    assert torch.equal(got["features"], torch.ones(3, 2))  # old artefact survived
    assert not (tmp_path / "scene0" / "cap.json").exists() and not (tmp_path / "scene0" / "plot.png").exists()
    assert _no_temp(tmp_path / "scene0")


def test_atomic_write_failure_inside_writer(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write(target, lambda f: f.write("old"), mode="w")

    def bad(f):
        f.write("half")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        atomic_write(target, bad, mode="w")
    assert target.read_text() == "old" and _no_temp(tmp_path)


def test_roundtrip_with_numpy_and_header(tmp_path):
    st = ArtefactStore(tmp_path)
    payload = {"t": torch.arange(4), "a": np.arange(3.0), "n": 3, "names": ["x", "y"]}
    p = st.save("s", "sp", payload, kind="misc", config=Cfg(2), inputs={"mesh": "abc"})
    assert p == tmp_path / "s" / "sp.pt"
    got = st.load("s", "sp", kind="misc", config=Cfg(2), inputs={"mesh": "abc"})
    assert torch.equal(got["t"], torch.arange(4)) and np.array_equal(got["a"], np.arange(3.0))
    assert got["n"] == 3 and got["names"] == ["x", "y"]
    h = st.header("s", "sp")
    assert h["format_version"] == store_mod.FORMAT_VERSION and h["kind"] == "misc" and h["config"] == {"k": 2}
    assert st.load("s", "missing", kind="misc") is None
    assert [a["name"] for a in st.list("s")] == ["sp"]


def test_stale_config_inputs_kind_and_version(tmp_path, monkeypatch):
    st = ArtefactStore(tmp_path)
    st.save("s", "a", {"features": torch.ones(1, 2)}, kind="fused", config=Cfg(1), inputs={"frames": 10})
    with pytest.raises(StaleArtefactError, match="another config or input"):
        st.load("s", "a", kind="fused", config=Cfg(2), inputs={"frames": 10})
    with pytest.raises(StaleArtefactError, match="another config or input"):
        st.load("s", "a", kind="fused", config=Cfg(1), inputs={"frames": 11})
    with pytest.raises(StaleArtefactError, match="expected 'pred3d'"):
        st.load("s", "a", kind="pred3d", config=Cfg(1), inputs={"frames": 10})
    monkeypatch.setattr(store_mod, "FORMAT_VERSION", store_mod.FORMAT_VERSION + 1)
    with pytest.raises(StaleArtefactError, match="format version"):
        st.load("s", "a", kind="fused", config=Cfg(1), inputs={"frames": 10})


def test_get_or_compute_recomputes_only_when_needed(tmp_path, monkeypatch):
    st = ArtefactStore(tmp_path)
    calls = []

    def compute(val):
        def f():
            calls.append(val)
            return {"v": torch.tensor([val])}
        return f

    assert st.get_or_compute("s", "x", compute(1), kind="k", config=Cfg(1))["v"].item() == 1
    assert st.get_or_compute("s", "x", compute(2), kind="k", config=Cfg(1))["v"].item() == 1  # cached
    assert calls == [1]
    assert st.get_or_compute("s", "x", compute(3), kind="k", config=Cfg(5))["v"].item() == 3  # stale config
    assert st.get_or_compute("s", "x", compute(4), kind="k", config=Cfg(5), recompute=True)["v"].item() == 4
    monkeypatch.setattr(store_mod, "FORMAT_VERSION", store_mod.FORMAT_VERSION + 1)
    assert st.get_or_compute("s", "x", compute(5), kind="k", config=Cfg(5))["v"].item() == 5  # stale version
    assert calls == [1, 3, 4, 5]
    assert st.load("s", "x", kind="k", config=Cfg(5))["v"].item() == 5


def test_foreign_and_corrupt_files_are_refused(tmp_path):
    st = ArtefactStore(tmp_path)
    (tmp_path / "s").mkdir()
    torch.save({"v": torch.ones(1)}, tmp_path / "s" / "foreign.pt")  # no header
    (tmp_path / "s" / "broken.pt").write_bytes(b"garbage")
    (tmp_path / "s" / "broken.json").write_text("{")
    with pytest.raises(StaleArtefactError, match="no artefact header"):
        st.load("s", "foreign", kind="k")
    with pytest.raises(StaleArtefactError, match="not a readable artefact"):
        st.load("s", "broken", kind="k")
    with pytest.raises(StaleArtefactError, match="not a readable artefact"):
        st.load_json("s", "broken", kind="k")
    listed = {a["name"]: a["kind"] for a in st.list("s")}
    assert listed == {"broken": "unreadable", "foreign": "unreadable"}
    assert st.get_or_compute("s", "foreign", lambda: {"v": torch.zeros(1)}, kind="k")["v"].item() == 0


def test_json_artefacts_and_shared_scope(tmp_path):
    st = ArtefactStore(tmp_path)
    st.save_json(None, "capability.synth", {"scores": np.array([[0.5, 1.0]]), "teachers": ["a"],
                                            "classes": ("x", np.str_("y")), "linear_miou": np.float32(0.5)},
                 kind="capability")
    assert (tmp_path / "_shared" / "capability.synth.json").exists()
    got = st.load_json(None, "capability.synth", kind="capability")
    assert got == {"scores": [[0.5, 1.0]], "teachers": ["a"], "classes": ["x", "y"], "linear_miou": 0.5}
    with pytest.raises(StaleArtefactError):
        st.load_json(None, "capability.synth", kind="capability", config=Cfg())
    st.write_bytes(None, "capability.synth.png", b"png")
    assert (tmp_path / "_shared" / "capability.synth.png").read_bytes() == b"png"


@pytest.mark.parametrize("sid, name", [("../x", "a"), ("s", "../a"), ("s", ".hidden"), ("..", "a")])
def test_bad_names(tmp_path, sid, name):
    with pytest.raises(SASInputError):
        ArtefactStore(tmp_path).path(sid, name)
    assert not os.listdir(tmp_path)
