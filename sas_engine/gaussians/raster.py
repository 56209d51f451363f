"""Differentiable rasterisation of 3D Gaussians: a pure-PyTorch tile rasteriser (CPU and any device) and an adapter
to gsplat's CUDA rasteriser (:func:`gsplat_render`, used only on CUDA when gsplat is installed).

Why a rasteriser of our own: gsplat 1.5.3 (on the package index, installs as a pure-Python wheel) has pure-PyTorch
reference versions of its projection and tile intersection, but its reference ``_rasterize_to_pixels`` calls the
CUDA kernel ``rasterize_to_indices_in_range`` (and nerfacc), so nothing in it renders without a GPU.

The torch path follows 3DGS / gsplat step by step (conventions: OpenCV camera, ``pose`` = camera-to-world):

1. EWA projection: camera coordinates ``p = R_w2c x + t``; the 3D covariance ``R S S^T R^T`` (quaternion ``R``,
   scales ``S``) is mapped with the perspective Jacobian ``J`` to ``J W Sigma W^T J^T + eps2d I`` (gsplat's
   low-pass ``eps2d`` = 0.3 px^2); pixel centre ``(fx x / z + cx, fy y / z + cy)``.
2. Tile binning: every Gaussian is listed in each ``tile x tile`` tile its square touches (half-side: where its
   alpha falls below 1/255, :func:`project`); the (tile, depth)
   pairs are sorted by tile, then front to back.
3. Compositing per tile, packed (no padding): ``alpha = min(0.99, o * exp(-d^T Sigma^-1 d / 2))`` (0 below 1/255, as
   gsplat), transmittance ``T`` as the exclusive segmented cumulative sum of ``log(1 - alpha)`` (float64), weights
   ``w = T alpha``, and channels ``sum w f`` per tile with one matrix product per tile.

Memory is ``pairs x tile^2`` floats per saved tensor (about 30 k pairs x 256 px for a 20 k-Gaussian room at 160 x 120).
Gradients reach means, scales, quaternions, opacities and the rendered channels through autograd.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import SASInputError

EPS2D = 0.3
"""Low-pass term added to the projected 2D covariance (px^2), as gsplat's ``eps2d``."""
ALPHA_MIN = 1.0 / 255.0
"""Alphas below this are dropped (gsplat / 3DGS)."""
ALPHA_MAX = 0.99
"""Alphas are clamped to this (keeps ``log(1 - alpha)`` finite)."""


@dataclass
class Camera:
    """A pinhole view.

    Attributes:
        w2c: float32 [4, 4] world-to-camera (OpenCV: x right, y down, z forward).
        K: float32 [3, 3] intrinsics of a ``width x height`` image.
        width, height: image size in pixels.
    """

    w2c: torch.Tensor
    K: torch.Tensor
    width: int
    height: int

    @classmethod
    def from_pose(cls, pose, K, width: int, height: int, device="cpu") -> "Camera":
        """Camera from a camera-to-world ``pose`` (4x4, float64 inverted) and intrinsics."""
        import numpy as np

        p = np.asarray(pose, dtype=np.float64)
        if p.shape != (4, 4) or not np.isfinite(p).all():
            raise SASInputError(None, f"camera pose must be a finite 4x4 matrix, got {list(p.shape)}")
        w2c = torch.as_tensor(np.linalg.inv(p), dtype=torch.float32, device=device)
        return cls(w2c, torch.as_tensor(np.asarray(K, dtype=np.float64)[:3, :3], dtype=torch.float32, device=device),
                   int(width), int(height))


