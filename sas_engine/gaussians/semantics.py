"""Semantics on Gaussians: lift teacher features onto the Gaussians by projection, fuse teachers with their
capabilities (SAS), distil a sparse 3D encoder for the Gaussians, render feature / class maps and label them.

* **Lifting** (:func:`lift_teacher`): the fitted Gaussians' centres are projected into the *fitting* frames with
  OpenScene's projection and depth test (:func:`sas_engine.geometry.fusion.fuse_features`); a Gaussian's feature is
  the mean teacher feature over the views that see it. Held-out frames are never read.
* **SAS fusion** (:func:`sas_fuse`): the lifted features of several teachers are combined per Gaussian with the
  capability table exactly as the points are (:func:`sas_engine.capability.capability_fuse`, the pipeline's ``tau``
  and weighting). A single teacher's lifted features are the Semantic Gaussians baseline.
* **Encoder** (:func:`distill_encoder`): a sparse 3D U-Net (the student's MinkUNet topology, narrow) reads the
  Gaussians' voxelised attributes (colour, opacity, size) and is trained with the plain cosine loss on the Gaussians
  that have a lifted feature (no superpoint or self-distillation losses: the paper "redistills a new 3D encoder
  tailored to Gaussians"). It predicts a feature for every Gaussian, seen or not. The compact teachers' features of
  one room share one dominant direction (cosine ~0.8 between any two), so a plain cosine loss is first met by that
  direction alone and the class information, in the deviations from it, comes late: on a tiny room, 60 steps reached
  loss 0.21 with every Gaussian given the same label. The encoder is therefore trained on the centred targets
  ``normalize(f - mu)`` (``mu``: the room's mean unit lifted feature) and its output mapped back as
  ``mu + m normalize(out)`` (``m``: the mean deviation length).
* **Rendering and labels** (:func:`render_labels`): a pixel's label is the argmax over the vocabulary of the cosine
  between its rendered feature ``F = sum_i w_i f_i`` (per-Gaussian features L2-normalised) and the text embeddings.
  ``F . t_k = sum_i w_i (f_i . t_k)`` and ``|F|`` does not depend on ``k``, so the argmax equals the argmax of the
  rendered per-Gaussian class cosines: K channels are rendered instead of C (20 vs 384), with identical labels
  (``tests/sas_engine/gaussians/test_gaussian_semantics.py`` checks this).
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import SASInputError
from .fit import GaussianFitConfig, View, render_gaussians
from .model import Gaussians

MISSING = -1
"""Rendered label of a pixel no Gaussian with a feature covers (a miss in the metrics)."""


def subset_scene(scene, indices: Sequence[int]):
    """A copy of ``scene`` whose frames are only ``indices`` (lazily loaded; its frames digest names the subset)."""
    from ..scene import FrameSequence, frames_digest

    idx = [int(i) for i in indices]
    frames = scene.frames
    base = frames_digest(frames)
    digest = hashlib.blake2b(f"{base}|{idx}".encode(), digest_size=8).hexdigest()
    all_ids = getattr(frames, "frame_ids", None)
    ids = [str(all_ids[i]) if all_ids is not None else str(getattr(frames[i], "frame_id", i)) for i in idx]
    seq = FrameSequence(ids, lambda k: frames[idx[k]], digest=digest)
    poses = getattr(frames, "poses", None)
    if poses is not None:
        seq.poses = np.asarray(poses)[idx]
    return dataclasses.replace(scene, frames=seq)


def lift_teacher(store, scene, means: np.ndarray, teacher, pcfg, fit_indices: Sequence[int],
                 progress: bool = False):
    """Teacher features lifted onto Gaussian centres ``means`` [G, 3] from the fitting frames only
    (:class:`~sas_engine.geometry.fusion.FusionResult`: features float16 [G, C], mask, view counts)."""
    from ..geometry import FusionConfig, fuse_features
    from ..pipeline import teacher_source

    sub = subset_scene(scene, fit_indices)
    source = teacher_source(store, sub, teacher, pcfg)
    return fuse_features(means, sub.frames, source, FusionConfig.from_preset(scene.dataset), device=pcfg.device,
                         progress=progress)


def sas_fuse(features: Sequence, masks: Sequence, names: Sequence[str], table, pcfg) -> dict:
    """Capability-guided fusion of lifted per-Gaussian features (the pipeline's ``fused.sas`` on Gaussians):
    ``{"features", "mask", "weights"}``."""
    from ..capability import capability_fuse
    from ..labels import PROMPT_SCENE
    from ..teachers import get_text_encoder

    text = get_text_encoder(pcfg.text_encoder, device=pcfg.device).encode(
        [PROMPT_SCENE.format(w) for w in table.prompt_words()])
    res = capability_fuse(list(features), list(masks), table.select(list(names)), text, tau=pcfg.tau,
                          weighting=pcfg.weighting, teachers=list(names), device=pcfg.device)
    return {"features": res.features, "mask": res.mask, "weights": res.weights}


@dataclass(frozen=True)
class GaussianEncoderConfig:
    """The 3D feature encoder distilled for a scene's Gaussians."""

    distill: bool = True
    """Train the encoder; False labels the Gaussians with the lifted features themselves (unseen ones unlabelled)."""
    voxel: float = 0.05
    """Voxel edge (metres) of the encoder's sparse grid; a voxel's input is the mean of its Gaussians' attributes."""
    steps: int = 50
    """Adam steps (one full-scene pass each; a CPU budget choice: on the tiny room the centred loss's label agreement
    with the lifted features rose from 0.53 at 20 steps to 0.76 at 50)."""
    lr: float = 3e-3
    """Adam learning rate."""
    width: int = 8
    """Channels of the U-Net's stem; stages use 1, 2, 4, 8, 4, 4, 3, 3 times this (one block per stage)."""
    seed: int = 0
    """Seed of the initial weights."""


def gaussian_attributes(g: Gaussians) -> torch.Tensor:
    """Per-Gaussian encoder input [G, 5]: RGB (0..1), opacity, log of the mean scale (+5, about 0..3)."""
    return torch.cat([g.colors, g.opacities[:, None], g.log_scales.mean(1, keepdim=True) + 5.0], 1).detach()


def build_encoder(cfg: GaussianEncoderConfig, out_channels: int):
    from ..models.mink_unet import MinkUNet, MinkUNetConfig

    w = int(cfg.width)
    if w < 1:
        raise SASInputError(None, f"encoder width must be >= 1, got {w}")
    return MinkUNet(MinkUNetConfig(init_dim=w, planes=(w, 2 * w, 4 * w, 8 * w, 4 * w, 4 * w, 3 * w, 3 * w),
                                   layers=(1,) * 8, in_channels=5, out_channels=int(out_channels), stem_kernel=3))


def distill_encoder(g: Gaussians, target: torch.Tensor, mask: torch.Tensor, cfg: GaussianEncoderConfig,
                    device="cpu") -> tuple[torch.Tensor, dict]:
    """Train an encoder on one scene's Gaussians to the lifted ``target`` [G, C] on ``mask`` [G] (cosine loss to the
    centred targets, module docstring, on the voxels holding one: the voxel mean of their Gaussians' targets).
    Returns (float16 [G, C] unit features for every Gaussian, stats: ``seconds``, ``voxels``, ``deviation`` (m),
    ``loss_first``, ``loss_last``)."""
    from ..distill.losses import cosine_loss
    from ..geometry.voxelize import voxelize
    from ..sparse import forward_points

    t0 = time.perf_counter()
    mask = torch.as_tensor(mask).bool()
    if not bool(mask.any()):
        raise SASInputError(None, "no Gaussian has a lifted feature: nothing to distil (no fitting frame sees them)")
    vox = voxelize(g.means.numpy(), cfg.voxel, order="input")
    coords = torch.as_tensor(np.asarray(vox.coords), dtype=torch.int32)
    inv = torch.as_tensor(np.asarray(vox.inverse), dtype=torch.int64)
    m = coords.shape[0]
    attr = gaussian_attributes(g)
    cnt = torch.zeros(m).index_add_(0, inv, torch.ones(len(inv)))
    x = torch.zeros(m, attr.shape[1]).index_add_(0, inv, attr) / cnt[:, None]
    unit = torch.nn.functional.normalize(target.float(), dim=-1)
    mu = unit[mask].mean(0)                                   # the scene's mean teacher direction
    mag = float((unit[mask] - mu).norm(dim=1).mean())         # typical deviation from it
    tgt = torch.nn.functional.normalize(unit - mu, dim=-1) * mask[:, None]
    t_sum = torch.zeros(m, tgt.shape[1]).index_add_(0, inv, tgt)
    has = torch.zeros(m).index_add_(0, inv, mask.float()) > 0
    torch.manual_seed(cfg.seed)
    net = build_encoder(cfg, tgt.shape[1]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    coords, x, t_sum, has = coords.to(device), x.to(device), t_sum.to(device), has.to(device)
    losses = []
    net.train()
    for _ in range(cfg.steps):
        out = forward_points(net, coords, x)
        loss = cosine_loss(out[has], t_sum[has])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    net.eval()
    with torch.no_grad():
        dev = torch.nn.functional.normalize(forward_points(net, coords, x)[inv.to(device)].float(), dim=-1)
        feats = mu.to(device) + mag * dev
    k = max(1, len(losses) // 10)
    stats = {"seconds": round(time.perf_counter() - t0, 1), "voxels": int(m), "deviation": round(mag, 4),
             "loss_first": float(np.mean(losses[:k])) if losses else None,
             "loss_last": float(np.mean(losses[-k:])) if losses else None}
    return torch.nn.functional.normalize(feats.float(), dim=-1).to(torch.float16).cpu(), stats


def class_scores(features: torch.Tensor, mask: Optional[torch.Tensor], text: torch.Tensor) -> torch.Tensor:
    """Per-Gaussian cosines [G, K] of the L2-normalised features with the text embeddings (0 rows where ``mask`` is
    False: such Gaussians occlude but vote for nothing)."""
    f = torch.nn.functional.normalize(torch.as_tensor(features).float(), dim=-1)
    t = torch.nn.functional.normalize(torch.as_tensor(text).float(), dim=-1)
    if f.shape[1] != t.shape[1]:
        raise SASInputError(None, f"features are {f.shape[1]}-d but the text embeddings {t.shape[1]}-d")
    s = f @ t.T
    if mask is not None:
        s = s * torch.as_tensor(mask).bool()[:, None]
    return s


@torch.no_grad()
def render_features(g: Gaussians, features: torch.Tensor, view_or_cam, cfg: GaussianFitConfig) -> torch.Tensor:
    """Rendered feature map [H, W, C] (per-Gaussian features L2-normalised, alpha-composited) at a view or camera."""
    cam = getattr(view_or_cam, "camera", view_or_cam)
    f = torch.nn.functional.normalize(torch.as_tensor(features).float(), dim=-1)
    return render_gaussians(g, f, cam, cfg).channels


@torch.no_grad()
def render_labels(g: Gaussians, scores: torch.Tensor, view_or_cam, cfg: GaussianFitConfig,
                  min_weight: float = 0.5) -> np.ndarray:
    """Labels int64 [H, W] of a rendered view: argmax of the rendered class cosines (= argmax of the text cosine
    of the rendered feature, module docstring); :data:`MISSING` where the Gaussians with a feature cover less than
    ``min_weight`` of the pixel."""
    cam = getattr(view_or_cam, "camera", view_or_cam)
    has = (scores.abs().sum(1) > 0).float()[:, None]
    out = render_gaussians(g, torch.cat([scores.float(), has], 1), cam, cfg)
    lab = out.channels[..., :-1].argmax(-1)
    lab[out.channels[..., -1] < min_weight] = MISSING
    return lab.numpy().astype(np.int64)


def view_confusion(pred: np.ndarray, view: View, num_classes: int) -> np.ndarray:
    """Confusion matrix [K, K + 1] of a rendered label map against the view's ground-truth labels."""
    from ..eval.metrics import confusion_matrix

    if view.labels is None:
        raise SASInputError(None, f"frame {view.frame_id} has no ground-truth label image to evaluate against")
    return confusion_matrix(pred.reshape(-1), view.labels.reshape(-1).astype(np.int64), num_classes)
