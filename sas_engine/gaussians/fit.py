"""Fitting a scene's Gaussians to its RGB-D frames (held-out frames are never fitted).

The Gaussians start at the reconstruction's points (:func:`~.model.init_from_points`) and are optimised with Adam
on an L1 colour loss plus an L1 depth loss over the fitting frames, one random frame per step, rendered at
``width x height``. No densification or pruning: the reconstruction already covers the room.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..errors import SASInputError
from .model import Gaussians, init_from_points
from .raster import Camera, get_rasterizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GaussianFitConfig:
    """How a scene's Gaussians are made and fitted."""

    width: int = 160
    """Render width in pixels (fitting and evaluation; the frames are resized to it)."""
    height: int = 120
    """Render height in pixels."""
    holdout_every: int = 5
    """Every ``holdout_every``-th frame (frames 4, 9, 14... for 5) is held out: never fitted, never lifted from,
    used only for evaluation. 0 holds out nothing."""
    init_voxel: float = 0.05
    """One Gaussian per cell of this size (metres) of the reconstruction's points (0 = one per point); 0.05 gives
    about 20 k Gaussians for a 60 k-vertex room (0.03: 45 k, with twice the Gaussian-tile pairs per view)."""
    iterations: int = 100
    """Optimisation steps (one fitting frame each; 100 = 2.5 passes over a 50-frame room's 40 fitting frames,
    a CPU budget choice)."""
    max_scale: float = 0.2
    """Largest standard deviation (metres) a Gaussian may grow to (bounds the pixels, hence memory, per view)."""
    lr_means: float = 2e-4
    """Adam learning rate of the means, times the room's extent (its bounding-box diagonal, metres)."""
    lr_scales: float = 5e-3
    """Adam learning rate of the log-scales."""
    lr_quats: float = 1e-3
    """Adam learning rate of the quaternions."""
    lr_opacity: float = 5e-2
    """Adam learning rate of the opacity logits."""
    lr_color: float = 2e-2
    """Adam learning rate of the colour logits."""
    depth_weight: float = 0.5
    """Weight of the L1 depth loss (metres) against the L1 colour loss (0..1 units)."""
    tile: int = 16
    """Rasteriser tile edge (pixels)."""
    rasterizer: str = "torch"
    """``torch`` (pure PyTorch, any device) or ``gsplat`` (CUDA, needs the gsplat package)."""
    seed: int = 0
    """Seed of the frame order."""


def split_frames(num_frames: int, holdout_every: int) -> tuple[list[int], list[int]]:
    """(fitting frame indices, held-out frame indices): every ``holdout_every``-th frame is held out."""
    if holdout_every < 0 or holdout_every == 1:
        raise SASInputError(None, f"holdout_every must be 0 or >= 2, got {holdout_every}")
    if holdout_every == 0:
        return list(range(num_frames)), []
    held = [i for i in range(num_frames) if i % holdout_every == holdout_every - 1]
    fit = [i for i in range(num_frames) if i % holdout_every != holdout_every - 1]
    return fit, held


@dataclass
class View:
    """One frame resized to the render size: camera, colour float32 [H, W, 3] in 0..1, depth [H, W] (0 unknown),
    ground-truth labels uint8 [H, W] (255 none) when the frame has them."""

    index: int
    frame_id: str
    camera: Camera
    color: torch.Tensor
    depth: Optional[torch.Tensor]
    labels: Optional[np.ndarray]


def load_views(frames: Sequence, indices: Sequence[int], width: int, height: int) -> list[View]:
    """The frames ``indices`` of a scene as :class:`View` s at ``width x height`` (colour bilinear, depth and labels
    nearest, intrinsics rescaled with the pixel-centre convention)."""
    from ..io.frames import resize_color, resize_nearest, scale_intrinsics

    out = []
    for i in indices:
        f = frames[i]
        size = (width, height)
        K = scale_intrinsics(f.intrinsics, f.size, size)
        if not np.isfinite(np.asarray(f.pose, dtype=np.float64)).all():
            continue
        col = torch.from_numpy(resize_color(np.asarray(f.color), size).astype(np.float32) / 255.0)
        dep = None if f.depth is None else torch.from_numpy(resize_nearest(np.asarray(f.depth), size).astype(np.float32))
        lab = None if f.gt_labels is None else resize_nearest(np.asarray(f.gt_labels), size).astype(np.uint8)
        out.append(View(int(i), str(f.frame_id), Camera.from_pose(f.pose, K, width, height), col, dep, lab))
    return out


