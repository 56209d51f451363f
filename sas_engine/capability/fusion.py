"""Capability-guided fusion of per-teacher 3D features (paper 3.3, Eq. 6-8, generalised to M teachers).

For each point, with ``E`` the L2-normalised vocabulary text embeddings [K, C] and ``S`` the capability table [T, K]:

1. every teacher ``m`` with a valid feature votes its class ``k_m = argmax(F_m . E)``;
2. the weight of teacher ``t`` is the mean of its capabilities at those classes, ``w_t = mean_m S_t[k_m]`` (paper
   Eq. 6-7; ``weighting="normalized"`` uses the release's variant ``w_t / sum_s w_s``);
3. ``a = softmax(w / tau)`` over the teachers with a valid feature (Eq. 8, tau = 0.05 in the release);
4. ``F_fused = sum_t a_t F_t`` (no re-normalisation, as in the release).

Points where only some teachers have a feature use only those; points with none are masked out (zero row, weight 0).
Missing capabilities (NaN: a class without usable synthesized images) are filled with the teacher's mean capability.
Optional catch-all rule (release): ``catch_all=(t, k)`` makes points whose teacher-``t`` class is ``k`` keep teacher
``t``'s pure feature.

Baselines of the paper's ablation (Table 3): :func:`add_fuse` (plain mean of the valid features) and
:func:`linear_fuse` (fixed global weights, renormalised over the valid teachers of each point).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import SASInputError

WEIGHTINGS = ("mean", "normalized")


@dataclass(frozen=True)
class CapabilityFusionConfig:
    """Settings of capability-guided fusion (stamped on ``fused.sas`` artefacts)."""

    tau: float = 0.05
    """Softmax temperature over the teacher weights (release 0.05; -> 0 picks the most capable, -> inf averages)."""
    weighting: str = "mean"
    """``mean``: w_t = mean of S_t at the voted classes (paper Eq. 6-7); ``normalized``: divided by the sum over
    teachers before the softmax (release)."""
    catch_all: Optional[str] = None
    """``TEACHER:CLASS``: points that TEACHER labels CLASS keep TEACHER's pure feature (release: LSeg and "other")."""
    synthesizer: str = "rooms"
    """Which capability table is used: ``capability.<synthesizer>``."""


@dataclass
class FusedResult:
    """A fused per-point feature field.

    Attributes:
        features: float16 [N, C] (zero rows where ``mask`` is False).
        weights: float32 [N, T] per-point teacher weights (rows sum to 1 where ``mask``; 0 elsewhere).
        mask: bool [N] True where at least one teacher has a feature.
        teachers: teacher names in weight-column order.
    """

    features: torch.Tensor
    weights: torch.Tensor
    mask: torch.Tensor
    teachers: list[str] = field(default_factory=list)


def _check(feats: Sequence, masks: Sequence) -> tuple[int, int]:
    if not feats:
        raise SASInputError(None, "fusion needs at least one teacher's features")
    if len(feats) != len(masks):
        raise SASInputError(None, f"{len(feats)} feature tensors but {len(masks)} masks")
    n, c = feats[0].shape
    for i, (f, m) in enumerate(zip(feats, masks)):
        if tuple(f.shape) != (n, c):
            raise SASInputError(None, f"teacher {i}: features {list(f.shape)} differ from teacher 0's {[n, c]}")
        if tuple(m.shape) != (n,):
            raise SASInputError(None, f"teacher {i}: mask {list(m.shape)} does not match {n} points")
    return n, c


def _chunk(feats, masks, s, e, device):
    """float32 [T, n, C] features (zero where invalid or non-finite) and bool [T, n] validity of points s..e."""
    t, n, c = len(feats), e - s, feats[0].shape[1]
    f = torch.empty(t, n, c, device=device, dtype=torch.float32)
    v = torch.empty(t, n, device=device, dtype=torch.bool)
    for i, (x, m) in enumerate(zip(feats, masks)):
        f[i].copy_(torch.as_tensor(x[s:e]))
        v[i].copy_(torch.as_tensor(m[s:e]))
    torch.nan_to_num_(f, nan=0.0, posinf=0.0, neginf=0.0)
    f.mul_(v[..., None])
    return f, v


