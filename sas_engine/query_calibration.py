"""Fitted calibration of query relevance: one softmax temperature and a bias per vocabulary name for one feature
layer (:class:`VocabularyCalibration`), fitted on held-out rooms (:func:`fit_calibration`, run by
``scripts/tune_relevance.py --fit``) and shipped in ``checkpoints/query_calibration.json``. Used by
:meth:`sas_engine.query.QueryEngine.relevance`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .errors import SASInputError


@dataclass(frozen=True)
class VocabularyCalibration:
    """Softmax temperature and per-name biases of one feature layer over one vocabulary (:func:`fit_calibration`).

    Attributes:
        layer: artefact name the numbers belong to (e.g. ``pred3d.student``).
        names: the vocabulary, in the order of ``biases``.
        temperature: ``T`` of :meth:`QueryEngine.relevance`.
        biases: ``b`` per name.
        templates: prompt ensemble the cosines were computed with (it applies only with the same templates).
        checkpoint_sha: digest of the model file that made the layer's features (``None``: not checked).
        rooms: the held-out rooms it was fitted on.
    """

    layer: str
    names: tuple[str, ...]
    temperature: float
    biases: tuple[float, ...]
    templates: tuple[str, ...]
    checkpoint_sha: Optional[str] = None
    rooms: tuple[str, ...] = ()

    def __post_init__(self):
        if len(self.names) != len(self.biases) or not self.names:
            raise SASInputError(None, f"calibration of {self.layer}: {len(self.names)} names for "
                                      f"{len(self.biases)} biases")
        if not (np.isfinite(self.temperature) and self.temperature > 0 and np.isfinite(self.biases).all()):
            raise SASInputError(None, f"calibration of {self.layer}: temperature and biases must be finite, T > 0")

    def applies(self, col_names: Sequence[Optional[str]], templates: Sequence[str]) -> bool:
        """True when every vocabulary column is one of :attr:`names` and the templates are the ones fitted with."""
        known = set(self.names)
        return tuple(templates) == tuple(self.templates) and all(n is None or n in known for n in col_names)

    @property
    def mean_bias(self) -> float:
        return float(np.mean(self.biases))

    def to_dict(self) -> dict:
        return {"layer": self.layer, "names": list(self.names), "temperature": self.temperature,
                "biases": list(self.biases), "templates": list(self.templates), "checkpoint_sha": self.checkpoint_sha,
                "rooms": list(self.rooms)}

    @classmethod
    def from_dict(cls, d: dict) -> "VocabularyCalibration":
        try:
            return cls(str(d["layer"]), tuple(str(n) for n in d["names"]), float(d["temperature"]),
                       tuple(float(b) for b in d["biases"]), tuple(str(t) for t in d["templates"]),
                       d.get("checkpoint_sha"), tuple(str(r) for r in d.get("rooms", ())))
        except (KeyError, TypeError, ValueError) as e:
            raise SASInputError(None, f"calibration entry lacks layer/names/temperature/biases/templates ({e})") \
                from None


def fit_calibration(cosines: Sequence[np.ndarray], labels: Sequence[np.ndarray], *, l2: float = 1e-3,
                    max_points: int = 20000, seed: int = 0) -> tuple[float, np.ndarray]:
    """Temperature ``T`` and biases ``b`` [K] maximising the class-balanced likelihood of
    ``softmax(T cos + b)`` (vector scaling with a shared scale) on labelled rooms.

    Args:
        cosines: per room float32 [N, K]: each point's cosine with the K vocabulary names (NaN rows = no feature).
        labels: per room int [N]: the true name index, anything outside 0..K-1 = unlabelled.
        l2: ridge on the biases (keeps names absent from the rooms near 0).
        max_points: labelled points drawn per room (uniformly, ``seed``).

    Each class weighs the same in the loss (mean recall, not the majority walls and floors). Names that never occur
    get only the ridge term.
    """
    g = np.random.default_rng(seed)
    xs, ys = [], []
    k = None
    for c, y in zip(cosines, labels):
        c = np.asarray(c, dtype=np.float32)
        y = np.asarray(y).astype(np.int64).reshape(-1)
        k = c.shape[1] if k is None else k
        if c.shape != (y.shape[0], k):
            raise SASInputError(None, f"cosines {list(c.shape)} do not match {y.shape[0]} labels x {k} names")
        ok = np.flatnonzero((y >= 0) & (y < k) & np.isfinite(c).all(1))
        if ok.size > max_points:
            ok = g.choice(ok, max_points, replace=False)
        xs.append(c[ok])
        ys.append(y[ok])
    if k is None or not sum(len(y) for y in ys):
        raise SASInputError(None, "no labelled points to fit a calibration on")
    x = torch.from_numpy(np.concatenate(xs))
    y = torch.from_numpy(np.concatenate(ys))
    cnt = torch.bincount(y, minlength=k).double()
    w = torch.where(cnt > 0, 1.0 / cnt.clamp_min(1), torch.zeros((), dtype=torch.float64))
    w = (w / w[cnt > 0].mean()).float()
    log_t = torch.tensor(np.log(10.0), dtype=torch.float32, requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.LBFGS([log_t, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(log_t.exp() * x + b, y, weight=w) + l2 * (b ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp()), b.detach().numpy().astype(np.float64)


def load_calibrations(path: str | Path) -> dict[str, VocabularyCalibration]:
    """The calibrations in a JSON file (``{"calibrations": [...]}``) by layer name; {} when the file is absent.

    Raises:
        SASInputError: the file exists but is not a valid calibration file.
    """
    import json

    p = Path(path)
    if not p.is_file():
        return {}
    try:
        obj = json.loads(p.read_text())
        entries = obj["calibrations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SASInputError(p, f"not a query calibration file ({e})") from None
    out = {}
    for d in entries:
        c = VocabularyCalibration.from_dict(d)
        out[c.layer] = c
    return out


CALIBRATION_FILE = Path(__file__).resolve().parents[1] / "checkpoints" / "query_calibration.json"
"""The shipped calibration of the demo's layers (``scripts/tune_relevance.py --fit`` writes it)."""
