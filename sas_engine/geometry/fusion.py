"""Multi-view fusion: lift per-pixel 2D features (or labels) onto 3D points, OpenScene's way, vectorised in torch.

The projection and visibility test are exactly OpenScene's (``PointCloudToImageMapper.compute_mapping``):

* camera coordinates ``p = inverse(pose) @ [x, y, z, 1]`` (pose = camera-to-world, computed in float64);
* ``u = round(p_x * fx / p_z + cx)``, ``v = round(p_y * fy / p_z + cy)`` (round half to even, like ``np.round``);
* the pixel must lie at least ``cut_bound`` px inside the image: ``cut <= u < W - cut`` and ``cut <= v < H - cut``;
* with depth: ``|depth[v, u] - p_z| <= sigma * depth[v, u]`` (a pixel with depth 0 therefore never sees a point);
  without depth (nuScenes): only ``p_z > 0``.

The one deliberate difference: points with ``p_z <= 0`` are rejected in both modes. With depth, OpenScene's test
already rejects them for any ``sigma < 1``; rejecting them up front avoids dividing by zero.

A point's fused feature is the plain mean over the views that see it; points seen by no view get a zero row and
``mask = False`` (they are *masked*, never silently treated as zero features).

Feature maps may be smaller (or larger) than the depth image: pixel ``(u, v)`` of the ``W x H`` depth image reads
feature cell ``(floor(u * w / W), floor(v * h / H))`` of the ``w x h`` map, i.e. the cell that covers that pixel
when the map is stretched over the image. An optional per-pixel ``valid`` mask from the source marks cells without
a feature (e.g. pixels no mask covers): a projection onto such a cell does not count as a view of the point.

Memory is bounded by ``N x C``: frames are processed one at a time, only the points visible in a frame are gathered
(``[n_visible, C]``), and they are accumulated with ``index_add_`` into one float32 ``[N, C]`` buffer; the counts are
int32. The result is stored as float16.

Defaults (see :meth:`FusionConfig.from_preset`): OpenScene's code uses sigma = 0.25 for ScanNet / Replica and 0.02 for
Matterport; the SAS paper states 0.2 for ScanNet and 0.02 for Matterport. The project defaults to the code's values
(the SAS release fuses with OpenScene's scripts); ``from_preset(..., paper=True)`` gives the paper's. cut_bound is
10 px (5 for nuScenes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..config import DatasetPreset, get_preset
from ..errors import SASInputError

PAPER_SIGMA = {"scannet": 0.2, "matterport": 0.02}
"""Occlusion thresholds as printed in the SAS paper (appendix 6.1); presets carry OpenScene's code values."""


@dataclass(frozen=True)
class FusionConfig:
    """Projection and visibility parameters of multi-view fusion."""

    sigma: float = 0.25
    """Occlusion tolerance: a view sees a point when |depth - z| <= sigma * depth (OpenScene code 0.25 ScanNet, paper 0.2)."""
    cut_bound: int = 10
    """Pixels ignored along every image border (OpenScene: 10; nuScenes 5)."""
    use_depth: bool = True
    """Run the depth occlusion test; False for datasets without depth, where only z > 0 is required."""
    depth_min: float = 0.0
    """Depth readings <= this (metres) are treated as missing (0 = OpenScene's behaviour: only zero depth is missing)."""

    @classmethod
    def from_preset(cls, preset: Union[str, DatasetPreset], *, paper: bool = False) -> "FusionConfig":
        """Config of a dataset preset (name or :class:`DatasetPreset`).

        Args:
            preset: preset name (``scannet``, ``matterport``, ``nuscenes``, ``synthetic``) or preset object.
            paper: use the sigma printed in the SAS paper instead of OpenScene's code value where they differ.
        """
        p = get_preset(preset) if isinstance(preset, str) else preset
        sigma = PAPER_SIGMA.get(p.name, p.fusion_sigma) if paper else p.fusion_sigma
        return cls(sigma=float(sigma), cut_bound=int(p.cut_bound), use_depth=bool(p.use_depth))