def _chunks(n: int, chunk: int, progress: bool, desc: str):
    starts = range(0, n, max(1, int(chunk)))
    if not progress:
        return starts
    from tqdm.auto import tqdm

    return tqdm(starts, desc=desc, unit="chunk", leave=False)


def _weighted_sum(a: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """sum_t a[:, t] * f[t]: [n, T] x [T, n, C] -> [n, C]."""
    out = f[0] * a[:, :1]
    for i in range(1, f.shape[0]):
        out.addcmul_(f[i], a[:, i:i + 1])
    return out


def fill_missing(capability) -> torch.Tensor:
    """float32 [T, K] capabilities with NaN entries replaced by the row's mean over known classes (0 if none)."""
    s = torch.as_tensor(np.asarray(capability, dtype=np.float64)).float()
    if s.ndim != 2:
        raise SASInputError(None, f"capability table must be [T, K], got {list(s.shape)}")
    known = ~torch.isnan(s)
    mean = torch.where(known, s, torch.zeros(())).sum(1) / known.sum(1).clamp_min(1)
    return torch.where(known, s, mean[:, None].expand_as(s))


def capability_weights(classes: torch.Tensor, valid: torch.Tensor, capability: torch.Tensor, tau: float,
                       weighting: str = "mean") -> torch.Tensor:
    """Eq. 6-8 weights. ``classes`` int64 [T, n] per-teacher argmax class, ``valid`` bool [T, n], ``capability``
    float [T, K]. Returns float32 [n, T] (rows of points without any valid teacher are zero)."""
    if weighting not in WEIGHTINGS:
        raise SASInputError(None, f"unknown weighting {weighting!r}; known: {', '.join(WEIGHTINGS)}")
    if not tau > 0:
        raise SASInputError(None, f"tau must be > 0, got {tau}")
    vf = valid.float()
    g = capability[:, classes.clamp_min(0)]                                  # [T_s, T_m, n] = S_s[k_m]
    nvalid = vf.sum(0)                                                       # [n]
    w = (g * vf[None]).sum(1) / nvalid.clamp_min(1)                          # [T_s, n] mean over voting teachers
    if weighting == "normalized":
        tot = (w * vf).sum(0, keepdim=True)
        w = torch.where(tot > 0, w / tot.clamp_min(1e-12), torch.full_like(w, 1.0 / max(w.shape[0], 1)))
    z = torch.where(valid, w.double() / float(tau), torch.full_like(w, -torch.inf, dtype=torch.float64))
    a = torch.softmax(z, dim=0)
    a = torch.where(nvalid[None] > 0, a, torch.zeros_like(a))
    return a.float().T.contiguous()


def capability_fuse(feats: Sequence, masks: Sequence, capability, text_emb, tau: float = 0.05,
                    catch_all: Optional[tuple[int, int]] = None, weighting: str = "mean",
                    teachers: Optional[list[str]] = None, device: str = "cpu", chunk: int = 65536,
                    progress: bool = False) -> FusedResult:
    """Capability-guided fusion (module docstring).

    Args:
        feats: per teacher float [N, C] fused 2D features (torch or numpy, float16 fine), all in one text space.
        masks: per teacher bool [N] points that teacher has a feature for.
        capability: float [T, K] capability table rows in ``feats`` order (NaN = unknown).
        text_emb: float [K, C] vocabulary text embeddings in the capability table's class order.
        tau: softmax temperature (release 0.05).
        catch_all: optional ``(teacher index, class index)``: points where that teacher votes that class keep its
            pure feature (the release does this for LSeg's "other").
        weighting: ``mean`` (paper, default) or ``normalized`` (release: divided by the sum over teachers).
        teachers: names stored in the result.
        device: torch device for the computation; results come back on the CPU.
        chunk: points per chunk (bounds memory to ``T x chunk x C`` floats).
        progress: show a tqdm bar over the chunks.
    """
    n, c = _check(feats, masks)
    t = len(feats)
    cap = fill_missing(capability).to(device)
    emb = torch.as_tensor(np.asarray(text_emb) if not isinstance(text_emb, torch.Tensor) else text_emb)
    emb = emb.to(device=device, dtype=torch.float32)
    if cap.shape[0] != t:
        raise SASInputError(None, f"capability table has {cap.shape[0]} teachers, {t} feature tensors given")
    if emb.ndim != 2 or emb.shape[0] != cap.shape[1] or emb.shape[1] != c:
        raise SASInputError(None, f"text embeddings {list(emb.shape)} do not match {cap.shape[1]} classes x {c} dims")
    if catch_all is not None and not (0 <= catch_all[0] < t and 0 <= catch_all[1] < cap.shape[1]):
        raise SASInputError(None, f"catch_all {catch_all} is outside {t} teachers x {cap.shape[1]} classes")
    emb = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)
    out = torch.zeros(n, c, dtype=torch.float16)
    weights = torch.zeros(n, t, dtype=torch.float32)
    mask = torch.zeros(n, dtype=torch.bool)
    for s in _chunks(n, chunk, progress, "capability fusion"):
        e = min(n, s + chunk)
        f, v = _chunk(feats, masks, s, e, device)
        cls = torch.matmul(f, emb.T).argmax(-1)                              # [T, n]
        a = capability_weights(cls, v, cap, tau, weighting)                  # [n, T]
        if catch_all is not None:
            ti, ki = catch_all
            hit = v[ti] & (cls[ti] == ki)
            a[hit] = 0.0
            a[hit, ti] = 1.0
        out[s:e] = _weighted_sum(a, f).to("cpu", torch.float16)
        weights[s:e] = a.cpu()
        mask[s:e] = v.any(0).cpu()
    return FusedResult(out, weights, mask, list(teachers or [f"teacher{i}" for i in range(t)]))


