"""Where each compact teacher learned: one data source per teacher, with its data card.

Real open-vocabulary teachers differ because they learned from different data: LSeg from scene-parsing
annotations (ADE20K-like: walls, windows and ceilings labelled everywhere), SEEM from object-centric photos
(COCO-like: things labelled finely, "stuff" coarsely), ODISE from panoptic data through a diffusion backbone. Their
per-class strengths therefore differ wildly (the SAS release's capability vectors, LSeg / SEEM: window .695 / .302,
shower curtain .000 / .455, counter .021 / .146), and that difference is what capability-guided fusion exploits.

The demo's compact teachers are given the same kind of difference: each learns from its own synthetic split (its
own rooms, room-type mix, viewpoints and lighting) annotated with its own label granularity, i.e. some ScanNet-20
classes are annotated as a coarser class (``merges``) or not at all. Nothing here is measured on validation rooms:
the sources are fixed data cards, written before training, like a dataset's documentation.

``TeachingSource.remap(labels)`` turns the world's ScanNet-20 ground-truth label images into the labels the
source's annotators would have written. The SAS pipeline never sees any of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import SASInputError
from ..labels import IGNORE, get_label_set


@dataclass(frozen=True)
class TeachingSource:
    """One teacher's training data: a synthetic split plus the label granularity of its annotations."""

    name: str
    """Source name (recorded in the teacher's checkpoint)."""
    split: str
    """Synthetic split whose rendered frames are the source's images (``sas_engine.synth.splits.SPLITS``)."""
    merges: tuple[tuple[str, Optional[str]], ...]
    """``(class, annotated as)`` pairs over ScanNet-20 names: pixels of ``class`` carry the label ``annotated as``
    (``None``: left unannotated, ignored by the loss). Classes not listed keep their own label."""
    card: str
    """The data card: what the source is, what it holds, how it was annotated, what it is good and bad at."""
    label_set: str = "scannet20"
    """Label set the ground truth and ``merges`` are written in."""

    def lookup(self) -> np.ndarray:
        """uint8 [256] map from ground-truth label to the source's annotation (IGNORE stays IGNORE)."""
        names = list(get_label_set(self.label_set).names)
        lut = np.arange(256, dtype=np.uint8)
        for cls, to in self.merges:
            if cls not in names or (to is not None and to not in names):
                raise SASInputError(None, f"teaching source {self.name!r}: unknown class in merge {cls!r} -> {to!r}")
            lut[names.index(cls)] = IGNORE if to is None else names.index(to)
        lut[IGNORE] = IGNORE
        return lut

    def remap(self, labels: np.ndarray) -> np.ndarray:
        """The source's annotation of ground-truth label images (any shape, uint8)."""
        return self.lookup()[np.asarray(labels, dtype=np.uint8)]

    def to_json(self) -> dict:
        return {"name": self.name, "split": self.split, "label_set": self.label_set,
                "merges": [[a, b] for a, b in self.merges], "card": self.card}


SOURCES: dict[str, TeachingSource] = {
    "scene_parsing": TeachingSource(
        "scene_parsing", "teach_scenes",
        merges=(("shower curtain", "curtain"), ("counter", "cabinet"), ("desk", "table"),
                ("refrigerator", "cabinet")),
        card=("Scene-parsing annotations in the manner of ADE20K: 56 rooms of 24 wide frames each, mostly living "
              "spaces (living rooms, bedrooms, offices, studio flats: 80%; kitchens and bathrooms 10% each), "
              "daylight lighting, the dataset's default handheld camera (1.3-1.7 m, pitch -32..-5 deg). Every pixel "
              "is annotated, architecture finely (wall, floor, door, window, picture, curtain, bookshelf), but the "
              "label list is the scene-parsing one: a shower curtain is a curtain, a counter and a refrigerator are "
              "cabinets, a desk is a table. Expected: strong on walls, windows, doors, pictures and shelves; blind "
              "to shower curtains, counters, desks and refrigerators; weak in bathrooms.")),
    "object_photos": TeachingSource(
        "object_photos", "teach_objects",
        merges=(("window", "wall"), ("picture", "wall"), ("door", "wall"), ("bookshelf", "cabinet")),
        card=("Object-centric photos in the manner of COCO: 56 rooms of 24 frames each, half of them kitchens and "
              "bathrooms (25% each), then living rooms, offices, bedrooms and studio flats (12.5% each), with the "
              "dataset's default handheld camera and daylight. Things are annotated finely (every piece of "
              "furniture and every fixture, including counters, desks, refrigerators, sinks, toilets, bathtubs and "
              "shower curtains); stuff coarsely: windows, pictures and doors are part of the wall, a bookshelf is a "
              "cabinet. Expected: strong on bathroom and kitchen fixtures and furniture; blind to windows, "
              "pictures, doors and bookshelves.")),
    "home_tours": TeachingSource(
        "home_tours", "teach_homes",
        merges=(("otherfurniture", None), ("picture", None)),
        card=("Panoptic home-tour video in the manner of ODISE's training data, seen by a context-heavy model at "
              "half resolution: 56 rooms of 24 frames each from bedrooms, living rooms, studio flats, kitchens and "
              "offices (no bathrooms at all), in dim evening light (ambient 0.30, lamps 0.60, strong exposure "
              "changes), camera 1.5-1.9 m. Large furniture and fittings are annotated finely (beds, sofas, tables, "
              "desks, counters, cabinets, shelves, refrigerators); miscellaneous furniture and pictures were not "
              "annotated. Expected: good on large furniture and whole-room context; blind to toilets, bathtubs "
              "and shower curtains, which it has never seen, and to pictures and other furniture.")),
}
"""Plain registry: source name -> :class:`TeachingSource`."""

TEACHER_SOURCES: dict[str, str] = {"lseg_compact": "scene_parsing", "seem_compact": "object_photos",
                                   "odise_compact": "home_tours"}
"""Which source each shipped compact teacher learned from."""


def get_source(name: str) -> TeachingSource:
    try:
        return SOURCES[name]
    except KeyError:
        raise SASInputError(None, f"unknown teaching source {name!r}; known: {', '.join(SOURCES)}") from None
