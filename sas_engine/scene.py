"""The in-memory scene model shared by every stage.

A :class:`Scene` is a point set (usually the vertices of a reconstructed mesh) with optional ground truth and the
RGB-D frames it was captured from. Loaders for every supported format produce this structure; nothing downstream
knows which format a scene came from.

Conventions:
    * points are float32 metres in a right-handed world frame, z up for indoor scans. ScanNet / Matterport /
      OpenScene files are z up as they are; custom captures and bare PLY files are moved into a z-up frame (floor
      at z = 0) by :func:`sas_engine.geometry.gravity.align_scene` when loaded (``load_scene(..., up=...)``, the
      ``--up`` option), and ``Scene.world_from_source`` keeps the transform so results can be exported back in the
      capture's own frame (:meth:`Scene.to_source_frame`);
    * ``pose`` is the 4x4 camera-to-world matrix, camera looks along +z, x right, y down (OpenCV / ScanNet);
    * ``intrinsics`` is 3x3 and matches the stored image size (loaders rescale it when resizing);
    * labels are indices into the scene's label set, 255 = ignore.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from .errors import SASInputError
from .labels import IGNORE


@dataclass
class Frame:
    """One RGB-D view.

    Attributes:
        frame_id: the frame's name in its source (e.g. ``"120"``).
        color: uint8 [H, W, 3] RGB.
        depth: float32 [H, W] metres, 0 where unknown; ``None`` for datasets without depth (nuScenes).
        pose: float64 [4, 4] camera-to-world.
        intrinsics: float64 [3, 3] pinhole matrix for this image size (fx, fy, cx, cy in pixels).
        gt_labels: optional uint8 [H, W] per-pixel class (synthetic world only; 255 = none). Never used by SAS itself.
        gt_instances: optional int32 [H, W] per-pixel instance id (synthetic world only; -1 = none).
    """

    frame_id: str
    color: np.ndarray
    depth: Optional[np.ndarray]
    pose: np.ndarray
    intrinsics: np.ndarray
    gt_labels: Optional[np.ndarray] = None
    gt_instances: Optional[np.ndarray] = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the colour image."""
        return int(self.color.shape[1]), int(self.color.shape[0])


class FrameSequence(Sequence[Frame]):
    """A lazily loaded list of frames: ``loader(i)`` reads frame ``i`` from disk only when it is accessed.

    Fusion and feature extraction iterate over it frame by frame, so memory stays bounded by one frame.
    """

    poses: Optional[np.ndarray] = None
    """float64 [F, 4, 4] camera-to-world poses when the loader knows them without reading images (set by
    :func:`sas_engine.io.frames.frame_sequence`); ``None`` = read them from the frames."""

    def __init__(self, frame_ids: Sequence[str], loader: Callable[[int], Frame], digest: Optional[str] = None):
        self.frame_ids = list(frame_ids)
        self._loader = loader
        self.digest = digest
        """Digest of what the frames are made from (files, poses, intrinsics, working size), set by the loader that
        knows them; :func:`frames_digest` reads every frame when it is ``None``."""

    def __len__(self) -> int:
        return len(self.frame_ids)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._loader(i)

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self._loader(i)