def linear_fuse(feats: Sequence, masks: Sequence, weights, teachers: Optional[list[str]] = None,
                device: str = "cpu", chunk: int = 65536, progress: bool = False) -> FusedResult:
    """Fixed global weights ``w`` [T] (>= 0): ``F = sum_t w_t F_t / sum_t w_t`` over the teachers valid at a point;
    where all valid teachers have weight 0, their plain mean."""
    n, c = _check(feats, masks)
    t = len(feats)
    w = torch.as_tensor(np.asarray(weights, dtype=np.float32)).to(device)
    if w.shape != (t,) or bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise SASInputError(None, f"linear weights must be {t} finite non-negative numbers, got {list(np.asarray(weights))}")
    out = torch.zeros(n, c, dtype=torch.float16)
    wout = torch.zeros(n, t, dtype=torch.float32)
    mask = torch.zeros(n, dtype=torch.bool)
    for s in _chunks(n, chunk, progress, "linear fusion"):
        e = min(n, s + chunk)
        f, v = _chunk(feats, masks, s, e, device)
        wv = v.float() * w[:, None]                                          # [T, n]
        den = wv.sum(0, keepdim=True)
        wv = torch.where(den > 0, wv, v.float())
        den = wv.sum(0, keepdim=True)
        a = (wv / den.clamp_min(1e-12)).T                                    # [n, T], zero rows where no teacher
        out[s:e] = _weighted_sum(a, f).to("cpu", torch.float16)
        wout[s:e] = a.cpu()
        mask[s:e] = v.any(0).cpu()
    return FusedResult(out, wout, mask, list(teachers or [f"teacher{i}" for i in range(t)]))


def add_fuse(feats: Sequence, masks: Sequence, teachers: Optional[list[str]] = None, device: str = "cpu",
             chunk: int = 65536, progress: bool = False) -> FusedResult:
    """The "Add" baseline: plain mean of the valid teachers' features at each point."""
    return linear_fuse(feats, masks, np.ones(len(feats), np.float32), teachers, device, chunk, progress)
