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


def test_rooms_synthesizer_frames_one_instance_in_its_room():
    """The in-context images: a generated room (from the capability world's seeds, no split's) framed on one instance
    of the class; the mask is that instance only, so other objects of the room are visible around it."""
    from sas_engine.synth.splits import CAPABILITY_SEED_BASE, SPLITS

    syn = build_synthesizer("rooms", size=(80, 60))
    assert syn.name == "rooms" and syn.by_class_name
    out = syn.synthesize(["chair", "otherfurniture"], 2, seed=5)
    assert [o.class_index for o in out] == [0, 0, 1, 1]
    for o in out:
        assert o.provenance["synthesizer"] == "rooms" and o.provenance["context"] == "cluttered"
        assert 0.02 * 80 * 60 <= o.mask.sum() < 0.9 * 80 * 60
        outside = o.image[~o.mask].reshape(-1, 3).astype(int)
        assert outside.std(0).mean() > 10  # a room around the object, not a flat background
    assert max(s for sp in SPLITS.values() for s, _ in sp.scenes) < CAPABILITY_SEED_BASE
    plain = build_synthesizer("synthetic", size=(80, 60)).synthesize(["chair"], 1, seed=5)[0]
    assert plain.image[~plain.mask].reshape(-1, 3).astype(int).std(0).mean() < outside.std(0).mean()


def test_registry_and_bad_input():
    assert set(SYNTHESIZERS) == {"rooms", "synthetic", "sd"}
    with pytest.raises(SASInputError):
        build_synthesizer("dalle")
    with pytest.raises(SASInputError):
        SynthImage(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), bool), 0, {})
    with pytest.raises(SASInputError, match="no objects of class"):
        build_synthesizer("synthetic", size=(80, 60)).synthesize(["spaceship"], 1)


def test_synthetic_world_images_are_cached_by_their_arguments(tmp_path):
    """The world's capability images depend only on (synthesizer, classes, m, seed, size): they are rendered once
    per store, and any other argument renders anew."""
    from sas_engine.pipeline import synthesized_images
    from sas_engine.store import ArtefactStore

    store = ArtefactStore(tmp_path / "store")
    syn = build_synthesizer("rooms", size=(80, 60))
    first = synthesized_images(store, syn, ["chair", "sink"], 1, 2)
    assert [o.class_index for o in first] == [0, 1]

    def boom(*a, **k):
        raise AssertionError("rendered again")

    syn.synthesize = boom
    again = synthesized_images(store, syn, ["chair", "sink"], 1, 2)
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.provenance == b.provenance
               for a, b in zip(first, again))
    with pytest.raises(AssertionError, match="rendered again"):
        synthesized_images(store, syn, ["chair", "sink"], 1, 3)