@dataclass
class RenderOutput:
    """What :func:`render` returns (all [H, W, ...] on the Gaussians' device).

    Attributes:
        channels: float32 [H, W, C] alpha-composited per-Gaussian channels (+ background where alpha < 1).
        depth: float32 [H, W] expected depth sum(w z) (not normalised by alpha).
        alpha: float32 [H, W] accumulated opacity 1 - T.
        num_pairs: Gaussian-tile pairs composited (a size measure).
    """

    channels: torch.Tensor
    depth: torch.Tensor
    alpha: torch.Tensor
    num_pairs: int = 0


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """[N, 4] quaternions (w, x, y, z; normalised here) -> [N, 3, 3] rotation matrices."""
    q = torch.nn.functional.normalize(q, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(-1, 3, 3)


def project(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, cam: Camera, near: float = 0.05,
            opacities: Optional[torch.Tensor] = None):
    """EWA projection of Gaussians into ``cam``.

    Returns ``(idx, mean2d [n, 2], conic [n, 3] (a, b, c of the inverse covariance), depth [n], radius [n])`` for the
    ``n`` Gaussians in front of the camera whose square of half-side ``radius`` touches the image (``idx`` into the
    inputs). The radius is 3 sigma, or with ``opacities`` the distance at which the alpha falls below 1/255
    (``sigma sqrt(2 ln(255 o))``): every pixel with a non-zero alpha is then covered, whatever the tile size.
    """
    R, t = cam.w2c[:3, :3], cam.w2c[:3, 3]
    pc = means @ R.T + t
    z = pc[:, 2]
    fx, fy, cx, cy = cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2]
    front = z > near
    idx = torch.nonzero(front).squeeze(1)
    pc, z = pc[idx], z[idx]
    rot = quat_to_rotmat(quats[idx])
    m = rot * scales[idx].unsqueeze(1)                        # R S
    cov = m @ m.transpose(1, 2)                                # R S S^T R^T (world)
    cov_c = R @ cov @ R.T                                      # camera frame
    # clamp x/z, y/z to the field of view + 30 %, as 3DGS / gsplat do, so the Jacobian stays sane off screen
    tan_x, tan_y = 0.5 * cam.width / fx, 0.5 * cam.height / fy
    tx = z * (pc[:, 0] / z).clamp(-(cx / fx + 0.3 * tan_x), (cam.width - cx) / fx + 0.3 * tan_x)
    ty = z * (pc[:, 1] / z).clamp(-(cy / fy + 0.3 * tan_y), (cam.height - cy) / fy + 0.3 * tan_y)
    zero = torch.zeros_like(z)
    J = torch.stack([fx / z, zero, -fx * tx / (z * z), zero, fy / z, -fy * ty / (z * z)], -1).reshape(-1, 2, 3)
    c2 = J @ cov_c @ J.transpose(1, 2)
    a = c2[:, 0, 0] + EPS2D
    b = c2[:, 0, 1]
    c = c2[:, 1, 1] + EPS2D
    det = (a * c - b * b).clamp_min(1e-12)
    conic = torch.stack([c / det, -b / det, a / det], -1)
    mid = 0.5 * (a + c)
    lam = mid + torch.sqrt((mid * mid - det).clamp_min(0.1))
    k = 3.0 if opacities is None else torch.sqrt(2.0 * torch.log(255.0 * opacities[idx].detach()).clamp_min(0.0))
    radius = torch.ceil(k * torch.sqrt(lam)).detach()
    u = fx * pc[:, 0] / z + cx
    v = fy * pc[:, 1] / z + cy
    on = (u + radius > 0) & (u - radius < cam.width) & (v + radius > 0) & (v - radius < cam.height)
    on = on.detach()
    return idx[on], torch.stack([u, v], -1)[on], conic[on], z[on], radius[on]


def _tile_pairs(mean2d: torch.Tensor, radius: torch.Tensor, depth: torch.Tensor, tiles_x: int, tiles_y: int,
                tile: int):
    """(gaussian index [P], tile id [P]) of every Gaussian-tile overlap, sorted by tile then depth."""
    with torch.no_grad():
        u, v = mean2d[:, 0], mean2d[:, 1]
        x0 = ((u - radius) / tile).floor().clamp(0, tiles_x - 1).long()
        x1 = ((u + radius) / tile).floor().clamp(0, tiles_x - 1).long()
        y0 = ((v - radius) / tile).floor().clamp(0, tiles_y - 1).long()
        y1 = ((v + radius) / tile).floor().clamp(0, tiles_y - 1).long()
        nx, ny = x1 - x0 + 1, y1 - y0 + 1
        cnt = nx * ny
        g = torch.repeat_interleave(torch.arange(u.shape[0], device=u.device), cnt)
        start = torch.cumsum(cnt, 0) - cnt
        local = torch.arange(g.shape[0], device=u.device) - start[g]
        tx = x0[g] + local % nx[g]
        ty = y0[g] + local // nx[g]
        tid = ty * tiles_x + tx
        rank = torch.empty_like(depth, dtype=torch.long)
        rank[torch.argsort(depth)] = torch.arange(depth.shape[0], device=depth.device)
        order = torch.argsort(tid * u.shape[0] + rank[g])
        return g[order], tid[order]