@dataclass
class FusionResult:
    """Output of :func:`fuse_features` (CPU tensors).

    Attributes:
        features: float16 [N, C] mean feature over the views that see each point; zero rows where ``mask`` is False.
        mask: bool [N] True where at least one view saw the point.
        view_count: int32 [N] number of views that saw the point.
        votes: optional int32 [N, K] per-class counts of per-view labels (when ``vote_fn`` was given).
        frames_used: number of frames with a valid pose that were projected.
        frames_skipped: frame indices skipped because their pose was not finite (ScanNet has some).
    """

    features: torch.Tensor
    mask: torch.Tensor
    view_count: torch.Tensor
    votes: Optional[torch.Tensor] = None
    frames_used: int = 0
    frames_skipped: tuple = ()


FeatureSource = Callable[[int, object], tuple]
"""``source(i, frame) -> (feat [h, w, C], valid bool [h, w] | None)``; tensors or numpy arrays, or an
:class:`IndexedFeatureMap` for ``feat``."""


@dataclass(frozen=True)
class IndexedFeatureMap:
    """A feature map kept as an id map into a table of features (a mask teacher's segments and their embeddings):
    pixel ``(r, c)`` has ``table[ids[r, c]]``. :func:`fuse_features` samples it without expanding it to
    ``[h, w, C]`` (for the compact mask teacher a 240 x 320 x 384 map per frame, most of it never sampled); pixels
    with ``ids < 0`` must be marked invalid by the source's ``valid`` map."""

    ids: torch.Tensor
    """int [h, w] row of ``table`` per pixel (-1: none)."""
    table: torch.Tensor
    """[S, C] features."""


@dataclass
class FrameProjection:
    """Points visible in one frame.

    Attributes:
        point_idx: int64 [n] indices of the visible points.
        u: int64 [n] pixel column in the depth image; ``v``: int64 [n] pixel row.
        size: (W, H) of the image the pixels refer to.
    """

    point_idx: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    size: tuple


