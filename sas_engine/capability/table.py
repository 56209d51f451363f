"""The capability table (teachers x classes IoU), its JSON form in the artefact store and its bar chart."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import SASInputError

KIND = "capability"
"""Artefact kind of capability tables in the store (shared, name ``capability.<synthesizer>``)."""


@dataclass
class CapabilityTable:
    """Per-teacher, per-class capability (IoU against the synthesized pseudo masks).

    Attributes:
        scores: float [T, K] capabilities in ``mode`` (NaN where a class had no usable image).
        teachers: teacher names, row order.
        classes: class names, column order.
        mode: ``pooled`` (sum of intersections / sum of unions, the release) or ``per_image`` (mean IoU, paper Eq. 3).
        scores_pooled / scores_per_image: both variants, float [T, K].
        image_counts: int [K] images per class that were scored.
        linear_weights: global teacher weights of the Linear baseline chosen on the synthesized images (or None).
        linear_miou: pixel mIoU (pooled) of the Linear combination with those weights on the synthesized images.
        provenance: one JSON-able dict per synthesized image (synthesizer, class, seed, prompt...).
        words: the word put into prompts per class (defaults to ``classes``; ScanNet's "otherfurniture" -> "other").
        images: optional gallery of synthesized images behind the scores: ``{"class", "image", "mask", "ious"}``
            with PNG paths relative to the store's shared folder (shown by the app).
    """

    scores: np.ndarray
    teachers: list[str]
    classes: list[str]
    mode: str = "pooled"
    scores_pooled: Optional[np.ndarray] = None
    scores_per_image: Optional[np.ndarray] = None
    image_counts: Optional[np.ndarray] = None
    linear_weights: Optional[list[float]] = None
    linear_miou: Optional[float] = None
    provenance: list[dict] = field(default_factory=list)
    words: Optional[list[str]] = None
    images: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if self.scores.shape != (len(self.teachers), len(self.classes)):
            raise SASInputError(None, f"capability scores {list(self.scores.shape)} do not match "
                                      f"{len(self.teachers)} teachers x {len(self.classes)} classes")

    def prompt_words(self) -> list[str]:
        """Per class, the word put into text prompts."""
        return list(self.words) if self.words else list(self.classes)

    def row(self, teacher: str) -> np.ndarray:
        """float [K] capabilities of one teacher."""
        if teacher not in self.teachers:
            raise SASInputError(None, f"teacher {teacher!r} is not in the capability table ({', '.join(self.teachers)})")
        return self.scores[self.teachers.index(teacher)]

    def select(self, teachers: list[str]) -> np.ndarray:
        """float [len(teachers), K] rows in the given order."""
        return np.stack([self.row(t) for t in teachers])

    # -- JSON ----------------------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "teachers": list(self.teachers), "classes": list(self.classes), "mode": self.mode,
            "scores": _nan_to_none(self.scores),
            "scores_pooled": _nan_to_none(self.scores_pooled), "scores_per_image": _nan_to_none(self.scores_per_image),
            "image_counts": None if self.image_counts is None else [int(c) for c in self.image_counts],
            "linear_weights": self.linear_weights, "linear_miou": self.linear_miou,
            "provenance": list(self.provenance), "words": list(self.prompt_words()), "images": list(self.images),
        }

    @classmethod
    def from_json(cls, d: dict, source=None) -> "CapabilityTable":
        try:
            arr = lambda v: None if v is None else np.array([[np.nan if x is None else x for x in r] for r in v], float)
            return cls(scores=arr(d["scores"]), teachers=list(d["teachers"]), classes=list(d["classes"]),
                       mode=d.get("mode", "pooled"), scores_pooled=arr(d.get("scores_pooled")),
                       scores_per_image=arr(d.get("scores_per_image")),
                       image_counts=None if d.get("image_counts") is None else np.array(d["image_counts"], np.int64),
                       linear_weights=d.get("linear_weights"), linear_miou=d.get("linear_miou"),
                       provenance=list(d.get("provenance", [])), words=d.get("words"),
                       images=list(d.get("images") or []))
        except (KeyError, TypeError, ValueError) as e:
            raise SASInputError(source, f"not a capability table ({type(e).__name__}: {e})") from e

    # -- chart ---------------------------------------------------------------------------------------------------
    def bar_chart_png(self, title: Optional[str] = None) -> bytes:
        """PNG bytes of a grouped bar chart: one group per class, one bar per teacher."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t, k = self.scores.shape
        fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * k + 2), 4.0), dpi=100)
        width = 0.8 / max(t, 1)
        x = np.arange(k)
        for i, name in enumerate(self.teachers):
            ax.bar(x + (i - (t - 1) / 2) * width, np.nan_to_num(self.scores[i]), width, label=name)
        ax.set_xticks(x)
        ax.set_xticklabels(self.classes, rotation=60, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"capability (IoU, {self.mode})")
        ax.set_title(title or "model capability per class")
        ax.legend(fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        return buf.getvalue()


def _nan_to_none(a):
    if a is None:
        return None
    return [[None if (isinstance(v, float) and math.isnan(v)) else float(v) for v in row] for row in np.asarray(a, float)]


def save_capability_table(store, table: CapabilityTable, synthesizer: str, config=None) -> tuple:
    """Save ``capability.<synthesizer>`` (JSON) and ``capability.<synthesizer>.png`` into the store's shared folder.
    Returns the two paths."""
    name = f"capability.{synthesizer}"
    config = config if config else {"synthesizer": synthesizer}  # never empty: the header must round-trip its hash
    jpath = store.save_json(None, name, table.to_json(), kind=KIND, config=config,
                            inputs={"teachers": table.teachers, "classes": table.classes})
    ppath = store.write_bytes(None, f"{name}.png", table.bar_chart_png(f"capability ({synthesizer} images)"))
    return jpath, ppath


def load_capability_table(store, synthesizer: str) -> CapabilityTable:
    """Load ``capability.<synthesizer>`` from the store (format version and kind are checked; any producing config is
    accepted). Raises :class:`SASInputError` when it does not exist."""
    from ..artefacts import read_json

    name = f"capability.{synthesizer}"
    d = read_json(store, None, name, kind=KIND, required=True,
                  hint=f"no capability table; run `sas capability --synth {synthesizer}` first")
    return CapabilityTable.from_json(d, store.path(None, name, ".json"))
