"""The one safe torch loader (sas_engine.io.files.torch_load): weights load, objects that are not weights are
refused without running anything, every failure names the file."""
import argparse

import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError, StaleArtefactError
from sas_engine.io.files import torch_load
from sas_engine.store import ArtefactStore, make_header


class _Opens:
    """Unpickling this runs ``open(path, "w")``: a pickled object that is code, not weights."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_weights_and_numpy_arrays_load(tmp_path):
    p = tmp_path / "w.pt"
    torch.save({"state_dict": {"w": torch.ones(2, 3)}, "epoch": 3, "pts": np.arange(4.0), "names": ["a"]}, p)
    got = torch_load(p)
    assert torch.equal(got["state_dict"]["w"], torch.ones(2, 3)) and got["epoch"] == 3 and got["names"] == ["a"]
    assert np.array_equal(got["pts"], np.arange(4.0))


def test_a_pickled_object_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("SAS_TRUST_PICKLE", raising=False)
    marker = tmp_path / "ran"
    p = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(1), "x": _Opens(marker)}, p)
    with pytest.raises(SASInputError, match=f"{p}: student checkpoint needs unpickling of arbitrary objects "
                                            r"\((builtins|io).open\), refused for safety"):
        torch_load(p, what="student checkpoint")
    # inert stand-ins (third-party checkpoints' metadata objects) never call what the file names either
    with pytest.raises(SASInputError, match="refused for safety"):
        torch_load(p, inert_objects=True)
    assert not marker.exists()
    # the store never unpickles, even when the user trusts pickles for legacy scene files
    monkeypatch.setenv("SAS_TRUST_PICKLE", "1")
    st = ArtefactStore(tmp_path / "store")
    st.scene_dir("s").mkdir(parents=True)
    torch.save({"__header__": make_header("misc", None), "x": _Opens(marker)}, st.path("s", "a"))
    with pytest.raises(StaleArtefactError, match="a.pt: not a readable artefact"):
        st.read_any("s", "a")
    assert not marker.exists()


def test_inert_stand_ins_for_checkpoint_metadata(tmp_path, monkeypatch):
    monkeypatch.delenv("SAS_TRUST_PICKLE", raising=False)
    p = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hparams": argparse.Namespace(lr=0.1)}, p)
    with pytest.raises(SASInputError, match=r"argparse.Namespace\), refused for safety"):
        torch_load(p)
    got = torch_load(p, inert_objects=True)
    assert torch.equal(got["state_dict"]["w"], torch.zeros(2))
    assert not isinstance(got["hparams"], argparse.Namespace)  # an inert stand-in, not the real class


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(SASInputError, match="none.pt: checkpoint not found"):
        torch_load(tmp_path / "none.pt", what="checkpoint")
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(SASInputError, match=r"junk.pt: cannot read torch file \(truncated or corrupt: "
                                            "UnpicklingError: Unsupported operand"):
        torch_load(tmp_path / "junk.pt")
    good = tmp_path / "t.pt"
    torch.save({"w": torch.ones(1000)}, good)
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:300])
    with pytest.raises(SASInputError, match="cut.pt: cannot read torch file .truncated or corrupt"):
        torch_load(tmp_path / "cut.pt")
