"""Zero-shot labelling of per-point features against a label set's text embeddings.

A point's label is the class of the text query most similar to its feature: ``argmax_q (f . t_q)`` mapped through
the label set's ``query_to_class()`` (identity for most sets; nuScenes queries 43 detailed names that map back to its
16 classes). Features and text embeddings are L2-normalised first (cosine similarity): the argmax of one feature does
not change, but scores of different features become comparable, which the 2D-3D ensemble and test-time augmentation
rely on.

A :class:`FeatureSet` is what gets evaluated: one feature array, or several combined per point:

* ``combine="mean"``: average the logits of the members that have a feature at the point (test-time augmentation:
  OpenScene averages the logits of several rotated / scaled passes of the 3D network);
* ``combine="max_score"``: per point keep the member whose best query score is highest (OpenScene's 2D-3D ensemble;
  ties keep the earlier member, so list the 2D features first).

Members may themselves be FeatureSets (an ensemble of 2D features with a TTA-averaged 3D prediction).
Logits are computed chunk by chunk, so memory stays bounded by ``chunk_size x Q``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import SASInputError
from ..labels import PROMPT_SCENE, LabelSet, get_label_set
from .metrics import MISSING, confusion_matrix

COMBINES = ("mean", "max_score")
"""How a :class:`FeatureSet` combines its members (see module doc)."""


@dataclass
class FeatureSet:
    """Per-point features of one source, possibly several arrays combined per point.

    Attributes:
        members: feature arrays float [N, C] (numpy or torch, float16 is fine) or nested FeatureSets.
        masks: one bool [N] per member (``True`` = the point has a feature) or ``None`` = every point valid.
        combine: ``"mean"`` (average logits, test-time augmentation) or ``"max_score"`` (2D-3D ensemble).
        name: where the features came from (for messages).
    """

    members: list
    masks: list = field(default_factory=list)
    combine: str = "mean"
    name: str = ""

    def __post_init__(self):
        if not self.members:
            raise SASInputError(None, f"feature set {self.name!r} has no members")
        if self.combine not in COMBINES:
            raise SASInputError(None, f"unknown combine rule {self.combine!r}; known: {', '.join(COMBINES)}")
        if not self.masks:
            self.masks = [None] * len(self.members)
        if len(self.masks) != len(self.members):
            raise SASInputError(None, f"feature set {self.name!r}: {len(self.masks)} masks for "
                                      f"{len(self.members)} members")
        n = {self._rows(m) for m in self.members}
        if len(n) != 1:
            raise SASInputError(None, f"feature set {self.name!r}: members have different point counts {sorted(n)}")
        for m, k in zip(self.members, self.masks):
            if k is not None and tuple(k.shape) != (self._rows(m),):
                raise SASInputError(None, f"feature set {self.name!r}: mask shape {list(k.shape)} != [{self._rows(m)}]")

    @classmethod
    def single(cls, features, mask=None, name: str = "") -> "FeatureSet":
        """One feature array [N, C] with an optional validity mask [N]."""
        return cls([features], [mask], "mean", name)

    @staticmethod
    def _rows(m) -> int:
        return m.num_points if isinstance(m, FeatureSet) else int(m.shape[0])

    @property
    def num_points(self) -> int:
        return self._rows(self.members[0])

    @property
    def dim(self) -> int:
        m = self.members[0]
        return m.dim if isinstance(m, FeatureSet) else int(m.shape[1])


FeatureLike = Union[FeatureSet, Any, Sequence[Any]]


def as_feature_set(features: FeatureLike, mask=None, name: str = "") -> FeatureSet:
    """A FeatureSet from a FeatureSet, one array [N, C] (+ mask), or a list of arrays (test-time augmentation)."""
    if isinstance(features, FeatureSet):
        return features
    if isinstance(features, (list, tuple)):
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask] * len(features)
        return FeatureSet(list(features), masks, "mean", name)
    if getattr(features, "ndim", 2) == 3:  # [A, N, C]: A augmentation passes
        return FeatureSet([features[a] for a in range(features.shape[0])], [mask] * features.shape[0], "mean", name)
    return FeatureSet.single(features, mask, name)


def text_embeddings(label_set: LabelSet | str, encoder=None, template: str = PROMPT_SCENE):
    """float32 [Q, C] L2-normalised text embeddings of ``label_set.prompts(template)``.

    Args:
        label_set: a :class:`LabelSet` or its registry name.
        encoder: a TextEncoder (``.encode(list[str])``), a spec string for
            :func:`sas_engine.teachers.get_text_encoder`, or ``None`` for the default encoder.
        template: prompt template with ``{}`` for the class name.
    """
    import torch

    ls = get_label_set(label_set) if isinstance(label_set, str) else label_set
    if "{}" not in template:
        raise SASInputError(None, f"prompt template {template!r} has no '{{}}' placeholder for the class name")
    if encoder is None or isinstance(encoder, str):
        from ..teachers import get_text_encoder

        encoder = get_text_encoder(encoder)
    emb = torch.as_tensor(encoder.encode(ls.prompts(template)), dtype=torch.float32)
    return torch.nn.functional.normalize(emb, dim=1)


def _check_text(text_emb, q2c: np.ndarray, dim: int, name: str):
    import torch

    t = torch.as_tensor(np.asarray(text_emb) if not hasattr(text_emb, "detach") else text_emb.detach())
    if t.ndim != 2:
        raise SASInputError(None, f"text embeddings must be [Q, C], got {list(t.shape)}")
    if t.shape[0] != len(q2c):
        raise SASInputError(None, f"{t.shape[0]} text embeddings for {len(q2c)} queries of the label set")
    if t.shape[1] != dim:
        raise SASInputError(None, f"features of {name or 'the source'} are {dim}-d but the text embeddings are "
                                  f"{t.shape[1]}-d: use the text encoder the features were made with")
    return torch.nn.functional.normalize(t.float(), dim=1)


def _chunk(fs: FeatureSet, lo: int, hi: int, text, normalize: bool, device):
    """(logits float32 [n, Q], valid bool [n]) of points lo..hi."""
    import torch

    outs = []
    for m, k in zip(fs.members, fs.masks):
        if isinstance(m, FeatureSet):
            lg, ok = _chunk(m, lo, hi, text, normalize, device)
        else:
            f = torch.as_tensor(m[lo:hi]).to(device=device, dtype=torch.float32)
            lg = f @ text.T
            norm = f.norm(dim=1, keepdim=True)  # (f / |f|) . t == (f . t) / |f|, with N x Q instead of N x C divisions
            if normalize:
                lg = lg / norm.clamp_min(1e-12)
            ok = torch.isfinite(norm.squeeze(1))
            if k is not None:
                ok = ok & torch.as_tensor(k[lo:hi]).to(device=device, dtype=torch.bool)
        outs.append((lg, ok))
    if len(outs) == 1:
        return outs[0]
    lgs = torch.stack([o[0] for o in outs])  # [M, n, Q]
    oks = torch.stack([o[1] for o in outs])  # [M, n]
    if fs.combine == "mean":
        w = oks.float().unsqueeze(-1)
        cnt = w.sum(0)
        logits = (torch.nan_to_num(lgs) * w).sum(0) / cnt.clamp_min(1)
        return logits, cnt.squeeze(-1) > 0
    best = torch.where(oks, lgs.max(-1).values, torch.tensor(-float("inf"), device=device))  # [M, n]
    pick = best.argmax(0)  # first maximal member on ties
    logits = lgs.gather(0, pick.view(1, -1, 1).expand(1, -1, lgs.shape[-1])).squeeze(0)
    return logits, oks.any(0)


def predict_labels(features: FeatureLike, text_emb, query_to_class=None, *, mask=None, normalize: bool = True,
                   chunk_size: int = 65536, device: str = "cpu", return_scores: bool = False):
    """Zero-shot class per point: int64 [N], :data:`MISSING` (-1) where no member has a feature.

    Args:
        features: a :class:`FeatureSet`, one array [N, C] (with ``mask``), or a list of arrays (averaged logits).
        text_emb: [Q, C] text embeddings (numpy or torch; normalised here).
        query_to_class: int [Q] class of each query (default identity); e.g. ``label_set.query_to_class()``.
        mask: bool [N] validity of a single feature array.
        normalize: L2-normalise features before the dot product (cosine similarity).
        chunk_size: points per matrix product.
        device: torch device for the products ("cpu", "cuda").
        return_scores: also return the winning cosine score float32 [N] (NaN where missing).
    """
    import torch

    fs = as_feature_set(features, mask)
    q2c_np = np.arange(len(text_emb)) if query_to_class is None else np.asarray(query_to_class, dtype=np.int64)
    text = _check_text(text_emb, q2c_np, fs.dim, fs.name).to(device)
    q2c = torch.as_tensor(q2c_np, device=device)
    n = fs.num_points
    pred = torch.full((n,), MISSING, dtype=torch.int64)
    score = torch.full((n,), float("nan"), dtype=torch.float32)
    with torch.no_grad():
        for lo in range(0, n, max(1, int(chunk_size))):
            hi = min(n, lo + int(chunk_size))
            logits, ok = _chunk(fs, lo, hi, text, normalize, device)
            s, q = logits.max(1)
            pred[lo:hi] = torch.where(ok, q2c[q], torch.full_like(q, MISSING)).cpu()
            score[lo:hi] = torch.where(ok, s, torch.full_like(s, float("nan"))).cpu()
    pred = pred.numpy()
    return (pred, score.numpy()) if return_scores else pred


def evaluate_features(features: FeatureLike, mask, text_emb, gt, *, num_classes: Optional[int] = None,
                      query_to_class=None, ignore: int = 255, normalize: bool = True, chunk_size: int = 65536,
                      device: str = "cpu") -> np.ndarray:
    """Confusion matrix int64 [K, K+1] of the zero-shot labels of ``features`` against ``gt`` [N].

    Points without a feature are misses (last column). ``num_classes`` defaults to ``max(query_to_class) + 1``.
    Accumulate scenes by summing the returned matrices; turn them into numbers with :mod:`.metrics`.
    """
    q2c = np.arange(len(text_emb)) if query_to_class is None else np.asarray(query_to_class, dtype=np.int64)
    k = int(q2c.max()) + 1 if num_classes is None else int(num_classes)
    pred = predict_labels(features, text_emb, q2c, mask=mask, normalize=normalize, chunk_size=chunk_size,
                          device=device)
    return confusion_matrix(pred, gt, k, ignore=ignore)