def render(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
           channels: torch.Tensor, cam: Camera, *, background: Optional[torch.Tensor] = None, tile: int = 16,
           near: float = 0.05) -> RenderOutput:
    """Render per-Gaussian ``channels`` [N, C] (colours, features, class scores...) and depth into ``cam``.

    Args:
        means: float32 [N, 3] world positions; quats: [N, 4] (w, x, y, z); scales: [N, 3] standard deviations
            (metres, activated); opacities: [N] in (0, 1).
        channels: float32 [N, C] composited per pixel.
        cam: the view.
        background: optional [C] added with weight T (the transmittance left) at every pixel.
        tile: tile edge in pixels.
        near: Gaussians nearer than this (metres) are skipped.
    """
    n = means.shape[0]
    for name, t, shape in (("quats", quats, (n, 4)), ("scales", scales, (n, 3)), ("opacities", opacities, (n,))):
        if tuple(t.shape) != shape:
            raise SASInputError(None, f"render: {name} must be {list(shape)}, got {list(t.shape)}")
    if channels.ndim != 2 or channels.shape[0] != n:
        raise SASInputError(None, f"render: channels must be [{n}, C], got {list(channels.shape)}")
    W, H = int(cam.width), int(cam.height)
    C = channels.shape[1]
    dev = means.device
    tiles_x, tiles_y = (W + tile - 1) // tile, (H + tile - 1) // tile
    idx, mean2d, conic, depth, radius = project(means, quats, scales, cam, near, opacities)
    out = torch.zeros(tiles_y * tiles_x, tile * tile, C + 1, device=dev)
    trans = torch.ones(tiles_y * tiles_x, tile * tile, device=dev)
    pairs = 0
    if idx.numel():
        g, tid = _tile_pairs(mean2d, radius, depth, tiles_x, tiles_y, tile)
        pairs = int(g.numel())
        # pixel centres of each pair's tile [P, tile^2]
        ly, lx = torch.meshgrid(torch.arange(tile, device=dev), torch.arange(tile, device=dev), indexing="ij")
        lx, ly = lx.reshape(-1).float(), ly.reshape(-1).float()
        px = (tid % tiles_x).float()[:, None] * tile + lx[None]
        py = (tid // tiles_x).float()[:, None] * tile + ly[None]
        dx = px - mean2d[g, 0:1]
        dy = py - mean2d[g, 1:2]
        cg = conic[g]
        power = -0.5 * (cg[:, 0:1] * dx * dx + cg[:, 2:3] * dy * dy) - cg[:, 1:2] * dx * dy
        alpha = (opacities[idx][g][:, None] * torch.exp(power.clamp(max=0.0))).clamp(max=ALPHA_MAX)
        alpha = alpha * (alpha >= ALPHA_MIN).to(alpha.dtype)
        log1m = torch.log1p(-alpha.double())
        cs = torch.cumsum(log1m, 0)
        # exclusive cumulative sum within each tile's segment: subtract the sum before the segment starts
        counts = torch.bincount(tid, minlength=tiles_x * tiles_y)
        seg_start = torch.cumsum(counts, 0) - counts
        before = torch.cat([torch.zeros(1, tile * tile, dtype=cs.dtype, device=dev), cs], 0)[seg_start]  # [T, px]
        t_excl = torch.exp(cs - log1m - before[tid]).float()
        w = t_excl * alpha                                              # [P, px]
        vals = torch.cat([channels[idx][g], depth[g][:, None]], 1)        # [P, C + 1]
        sizes = counts.tolist()
        live = [ti for ti, k in enumerate(sizes) if k]
        # one split per operand (its backward is a single concatenation), one small matrix product per tile
        w_t = [x for x in torch.split(w, sizes) if x.shape[0]]
        v_t = [x for x in torch.split(vals, sizes) if x.shape[0]]
        blocks = torch.stack([a.T @ b for a, b in zip(w_t, v_t)])
        out = out.index_copy(0, torch.tensor(live, device=dev), blocks)
        ends = torch.cumsum(counts, 0).tolist()
        tile_sum = torch.zeros(tiles_x * tiles_y, tile * tile, dtype=cs.dtype, device=dev)
        last = torch.tensor([e - 1 for e in ends], device=dev)
        has = counts > 0
        tile_sum[has] = cs[last[has]] - before[has]
        trans = torch.exp(tile_sum).float()
    img = out.reshape(tiles_y, tiles_x, tile, tile, C + 1).permute(0, 2, 1, 3, 4).reshape(
        tiles_y * tile, tiles_x * tile, C + 1)[:H, :W]
    T = trans.reshape(tiles_y, tiles_x, tile, tile).permute(0, 2, 1, 3).reshape(tiles_y * tile, tiles_x * tile)[:H, :W]
    ch = img[..., :C]
    if background is not None:
        ch = ch + T[..., None] * background.to(ch)
    return RenderOutput(ch, img[..., C], 1.0 - T, pairs)


def gsplat_render(means, quats, scales, opacities, channels, cam: Camera, *, background=None) -> RenderOutput:
    """The same rendering through gsplat's CUDA rasteriser (``gsplat.rasterization``, render mode ``RGB+D``:
    channels + accumulated depth ``sum(w z)``, as the torch path). Needs CUDA tensors and ``pip install gsplat``
    (1.5.3 checked for the signature); never run on this project's CPU-only machines."""
    try:
        from gsplat import rasterization
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise SASInputError(None, "the gsplat rasteriser needs the gsplat package (pip install gsplat) and CUDA; "
                                  "use --fit.rasterizer torch on CPU") from e
    if means.device.type != "cuda":
        raise SASInputError(None, "the gsplat rasteriser runs on CUDA only; use --fit.rasterizer torch on CPU")
    bg = None if background is None else background[None].to(means)
    img, alpha, _ = rasterization(means, torch.nn.functional.normalize(quats, dim=-1), scales, opacities,
                                  channels, cam.w2c[None].to(means), cam.K[None].to(means), cam.width, cam.height,
                                  render_mode="RGB+D", backgrounds=bg, eps2d=EPS2D, near_plane=0.05)
    return RenderOutput(img[0, ..., :-1], img[0, ..., -1], alpha[0, ..., 0], 0)


RASTERIZERS = {"torch": render, "gsplat": gsplat_render}
"""Plain registry: rasteriser name -> function with :func:`render`'s signature (``gsplat`` needs CUDA)."""


def get_rasterizer(name: str):
    if name not in RASTERIZERS:
        raise SASInputError(None, f"unknown rasterizer {name!r}; known: {', '.join(RASTERIZERS)}")
    return RASTERIZERS[name]