@dataclass
class Scene:
    """A 3D scene: points, optional mesh and ground truth, and the RGB-D frames that observed it.

    Attributes:
        scene_id: unique name, e.g. ``"scene0000_00"``.
        points: float32 [N, 3] metres.
        colors: uint8 [N, 3] RGB (zeros when the source has no colour, e.g. lidar).
        normals: optional float32 [N, 3] unit vertex normals.
        faces: optional int64 [F, 3] triangle vertex indices (mesh scenes).
        labels: optional uint8 [N] class index into ``label_set``, 255 = ignore.
        instances: optional int64 [N] instance id, -1 = none.
        superpoints: optional int64 [N] superpoint id per point (official segs.json or computed).
        frames: the RGB-D frames (eager list or :class:`FrameSequence`).
        label_set: name of the label set the labels index into.
        dataset: name of the dataset preset the scene belongs to.
        source: where the scene was loaded from (file or folder), for messages.
        world_from_source: optional float64 [4, 4] rigid transform from the coordinates of the source files to
            ``points`` (and to the frames' poses), set by gravity alignment; ``None`` = identity (the scene is in its
            source's own frame). Per-point data keep the source's point order either way.
    """

    scene_id: str
    points: np.ndarray
    colors: np.ndarray
    normals: Optional[np.ndarray] = None
    faces: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    instances: Optional[np.ndarray] = None
    superpoints: Optional[np.ndarray] = None
    frames: Sequence[Frame] = field(default_factory=list)
    label_set: str = "scannet20"
    dataset: str = "scannet"
    source: str = ""
    world_from_source: Optional[np.ndarray] = None

    def __post_init__(self):
        self.validate()

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def geometry_digest(self) -> str:
        """Digest of the point set in order (count + float32 coordinates): every per-point artefact records it, so a
        scene whose points changed or were reordered can never be paired with results computed on other points."""
        return geometry_digest(self.points)

    def validate(self) -> "Scene":
        """Check shapes and dtypes; raises :class:`SASInputError` naming ``source`` on any inconsistency."""
        src = self.source or self.scene_id
        p = np.asarray(self.points)
        if p.ndim != 2 or p.shape[1] != 3:
            raise SASInputError(src, f"points must be [N, 3], got {list(p.shape)}")
        if p.shape[0] == 0:
            raise SASInputError(src, "scene is empty (0 points)")
        if not np.isfinite(p).all():
            raise SASInputError(src, "points contain NaN or infinite coordinates")
        self.points = p.astype(np.float32, copy=False)
        n = p.shape[0]
        self.colors = _check(src, "colors", self.colors, (n, 3), np.uint8)
        if self.normals is not None:
            self.normals = _check(src, "normals", self.normals, (n, 3), np.float32)
        if self.labels is not None:
            self.labels = _check(src, "labels", self.labels, (n,), np.uint8)
        if self.instances is not None:
            self.instances = _check(src, "instances", self.instances, (n,), np.int64)
        if self.superpoints is not None:
            self.superpoints = _check(src, "superpoints", self.superpoints, (n,), np.int64)
        if self.faces is not None:
            f = np.asarray(self.faces)
            if f.ndim != 2 or f.shape[1] != 3:
                raise SASInputError(src, f"faces must be [F, 3], got {list(f.shape)}")
            if f.size and (f.min() < 0 or f.max() >= n):
                raise SASInputError(src, f"faces index vertices outside 0..{n - 1}")
            self.faces = f.astype(np.int64, copy=False)
        if self.world_from_source is not None:
            T = np.asarray(self.world_from_source, dtype=np.float64)
            if T.shape != (4, 4) or not np.isfinite(T).all():
                raise SASInputError(src, f"world_from_source must be a finite 4x4 matrix, got shape {list(T.shape)}")
            R = T[:3, :3]
            if (not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6) or not np.allclose(R @ R.T, np.eye(3), atol=1e-4)
                    or np.linalg.det(R) < 0):
                raise SASInputError(src, "world_from_source is not a rigid transform (rotation + translation)")
            self.world_from_source = T
        return self

    def to_source_frame(self, points: np.ndarray) -> np.ndarray:
        """Map [..., 3] coordinates of this scene's frame back to its source files' frame (inverse of
        ``world_from_source``); float64. Unchanged values (as float64) when the scene was not aligned."""
        p = np.asarray(points, dtype=np.float64)
        if self.world_from_source is None:
            return p.copy()
        T = np.asarray(self.world_from_source, dtype=np.float64)
        return (p - T[:3, 3]) @ T[:3, :3]

    def require_frames(self, what: str) -> None:
        """Raise a clear :class:`SASInputError` when the scene has no RGB-D frames (a bare mesh or point cloud):
        ``what`` (a 2D stage) cannot run on it."""
        if len(self.frames) == 0:
            raise SASInputError(self.source or self.scene_id,
                                f"has no RGB-D frames, so {what} cannot run (2D teachers need images); a scan "
                                "without frames gets the distilled 3D student's layer only (`sas infer`)")

    def classes_present(self) -> list[int]:
        """Sorted class indices that occur in ``labels`` (ignore excluded); empty without labels."""
        if self.labels is None:
            return []
        u = np.unique(self.labels)
        return [int(c) for c in u if c != IGNORE]


def frames_digest(frames: Sequence[Frame]) -> str:
    """Digest of a scene's frames (16 hex digits): the sequence's own ``digest`` when its loader set one (cheap: file
    stats, poses, intrinsics), else a hash of every frame's id, pose, intrinsics, colour and depth. Artefacts made from
    the frames (fused features, per-frame teacher outputs) record it, so new poses or images make them stale."""
    import hashlib

    d = getattr(frames, "digest", None)
    if d:
        return str(d)
    h = hashlib.blake2b(digest_size=8)
    for f in frames:
        h.update(str(f.frame_id).encode() + b"\0")
        for a in (f.pose, f.intrinsics, f.color, f.depth):
            if a is not None:
                h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def geometry_digest(points: np.ndarray) -> str:
    """``"<N>:<16 hex digits>"``: the point count and a blake2b hash of the float32 coordinates in order."""
    import hashlib

    p = np.ascontiguousarray(points, dtype=np.float32)
    return f"{p.shape[0]}:{hashlib.blake2b(p.tobytes(), digest_size=8).hexdigest()}"


def _check(src, name, arr, shape, dtype) -> np.ndarray:
    a = np.asarray(arr)
    if a.shape != shape:
        raise SASInputError(src, f"{name} has shape {list(a.shape)}, expected {list(shape)} (one per point)")
    if a.dtype != dtype:
        if dtype == np.uint8 and a.dtype.kind in "iu" and a.size and (a.min() < 0 or a.max() > 255):
            raise SASInputError(src, f"{name} values outside 0..255")
        a = a.astype(dtype)
    return a
