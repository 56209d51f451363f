"""What a text query becomes in :mod:`sas_engine.query`: the relevance settings, the default ones, the calibration of
the softmax columns, and the result types (split out of :mod:`sas_engine.query`, which re-exports every name here)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .errors import SASInputError
from .query_calibration import VocabularyCalibration
from .query_text import QUERY_TEMPLATES, apply_template

BACKGROUND = -2
"""Label of points that match none of the typed names well (:meth:`QueryEngine.segment_names`); -1 = no feature."""

CANONICAL_NEGATIVES = ("object", "things", "stuff", "texture")
"""LERF's canonical negative phrases: every relevance is measured against them (and the vocabulary)."""


@dataclass(frozen=True)
class RelevanceConfig:
    """How a text query becomes a calibrated relevance (see :meth:`QueryEngine.relevance`).

    The defaults were chosen by ``scripts/tune_relevance.py --grid`` on the 6 synthetic ``tune`` rooms (never on the
    ``val`` / demo rooms): the 4-prompt ensemble, nearest aliases from cosine 0.3, synonyms from 0.9, heat-map
    threshold 0.4, comma-list threshold 0.2 with superpoint averaging (``assets/query/tune_grid_log.txt``).
    """

    templates: tuple[str, ...] = QUERY_TEMPLATES
    """Prompt ensemble applied to short texts (queries and vocabulary names)."""
    short_words: int = 3
    """Texts of at most this many words go through :attr:`templates`; longer ones through :attr:`long_templates`."""
    long_templates: tuple[str, ...] = ("{}",)
    """Templates of longer texts (a sentence is already a prompt)."""
    temperature: float = 10.0
    """Softmax temperature ``T`` of :meth:`QueryEngine.relevance` when no fitted :class:`VocabularyCalibration`
    applies (a layer or vocabulary it was not fitted for)."""
    alias_cosine: float = 0.9
    """A vocabulary name whose text embedding has at least this cosine with the query's answers for the query
    (synonyms: "couch" -> sofa) instead of competing with it."""
    nearest_alias_cosine: float = 0.3
    """The vocabulary name nearest to the query answers for it when their cosine reaches this (paraphrases: "a fridge"
    -> refrigerator); 1.01 turns nearest aliases off."""
    describe: bool = True
    """Find the nearest name through each name's one-line description too (:data:`sas_engine.query_text.NAME_DESCRIPTIONS`; the larger of
    the two cosines counts): with MiniLM the bare phrase "a place to wash hands" is nearest to "toilet", its
    description-matched neighbour is sink. Only alias choice changes; the columns scored stay the names'."""
    canonical: tuple[str, ...] = CANONICAL_NEGATIVES
    """Negative phrases always competing with the query."""
    threshold: float = 0.4
    """Default heat-map threshold on the relevance (a probability: 0.5 = the query is as likely as every other
    name together)."""
    segment_threshold: float = 0.2
    """Probability below which a point of a comma-list segmentation is left as background."""
    segment_superpoints: bool = True
    """Comma lists average each name's cosines over superpoints before labelling (the app passes the scene's
    superpoints to :meth:`QueryEngine.segment_names` when this is set)."""

    def __post_init__(self):
        for t in tuple(self.templates) + tuple(self.long_templates):
            apply_template(t, ["x"])
        if not self.templates or not self.long_templates:
            raise SASInputError(None, "a relevance config needs at least one template for short and long texts")
        if not self.temperature > 0:
            raise SASInputError(None, f"relevance temperature must be > 0, got {self.temperature}")
        for name in ("threshold", "segment_threshold"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise SASInputError(None, f"relevance {name} must be in [0, 1], got {v}")


RELEVANCE = RelevanceConfig()
"""The default relevance settings (the app's and the engine's)."""


def column_calibration(col_names: Sequence[Optional[str]], cfg: RelevanceConfig,
                        calibration: Optional[VocabularyCalibration]) -> tuple[float, np.ndarray]:
    """(T, bias per column): the calibration's when it applies (typed texts and canonical phrases get its mean
    bias), else ``cfg.temperature`` and zeros."""
    if calibration is None or not calibration.applies(col_names, cfg.templates):
        return float(cfg.temperature), np.zeros(len(col_names), dtype=np.float32)
    table = dict(zip(calibration.names, calibration.biases))
    mean = calibration.mean_bias
    return float(calibration.temperature), np.array([mean if n is None else table[n] for n in col_names],
                                                     dtype=np.float32)


@dataclass
class Relevance:
    """A calibrated query result (:meth:`QueryEngine.relevance`).

    Attributes:
        text: the cleaned query.
        score: float32 [N] relevance in (0, 1); NaN where the point has no feature.
        cosine: float32 [N] plain cosine with the query's own embedding.
        aliases: vocabulary names that answered for the query.
        negatives: names it was measured against.
    """

    text: str
    score: np.ndarray
    cosine: np.ndarray
    aliases: list[str]
    negatives: list[str]


@dataclass
class NamedSegmentation:
    """A comma-list segmentation with a background (:meth:`QueryEngine.segment_names`).

    Attributes:
        names: the cleaned typed names.
        labels: int64 [N] index into ``names``; :data:`BACKGROUND` (-2) = none matches; -1 = no feature.
        scores: float32 [N] relevance of the best name; NaN where the point has no feature.
        aliases: per name, the vocabulary names that answered for it.
        negatives: names the relevance was measured against.
    """

    names: list[str]
    labels: np.ndarray
    scores: np.ndarray
    aliases: list[list[str]]
    negatives: list[str]
