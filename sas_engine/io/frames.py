"""RGB-D frame lists shared by every layout: stride, invalid-pose skipping, lazy loading and resizing.

A loader describes each frame by a :class:`FrameSpec` (file paths, pose, intrinsics and the image size the
intrinsics refer to). :func:`frame_sequence` turns the specs into a lazily loaded
:class:`~sas_engine.scene.FrameSequence`; each access reads the files, checks them and resizes to the working size.

Resizing: colour bilinear, depth / label / instance images nearest neighbour. Intrinsics are rescaled with the
pixel-centre convention ``fx' = fx * sx``, ``cx' = (cx + 0.5) * sx - 0.5`` (same for y), so a 640x480 ScanNet
depth camera (cx = 319.5) maps to cx = 159.5 at 320x240.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import SASInputError
from ..scene import Frame, FrameSequence
from .files import image_size, pose_valid, read_color, read_depth, read_index_image

log = logging.getLogger(__name__)

ASPECT_TOLERANCE = 0.03
"""Relative aspect-ratio difference allowed between a depth and its colour image (ScanNet: 1296x968 vs 640x480)."""


@dataclass
class FrameSpec:
    """Where one frame's data lives.

    Attributes:
        frame_id: frame name in its source.
        color: colour image file.
        depth: depth image file (None for datasets without depth).
        pose: float64 [4, 4] camera-to-world, OpenCV convention.
        intrinsics: float64 [3, 3] for an image of ``intrinsics_size``.
        intrinsics_size: (width, height) the intrinsics refer to; None = the depth image's size (colour without depth).
        depth_scale: raw depth units per metre.
        depth_size: expected (width, height) of the depth image (the sequence's first depth), None = unchecked.
        label: optional per-pixel class image (uint8, 255 none) - synthetic ground truth.
        instance: optional per-pixel instance image (uint16, 0 none, id + 1 otherwise) - synthetic ground truth.
    """

    frame_id: str
    color: Path
    depth: Optional[Path]
    pose: np.ndarray
    intrinsics: np.ndarray
    intrinsics_size: Optional[tuple[int, int]] = None
    depth_scale: float = 1000.0
    depth_size: Optional[tuple[int, int]] = None
    label: Optional[Path] = None
    instance: Optional[Path] = None


def scale_intrinsics(K: np.ndarray, src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    """Rescale a 3x3 pinhole matrix from an image of size ``src`` (w, h) to ``dst`` (pixel-centre convention)."""
    K = np.array(K, dtype=np.float64)
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    K[0, 0] *= sx
    K[0, 1] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def resize_nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an [H, W, ...] array to ``size`` (w, h), sampling pixel centres."""
    w, h = size
    H, W = a.shape[:2]
    if (W, H) == (w, h):
        return a
    rows = np.minimum(((np.arange(h) + 0.5) * H / h).astype(np.int64), H - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * W / w).astype(np.int64), W - 1)
    return a[rows[:, None], cols[None, :]]


