"""config_dict / config_hash: the bytes hashed never change (the artefact store keys cached results by them), and a
value JSON cannot represent raises naming its key instead of being stringified."""
import dataclasses
import enum
from pathlib import Path

import numpy as np
import pytest
import torch

from sas_engine.config import PRESETS, config_dict, config_hash


class Colour(enum.Enum):
    RED = 1


class Mode(str, enum.Enum):
    A = "a"


@dataclasses.dataclass
class Inner:
    root: Path = Path("/data/x")
    size: tuple[int, int] = (320, 240)


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    name: str = "n"
    weights: dict = dataclasses.field(default_factory=lambda: {"a": 0.5})


def test_hashes_are_the_ones_the_store_already_holds():
    # values computed with the previous json.dumps(..., default=str) implementation
    assert config_hash("superpoints") == "c79736ef855e1157"
    assert config_hash(3, 2.5, True, None) == "a15fc4a70d3e32f0"
    assert config_hash({"root": Path("/a/b"), "size": (320, 240), "nested": {"p": [Path("x")]}}) == "74251fefca208deb"
    assert config_hash({"c": Colour.RED, "m": Mode.A}) == "f0ccbfab9683f1a2"
    assert {k: config_hash(v) for k, v in PRESETS.items()} == {
        "matterport": "df723cc1dd1f2c43", "nuscenes": "beb884b974020646", "scannet": "4526b92fe856dd38",
        "synthetic": "fe6809218d4d94a2"}
    assert config_dict({"root": Path("/a/b"), "size": (320, 240)}) == {"root": "/a/b", "size": [320, 240]}
    assert config_dict({"c": Colour.RED, "m": Mode.A}) == {"c": "Colour.RED", "m": "a"}
    assert config_dict(Outer()) == {"inner": {"root": "/data/x", "size": [320, 240]}, "name": "n",
                                    "weights": {"a": 0.5}}
    assert config_hash(Outer()) == config_hash(config_dict(Outer()))  # a header's config re-hashes to its hash


@pytest.mark.parametrize("value, typename", [(object(), "builtins.object"), (np.int64(3), "numpy.int64"),
                                             (np.zeros(2), "numpy.ndarray"), (torch.device("cpu"), "torch.device"),
                                             ({1, 2}, "builtins.set")])
def test_unserialisable_values_raise_naming_the_key(value, typename):
    cfg = Outer(weights={"a": 0.5, "bad": [1, {"deep": value}]})
    with pytest.raises(TypeError, match=rf"weights\.bad\[1\]\.deep is a {typename}"):
        config_dict(cfg)
    with pytest.raises(TypeError, match=r"key weights\.bad\[1\]\.deep"):
        config_hash("kind", cfg, {"scene": "s"})
    with pytest.raises(TypeError, match=r"key scene"):
        config_hash("kind", {}, {"scene": value})
    with pytest.raises(TypeError, match=r"config key \(1, 2\)"):
        config_dict({"ok": {(1, 2): 1}})
