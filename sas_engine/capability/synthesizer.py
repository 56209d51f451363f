"""The pluggable image synthesizers of capability construction.

A synthesizer turns class names into images of that class with a (pseudo) ground-truth mask of the object. Scoring
only sees :class:`SynthImage` records and never knows which synthesizer produced them:

* :class:`SyntheticSynthesizer`: the embedded synthetic world's renders with exact masks (no SD, no SAM), under two
  registry names: ``rooms`` (the default: a generated room framed on one instance of the class, its mask that
  instance only; the in-context analogue of the paper's "a good photo of a {class} in a room") and ``synthetic``
  (the object alone on a plain background);
* :class:`~sas_engine.capability.sd.StableDiffusionSynthesizer`: Stable Diffusion + cross-attention coarse mask +
  SAM refinement, as in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import SASInputError


@dataclass
class SynthImage:
    """One synthesized image.

    Attributes:
        image: uint8 [H, W, 3] RGB.
        mask: bool [H, W] (pseudo) ground-truth mask of the class's object.
        class_index: index of the class in the ``class_names`` passed to the synthesizer.
        provenance: JSON-able description: synthesizer, class, seed, prompt (``None`` for renders), and whatever else
            the synthesizer records (steps, guidance, model folder, refinement...).
        extras: optional non-JSON by-products (coarse attention mask, attention map), not saved.
    """

    image: np.ndarray
    mask: np.ndarray
    class_index: int
    provenance: dict
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        img = np.asarray(self.image)
        if img.ndim != 3 or img.shape[2] != 3:
            raise SASInputError(None, f"synthesized image must be [H, W, 3], got {list(img.shape)}")
        m = np.asarray(self.mask)
        if m.shape != img.shape[:2]:
            raise SASInputError(None, f"mask shape {list(m.shape)} does not match image {list(img.shape[:2])}")
        self.image = img.astype(np.uint8, copy=False)
        self.mask = m.astype(bool, copy=False)


@runtime_checkable
class Synthesizer(Protocol):
    """Anything with a ``name`` and ``synthesize(class_names, m, seed) -> list[SynthImage]``."""

    name: str

    def synthesize(self, class_names: Sequence[str], m: int, seed: int = 0) -> list[SynthImage]:
        ...


class SyntheticSynthesizer:
    """Renders of the synthetic world (``sas_engine.synth.render_object_views``) with exact masks.

    The rooms come from a capability world of their own: seeds from
    :data:`sas_engine.synth.splits.CAPABILITY_SEED_BASE` up, disjoint from every named split.

    Args:
        size: (width, height) of the renders.
        context: ``"plain"`` (object alone on a plain background; registry name ``synthetic``) or ``"cluttered"``
            (its generated room framed on the instance, other objects around and in front of it; ``rooms``).
    """

    by_class_name = True
    """The world renders classes by their label-set name ("otherfurniture"), not by the prompt word ("other")."""
    version = 2
    """Bumped when the same seed renders different images (stamped on capability tables)."""

    def __init__(self, size: tuple[int, int] = (320, 240), context: str = "plain"):
        self.size = (int(size[0]), int(size[1]))
        self.context = context
        self.name = "synthetic" if context == "plain" else "rooms"

    def synthesize(self, class_names: Sequence[str], m: int, seed: int = 0) -> list[SynthImage]:
        from tqdm import tqdm

        from ..synth import render_object_views

        out: list[SynthImage] = []
        for k, name in enumerate(tqdm(list(class_names), desc="render object views", unit="class")):
            views = render_object_views(name, m, seed, size=self.size, context=self.context)
            for i, (img, mask) in enumerate(views):
                prov = {"synthesizer": self.name, "class": name, "seed": int(seed), "view": i, "prompt": None,
                        "context": self.context, "size": list(self.size)}
                out.append(SynthImage(np.asarray(img), np.asarray(mask), k, prov))
        return out


def _build_synthetic(**kw: Any) -> SyntheticSynthesizer:
    return SyntheticSynthesizer(**kw)


def _build_rooms(**kw: Any) -> SyntheticSynthesizer:
    return SyntheticSynthesizer(**{"context": "cluttered", **kw})


def _build_sd(**kw: Any):
    from .sd import build_sd_synthesizer

    return build_sd_synthesizer(**kw)


SYNTHESIZERS = {"rooms": _build_rooms, "synthetic": _build_synthetic, "sd": _build_sd}
"""Plain registry: synthesizer name -> builder(**kwargs)."""


def build_synthesizer(name: str, **kw: Any):
    """Build a synthesizer by registry name (``rooms``, ``synthetic`` or ``sd``)."""
    try:
        builder = SYNTHESIZERS[name]
    except KeyError:
        raise SASInputError(None, f"unknown synthesizer {name!r}; known: {', '.join(sorted(SYNTHESIZERS))}") from None
    return builder(**kw)