def resize_color(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of a uint8 [H, W, 3] image to ``size`` (w, h)."""
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize(tuple(size), Image.BILINEAR), dtype=np.uint8)


def load_frame(spec: FrameSpec, size: Optional[tuple[int, int]]) -> Frame:
    """Read one frame, check it and resize it to ``size`` (w, h; None = the depth's own size)."""
    color = read_color(spec.color)
    ch, cw = color.shape[:2]
    depth = None
    if spec.depth is not None:
        depth = read_depth(spec.depth, spec.depth_scale)
        dh, dw = depth.shape
        if spec.depth_size is not None and (dw, dh) != tuple(spec.depth_size):
            raise SASInputError(spec.depth, f"depth image is {dw}x{dh}, but the sequence's depth images are "
                                            f"{spec.depth_size[0]}x{spec.depth_size[1]}")
        if abs((dw / dh) / (cw / ch) - 1.0) > ASPECT_TOLERANCE:
            raise SASInputError(spec.depth, f"depth image is {dw}x{dh} but its colour image {spec.color.name} is "
                                            f"{cw}x{ch}: aspect ratios differ, they cannot be registered")
        ref = (dw, dh)
    else:
        ref = (cw, ch)
    size = tuple(size) if size is not None else ref
    K = scale_intrinsics(spec.intrinsics, spec.intrinsics_size or ref, size)
    gt_labels = gt_instances = None
    if spec.label is not None and spec.label.exists():
        lab = read_index_image(spec.label, "label image")
        _check_gt_aspect(spec.label, lab, cw, ch)
        gt_labels = resize_nearest(lab, size).astype(np.uint8)
    if spec.instance is not None and spec.instance.exists():
        ins = read_index_image(spec.instance, "instance image")
        _check_gt_aspect(spec.instance, ins, cw, ch)
        gt_instances = resize_nearest(ins, size).astype(np.int32) - 1
    return Frame(
        frame_id=spec.frame_id,
        color=resize_color(color, size),
        depth=None if depth is None else resize_nearest(depth, size).astype(np.float32),
        pose=np.array(spec.pose, dtype=np.float64),
        intrinsics=K,
        gt_labels=gt_labels,
        gt_instances=gt_instances,
    )


def _check_gt_aspect(p: Path, a: np.ndarray, cw: int, ch: int) -> None:
    h, w = a.shape
    if abs((w / h) / (cw / ch) - 1.0) > ASPECT_TOLERANCE:
        raise SASInputError(p, f"image is {w}x{h} but the colour image is {cw}x{ch}")


def select_frames(ids: Sequence[str], stride: int, pose_of, source: str) -> tuple[list[str], list[np.ndarray]]:
    """Every ``stride``-th id (in the given order) whose pose is valid.

    ``pose_of(id)`` reads a pose (raising on malformed files); frames with -inf/nan poses are skipped and
    their number is logged.
    """
    if stride < 1:
        raise SASInputError(None, f"frame stride must be >= 1, got {stride}")
    kept, poses, bad = [], [], []
    for fid in list(ids)[::stride]:
        pose = pose_of(fid)
        if pose_valid(pose):
            kept.append(fid)
            poses.append(pose)
        else:
            bad.append(fid)
    if bad:
        log.info("%s: skipped %d of %d frames with invalid (-inf/nan) poses (e.g. frame %s)", source, len(bad),
                 len(bad) + len(kept), bad[0])
    return kept, poses


def frame_sequence(specs: list[FrameSpec], size: Optional[tuple[int, int]]) -> FrameSequence:
    """Lazily loaded frames; the expected depth size is fixed by the first frame's depth image."""
    if specs and specs[0].depth is not None:
        dsize = image_size(specs[0].depth)
        for s in specs:
            if s.depth_size is None:
                s.depth_size = dsize
    seq = FrameSequence([s.frame_id for s in specs], lambda i: load_frame(specs[i], size),
                        digest=specs_digest(specs, size))
    seq.poses = np.stack([np.asarray(s.pose, dtype=np.float64) for s in specs]) if specs else None
    return seq


def specs_digest(specs: Sequence[FrameSpec], size: Optional[tuple[int, int]]) -> str:
    """Digest (16 hex digits) of what a frame list is made from, without reading images: per frame its id, the names,
    byte sizes and modification times of its files, its pose, intrinsics and depth scale; plus the working size.
    Folder locations are left out, so a capture that is moved with its files' times kept keeps its digest."""
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    h.update(repr(None if size is None else tuple(int(v) for v in size)).encode())
    for s in specs:
        parts = [s.frame_id, repr(s.intrinsics_size), repr(float(s.depth_scale))]
        for f in (s.color, s.depth, s.label, s.instance):
            if f is not None:
                st = Path(f).stat() if Path(f).exists() else None
                parts.append(f"{Path(f).name}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}")
        h.update("|".join(parts).encode() + b"\0")
        h.update(np.asarray(s.pose, dtype=np.float64).tobytes() + np.asarray(s.intrinsics, dtype=np.float64).tobytes())
    return h.hexdigest()