def render_gaussians(g: Gaussians, channels: torch.Tensor, cam: Camera, cfg: GaussianFitConfig,
                     background: Optional[torch.Tensor] = None):
    """Render ``channels`` [N, C] of the Gaussians ``g`` into ``cam`` with the configured rasteriser."""
    fn = get_rasterizer(cfg.rasterizer)
    kw = {"tile": cfg.tile} if cfg.rasterizer == "torch" else {}
    return fn(g.means, g.quats, g.scales, g.opacities, channels, cam, background=background, **kw)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-10))


def fit_gaussians(points: np.ndarray, colors: np.ndarray, views: Sequence[View], cfg: GaussianFitConfig,
                  device="cpu", progress: Optional[Callable[[int, int, float], None]] = None) -> tuple[Gaussians, dict]:
    """Initialise Gaussians at ``points`` and fit them to ``views``. Returns (Gaussians on the CPU, stats dict with
    ``seconds``, ``num_gaussians``, ``loss_first`` / ``loss_last`` (mean of the first / last 10 % of steps) and
    ``fit_psnr`` (mean PSNR of the fitting views after fitting)."""
    if not views:
        raise SASInputError(None, "no fitting views: the scene has no frames with valid poses left after holding out")
    t0 = time.perf_counter()
    g, _ = init_from_points(points, colors, cfg.init_voxel)
    g = Gaussians(**{k: v.to(device) for k, v in g.tensors().items()}).requires_grad_(True)
    ext = float(np.linalg.norm(np.ptp(np.asarray(points, dtype=np.float64), axis=0)))
    opt = torch.optim.Adam([
        {"params": [g.means], "lr": cfg.lr_means * ext},
        {"params": [g.log_scales], "lr": cfg.lr_scales},
        {"params": [g.quats], "lr": cfg.lr_quats},
        {"params": [g.opacity_logits], "lr": cfg.lr_opacity},
        {"params": [g.color_logits], "lr": cfg.lr_color},
    ], eps=1e-15)
    rng = np.random.default_rng(cfg.seed)
    order: list[int] = []
    losses = []
    for it in range(cfg.iterations):
        if not order:
            order = list(rng.permutation(len(views)))
        v = views[order.pop()]
        out = render_gaussians(g, g.colors, _to(v.camera, device), cfg)
        loss = (out.channels - v.color.to(device)).abs().mean()
        if cfg.depth_weight and v.depth is not None:
            d = v.depth.to(device)
            ok = d > 0
            if bool(ok.any()):
                loss = loss + cfg.depth_weight * (out.depth[ok] - d[ok]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            g.log_scales.clamp_(math.log(1e-4), math.log(cfg.max_scale))
        losses.append(loss.item())
        if progress is not None:
            progress(it + 1, cfg.iterations, losses[-1])
    g = g.detach()
    k = max(1, len(losses) // 10)
    with torch.no_grad():
        fit_psnr = float(np.mean([psnr(render_gaussians(g, g.colors, _to(v.camera, device), cfg).channels.cpu(),
                                       v.color) for v in views[:: max(1, len(views) // 8)]]))
    stats = {"seconds": round(time.perf_counter() - t0, 1), "num_gaussians": len(g),
             "loss_first": float(np.mean(losses[:k])) if losses else None,
             "loss_last": float(np.mean(losses[-k:])) if losses else None, "fit_psnr": round(fit_psnr, 2)}
    return Gaussians(**{k2: v.cpu() for k2, v in g.tensors().items()}), stats


def _to(cam: Camera, device) -> Camera:
    return Camera(cam.w2c.to(device), cam.K.to(device), cam.width, cam.height)
