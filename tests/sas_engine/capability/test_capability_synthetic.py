"""The synthetic-world synthesizer behind the common Synthesizer interface."""
import numpy as np
import pytest

from sas_engine.capability import SYNTHESIZERS, SynthImage, Synthesizer, build_synthesizer
from sas_engine.errors import SASInputError


def test_synthetic_synthesizer_renders_exact_masks():
    syn = build_synthesizer("synthetic", size=(80, 60))
    assert isinstance(syn, Synthesizer) and syn.name == "synthetic"
    out = syn.synthesize(["shower curtain"], 2, seed=3)
    assert len(out) == 2 and all(isinstance(o, SynthImage) for o in out)
    for i, o in enumerate(out):
        assert o.image.shape == (60, 80, 3) and o.image.dtype == np.uint8
        assert o.mask.shape == (60, 80) and o.mask.dtype == bool
        assert 0.02 * 80 * 60 <= o.mask.sum() < 80 * 60           # the object is visible, not the whole image
        assert o.class_index == 0
        assert o.provenance == {"synthesizer": "synthetic", "class": "shower curtain", "seed": 3, "view": i,
                                "prompt": None, "context": "plain", "size": [80, 60]}
    assert not np.array_equal(out[0].image, out[1].image)


def test_registry_and_bad_input():
    assert set(SYNTHESIZERS) == {"synthetic", "sd"}
    with pytest.raises(SASInputError):
        build_synthesizer("dalle")
    with pytest.raises(SASInputError):
        SynthImage(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), bool), 0, {})
    with pytest.raises(SASInputError, match="no objects of class"):
        build_synthesizer("synthetic", size=(80, 60)).synthesize(["spaceship"], 1)