def as_points(points, device="cpu") -> torch.Tensor:
    """Validate ``[N, 3]`` points (numpy or torch) and return them as float64 on ``device``."""
    t = torch.as_tensor(np.asarray(points) if not isinstance(points, torch.Tensor) else points)
    if t.ndim != 2 or t.shape[1] != 3:
        raise SASInputError(None, f"points must be [N, 3], got {list(t.shape)}")
    t = t.to(device=device, dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise SASInputError(None, "points contain NaN or infinite coordinates")
    return t


def _frame_geometry(frame, cfg: FusionConfig, device):
    """(pose float64 [4,4] numpy, intrinsics [3,3] numpy, depth tensor | None, (W, H)) of a frame, validated."""
    fid = getattr(frame, "frame_id", "?")
    pose = np.asarray(frame.pose, dtype=np.float64)
    K = np.asarray(frame.intrinsics, dtype=np.float64)
    if pose.shape != (4, 4):
        raise SASInputError(None, f"frame {fid}: pose must be 4x4, got {list(pose.shape)}")
    if K.shape[0] < 2 or K.shape[1] < 3:
        raise SASInputError(None, f"frame {fid}: intrinsics must be 3x3, got {list(K.shape)}")
    depth = None
    if cfg.use_depth:
        if frame.depth is None:
            raise SASInputError(None, f"frame {fid} has no depth but the fusion config requires it (use_depth=True)")
        d = np.asarray(frame.depth)
        if d.ndim != 2:
            raise SASInputError(None, f"frame {fid}: depth must be [H, W], got {list(d.shape)}")
        depth = torch.as_tensor(d).to(device=device, dtype=torch.float64)
        H, W = d.shape
    else:
        H, W = int(np.asarray(frame.color).shape[0]), int(np.asarray(frame.color).shape[1])
    return pose, K, depth, (W, H)


def project_frame(points: torch.Tensor, pose, intrinsics, size, depth: Optional[torch.Tensor],
                  cfg: FusionConfig, points_t: Optional[torch.Tensor] = None) -> FrameProjection:
    """OpenScene's projection + visibility test for one view (see the module docstring).

    Args:
        points: float64 [N, 3] world points (from :func:`as_points`), on the working device.
        pose: float64 [4, 4] camera-to-world.
        intrinsics: [3, 3] pinhole matrix of the ``size`` image.
        size: (W, H) of the image (the depth image when depth is used).
        depth: float64 [H, W] metres (0 = unknown) or ``None`` for the no-depth mode.
        cfg: the fusion config (``use_depth`` False ignores ``depth``).
        points_t: optional contiguous ``points.T`` ([3, N]) reused across frames (faster matrix product).
    """
    W, H = int(size[0]), int(size[1])
    w2c = torch.as_tensor(np.linalg.inv(np.asarray(pose, dtype=np.float64)), device=points.device)
    pt = points_t if points_t is not None else points.T
    pc = torch.addmm(w2c[:3, 3:4], w2c[:3, :3], pt)  # [3, N] camera coordinates, rows contiguous
    z = pc[2]
    ok = z > 0  # points at or behind the camera are rejected (their u, v may be inf / NaN: never selected)
    K = intrinsics
    u = pc[0].mul_(float(K[0][0])).div_(z).add_(float(K[0][2])).round_()  # in place: same arithmetic order
    v = pc[1].mul_(float(K[1][1])).div_(z).add_(float(K[1][2])).round_()  # as OpenScene, fewer temporaries
    cut = int(cfg.cut_bound)
    ok &= u >= cut
    ok &= v >= cut
    ok &= u < W - cut
    ok &= v < H - cut
    idx = torch.nonzero(ok).squeeze(1)
    ui = u[idx].long()
    vi = v[idx].long()
    if cfg.use_depth and depth is not None and idx.numel():
        d = depth[vi, ui]
        keep = ((d - z[idx]).abs() <= cfg.sigma * d) & (d > cfg.depth_min)
        idx, ui, vi = idx[keep], ui[keep], vi[keep]
    return FrameProjection(idx, ui, vi, (W, H))


def feature_cells(proj: FrameProjection, feat_hw) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature-map cells (row, col) read for each visible pixel: ``(floor(v*h/H), floor(u*w/W))``."""
    h, w = int(feat_hw[0]), int(feat_hw[1])
    W, H = proj.size
    if (h, w) == (H, W):
        return proj.v, proj.u
    return (proj.v * h) // H, (proj.u * w) // W


def _as_tensor(x, device) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device)


def iter_projections(points, frames: Sequence, cfg: FusionConfig, device="cpu", progress: bool = True,
                     desc: str = "fusion"):
    """Yield ``(i, frame, FrameProjection | None)`` per frame; ``None`` marks a frame whose pose is not finite.

    Frames are read one by one (lazy :class:`~sas_engine.scene.FrameSequence` friendly), so memory stays bounded.
    """
    from tqdm.auto import tqdm

    pts = points if isinstance(points, torch.Tensor) and points.dtype == torch.float64 else as_points(points, device)
    pts_t = pts.T.contiguous()
    for i in tqdm(range(len(frames)), desc=desc, disable=not progress, leave=False):
        frame = frames[i]
        if not np.isfinite(np.asarray(frame.pose, dtype=np.float64)).all():
            yield i, frame, None
            continue
        pose, K, depth, size = _frame_geometry(frame, cfg, pts.device)
        yield i, frame, project_frame(pts, pose, K, size, depth, cfg, pts_t)


def fuse_features(points, frames: Sequence, source: FeatureSource, cfg: Optional[FusionConfig] = None,
                  device="cpu", *, channels: Optional[int] = None,
                  vote_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, num_classes: int = 0,
                  progress: bool = True) -> FusionResult:
    """Mean of per-pixel features over the views that see each point (OpenScene's fusion, streamed over frames).

    Args:
        points: float [N, 3] world coordinates (numpy or torch).
        frames: sequence of :class:`~sas_engine.scene.Frame` (pose, intrinsics, depth); read one at a time.
        source: ``source(i, frame) -> (feat [h, w, C], valid bool [h, w] | None)``. Called only for frames in which
            at least one point projects. ``feat`` may be float16/float32, numpy or torch, any ``h, w``.
        cfg: projection parameters (default :class:`FusionConfig` = ScanNet's).
        device: torch device for all computation (``"cpu"`` or ``"cuda"``); results are returned on the CPU.
        channels: C, needed only to shape the output when no frame sees any point (else ``[N, 0]``).
        vote_fn: optional ``vote_fn(feat [n, C] float32) -> int64 [n]`` class per sampled feature (e.g. argmax
            against text embeddings); the per-point per-class counts come back in ``FusionResult.votes``.
            Labels outside ``0..num_classes-1`` are not counted.
        num_classes: K for ``vote_fn``.
        progress: show a tqdm bar over frames.
    """
    cfg = cfg or FusionConfig()
    device = torch.device(device)
    pts = as_points(points, device)
    n = pts.shape[0]
    count = torch.zeros(n, dtype=torch.int32, device=device)
    acc = None
    votes = None
    if vote_fn is not None:
        if num_classes <= 0:
            raise SASInputError(None, "fuse_features: vote_fn needs num_classes > 0")
        votes = torch.zeros(n * num_classes, dtype=torch.int32, device=device)
    used, skipped = 0, []
    for i, frame, proj in iter_projections(pts, frames, cfg, device, progress):
        if proj is None:
            skipped.append(i)
            continue
        used += 1
        if proj.point_idx.numel() == 0:
            continue
        fid = getattr(frame, "frame_id", i)
        out = source(i, frame)
        feat, valid = (out if isinstance(out, tuple) else (out, None))
        if isinstance(feat, IndexedFeatureMap):
            ids, table = _as_tensor(feat.ids, device).long(), _as_tensor(feat.table, device)
            if ids.ndim != 2 or table.ndim != 2:
                raise SASInputError(None, f"frame {fid}: indexed feature map needs ids [h, w] and a table [S, C], "
                                          f"got {list(ids.shape)} and {list(table.shape)}")
            shape = (ids.shape[0], ids.shape[1], table.shape[1])
        else:
            feat = _as_tensor(feat, device)
            ids = table = None
            if feat.ndim != 3:
                raise SASInputError(None, f"frame {fid}: feature map must be [h, w, C], got {list(feat.shape)}")
            shape = tuple(feat.shape)
        rows, cols = feature_cells(proj, shape[:2])
        idx = proj.point_idx
        if valid is not None:
            valid = _as_tensor(valid, device)
            if tuple(valid.shape) != shape[:2]:
                raise SASInputError(None, f"frame {fid}: valid mask {list(valid.shape)} does not match the feature "
                                          f"map {list(shape[:2])}")
            keep = valid[rows, cols].bool()
            idx, rows, cols = idx[keep], rows[keep], cols[keep]
            if idx.numel() == 0:
                continue
        if acc is None:
            acc = torch.zeros(n, shape[2], dtype=torch.float32, device=device)
        elif shape[2] != acc.shape[1]:
            raise SASInputError(None, f"frame {fid}: feature map has {shape[2]} channels, earlier frames "
                                      f"{acc.shape[1]}")
        if ids is not None:  # the id of each sampled pixel, then its row of the table
            sampled = table.index_select(0, ids.reshape(-1).index_select(0, rows * shape[1] + cols).clamp(min=0))
        elif feat.is_contiguous():
            sampled = feat.view(-1, feat.shape[2]).index_select(0, rows * feat.shape[1] + cols)
        else:
            sampled = feat[rows, cols]
        sampled = sampled.to(torch.float32)
        acc.index_add_(0, idx, sampled)
        count.index_add_(0, idx, torch.ones_like(idx, dtype=torch.int32))
        if votes is not None:
            _add_votes(votes, idx, vote_fn(sampled), num_classes)
    mask = count > 0
    if acc is None:
        acc = torch.zeros(n, int(channels or 0), dtype=torch.float32, device=device)
    features = torch.empty(acc.shape, dtype=torch.float16, device=device)
    inv = 1.0 / count.clamp(min=1).to(torch.float32).unsqueeze(1)
    step = 1 << 14
    for s in range(0, n, step):  # mean in place then cast, chunk by chunk (cache friendly, no N x C temporary)
        chunk = acc[s:s + step]
        features[s:s + step].copy_(chunk.mul_(inv[s:s + step]))
    del acc
    return FusionResult(
        features=features.cpu(), mask=mask.cpu(), view_count=count.cpu(),
        votes=None if votes is None else votes.view(n, num_classes).cpu(),
        frames_used=used, frames_skipped=tuple(skipped))


def _add_votes(votes: torch.Tensor, idx: torch.Tensor, labels, num_classes: int) -> None:
    lab = torch.as_tensor(labels, device=idx.device).long().reshape(-1)
    if lab.shape[0] != idx.shape[0]:
        raise SASInputError(None, f"vote labels: expected {idx.shape[0]} labels, got {lab.shape[0]}")
    ok = (lab >= 0) & (lab < num_classes)
    flat = idx[ok] * num_classes + lab[ok]
    votes.index_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))


def fuse_votes(points, frames: Sequence, label_source: Callable, num_classes: int,
               cfg: Optional[FusionConfig] = None, device="cpu", *, progress: bool = True) -> torch.Tensor:
    """Per-point per-class counts of per-view labels: int32 [N, K] (CPU).

    Args:
        points: float [N, 3].
        frames: the views (as for :func:`fuse_features`).
        label_source: ``label_source(i, frame) -> labels [h, w]`` (int) or ``(labels, valid [h, w] | None)``;
            labels outside ``0..K-1`` (e.g. 255) are not counted; invalid cells are not counted either.
            Label maps smaller than the image are sampled like feature maps.
        num_classes: K.
        cfg: projection parameters; device: torch device for the computation.
    """
    if num_classes <= 0:
        raise SASInputError(None, "fuse_votes: num_classes must be > 0")
    cfg = cfg or FusionConfig()
    device = torch.device(device)
    pts = as_points(points, device)
    n = pts.shape[0]
    votes = torch.zeros(n * num_classes, dtype=torch.int32, device=device)
    for i, frame, proj in iter_projections(pts, frames, cfg, device, progress, desc="votes"):
        if proj is None or proj.point_idx.numel() == 0:
            continue
        fid = getattr(frame, "frame_id", i)
        out = label_source(i, frame)
        lab, valid = (out if isinstance(out, tuple) else (out, None))
        lab = _as_tensor(lab, device)
        if lab.ndim != 2:
            raise SASInputError(None, f"frame {fid}: label map must be [h, w], got {list(lab.shape)}")
        rows, cols = feature_cells(proj, lab.shape)
        idx = proj.point_idx
        if valid is not None:
            valid = _as_tensor(valid, device)
            if tuple(valid.shape) != tuple(lab.shape):
                raise SASInputError(None, f"frame {fid}: valid mask {list(valid.shape)} does not match the label "
                                          f"map {list(lab.shape)}")
            keep = valid[rows, cols].bool()
            idx, rows, cols = idx[keep], rows[keep], cols[keep]
        _add_votes(votes, idx, lab[rows, cols], num_classes)
    return votes.view(n, num_classes).cpu()


def one_hot_source(label_fn: Callable, num_classes: int) -> FeatureSource:
    """Wrap a per-frame label map source into a one-hot feature source (``valid`` = label in ``0..K-1``).

    Fusing one-hot labels gives per-point class frequencies; used to check fusion against ground-truth label images.
    """
    eye = torch.eye(num_classes, dtype=torch.float32)

    def source(i, frame):
        lab = torch.as_tensor(np.asarray(label_fn(i, frame))).long()
        valid = (lab >= 0) & (lab < num_classes)
        return eye[lab.clamp(0, num_classes - 1)], valid
    return source
