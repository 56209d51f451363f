"""OpenScene's preprocessed layout: ScanNet, Matterport3D and nuScenes ``.pth`` scenes, their 2D frames and the
fused-feature ``.pt`` files.

3D (``<data>/<ds>_3d/<split>/<scene>.pth``): ``torch.save((coords, colors, labels))``, coords float [N, 3] metres,
colors float [N, 3] in [-1, 1] (nuScenes: the scalar 0, no colour), labels float with 0..K-1 and 255 (or -100) =
ignore. ``<ds>`` is ``scannet`` (ScanNet-20), ``matterport`` (21 classes; ``matterport_3d_40/80/160`` hold the
K-class variants) or ``nuscenes`` (16 classes).

2D, next to the 3D folder:

* ScanNet ``scannet_2d/<scene>/{color,depth,pose}/<i>.{jpg,png,txt}`` (every 20th frame already, 320x240, depth mm);
  intrinsics from ``scannet_2d/<scene>/intrinsics.txt`` or ``scannet_2d/intrinsics.txt`` (3x3/4x4) when present,
  else OpenScene's constants fx = fy = 577.870605, cx = 319.5, cy = 239.5. Those refer to 640x480; the image size an
  intrinsics file refers to is taken as (2 cx + 1, 2 cy + 1) (principal point at the centre) and rescaled to the
  images. Default stride 1 (the export already keeps every 20th frame).
* Matterport ``matterport_2d/<building>/{color,depth,pose,intrinsic}/<name>``: colour ``<x>_i<a>_<b>.jpg``, depth
  ``<x>_d<a>_<b>.png`` (depth scale 4000), per-image 3x3 intrinsics for the stored image size. As in OpenScene, a
  region uses the building's views whose camera centre lies inside the region's bounding box (the nearest 100 when
  none does).
* nuScenes ``nuscenes_2d/<split>/<scene>/{color,pose,K}/<cam>.{jpg,npy}``: six cameras, no depth, ``K`` for the
  stored 800x450 image, ``pose`` camera-to-world.

Torch files are read with ``weights_only=True`` (plain numpy arrays allowed, see :func:`~.files.torch_load`).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import get_preset
from ..errors import SASInputError
from ..labels import IGNORE, get_label_set
from ..scene import Scene
from .files import natural_key, read_intrinsics, read_matrix, read_pose, require_file, to_numpy, torch_load
from .frames import FrameSpec, frame_sequence, select_frames

log = logging.getLogger(__name__)

SCANNET_2D_K = np.array([[577.870605, 0.0, 319.5], [0.0, 577.870605, 239.5], [0.0, 0.0, 1.0]])
"""OpenScene's ScanNet depth-camera intrinsics at 640x480."""
MATTERPORT_NEAREST = 100
_DS_DIR = re.compile(r"^(scannet|matterport|nuscenes)_3d(?:_(\d+))?$")


def openscene_dataset(path: Path) -> Optional[tuple[str, str]]:
    """(preset name, label set name) from a ``<ds>_3d[_K]/<split>/<scene>.pth`` path, or None."""
    for d in (path.parent.parent, path.parent):
        m = _DS_DIR.match(d.name)
        if m:
            ds, k = m.group(1), m.group(2)
            if ds == "matterport" and k:
                return "matterport", f"matterport{k}"
            return ds, get_preset(ds).label_set
    return None


def read_openscene_pth(path: str | Path, trust_pickle: Optional[bool] = None) -> dict:
    """The raw tuple of an OpenScene 3D ``.pth``: ``{"points" float32 [N,3], "colors" uint8 [N,3] | None,
    "labels" int64 [N] | None}`` (labels as stored, -100 already turned into 255)."""
    p = require_file(path, "OpenScene scene file")
    obj = torch_load(p, trust_pickle, "OpenScene scene file")
    if not isinstance(obj, (tuple, list)) or len(obj) < 2:
        raise SASInputError(p, f"expected a (coords, colors, labels) tuple, got {type(obj).__name__}")
    pts = to_numpy(obj[0], p, "coords")
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise SASInputError(p, f"coords must be [N, 3], got {list(pts.shape)}")
    n = len(pts)
    colors = None
    c = obj[1]
    if not (np.isscalar(c) or getattr(c, "ndim", 1) == 0):
        c = to_numpy(c, p, "colors").astype(np.float32)
        if c.shape != (n, 3):
            raise SASInputError(p, f"colors must be [N, 3] like coords ({n}), got {list(c.shape)}")
        if c.size and c.min() >= -1.001 and c.max() <= 1.001:
            c = (c + 1.0) * 127.5  # OpenScene stores rgb / 127.5 - 1
        colors = np.clip(np.round(c), 0, 255).astype(np.uint8)
    labels = None
    if len(obj) > 2 and obj[2] is not None:
        lab = to_numpy(obj[2], p, "labels")
        if lab.shape != (n,):
            raise SASInputError(p, f"labels must be [N] like coords ({n}), got {list(lab.shape)}")
        lab = np.where(np.isfinite(lab), lab, IGNORE).astype(np.int64)
        lab[lab < 0] = IGNORE
        labels = lab
    return {"points": pts.astype(np.float32), "colors": colors, "labels": labels}


def load_openscene_pth(path: str | Path, dataset: Optional[str] = None, *, frame_stride: Optional[int] = None,
                       image_size: Optional[tuple[int, int]] = None, trust_pickle: Optional[bool] = None) -> Scene:
    """Load an OpenScene ``.pth`` scene plus its 2D frames (when the sibling ``<ds>_2d`` folder exists)."""
    p = Path(path)
    raw = read_openscene_pth(p, trust_pickle)
    det = openscene_dataset(p)
    if dataset is None:
        if det is None:
            dataset = "nuscenes" if raw["colors"] is None else "scannet"
            log.info("%s: not under <ds>_3d/<split>/, assuming the %s preset", p, dataset)
        else:
            dataset = det[0]
    preset = get_preset(dataset)
    label_set = det[1] if det is not None and det[0] == dataset else preset.label_set
    n = len(raw["points"])
    if n == 0:
        raise SASInputError(p, "scene is empty (0 points)")
    labels = raw["labels"]
    if labels is not None:
        k = len(get_label_set(label_set))
        bad = (labels >= k) & (labels != IGNORE)
        if bad.any():
            log.warning("%s: %d labels outside 0..%d treated as ignore", p, int(bad.sum()), k - 1)
            labels = np.where(bad, IGNORE, labels)
        labels = labels.astype(np.uint8)
    colors = raw["colors"] if raw["colors"] is not None else np.zeros((n, 3), np.uint8)
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    scene_id = stem.split("_vh")[0] if preset.name == "scannet" else stem
    size = tuple(image_size or preset.image_size)
    if preset.name == "matterport":
        specs = _matterport_specs(p, scene_id, raw["points"], preset.depth_scale)
        stride = frame_stride or preset.frame_stride
        specs = specs[::stride]
    elif preset.name == "nuscenes":
        specs = _nuscenes_specs(p, scene_id)[:: frame_stride or 1]
    else:
        specs = _scannet2d_specs(p, scene_id, frame_stride or 1, preset.depth_scale)
    frames = frame_sequence(specs, size) if specs else []
    return Scene(scene_id=scene_id, points=raw["points"], colors=colors, labels=labels, frames=frames,
                 label_set=label_set, dataset=preset.name, source=str(p))


def _data_root(p: Path) -> Path:
    """``<data>`` of ``<data>/<ds>_3d/<split>/<scene>.pth``."""
    return p.parent.parent.parent


def _scannet2d_specs(p: Path, scene_id: str, stride: int, depth_scale: float) -> list[FrameSpec]:
    d = _data_root(p) / "scannet_2d" / scene_id
    if not (d / "color").is_dir():
        log.info("%s: no 2D frames at %s", p, d)
        return []
    K = SCANNET_2D_K
    for kp in (d / "intrinsics.txt", d.parent / "intrinsics.txt"):
        if kp.is_file():
            K = read_intrinsics(kp)
            break
    ksize = (int(round(2 * (K[0, 2] + 0.5))), int(round(2 * (K[1, 2] + 0.5))))
    colors = {c.stem: c for c in (d / "color").iterdir() if c.suffix.lower() in (".jpg", ".jpeg", ".png")}
    ids = sorted(colors, key=natural_key)
    kept, poses = select_frames(ids, stride, lambda i: read_pose(d / "pose" / f"{i}.txt"), str(d))
    has_depth = (d / "depth").is_dir()
    gt = (d / "label").is_dir()  # ground-truth images, as the synthetic world writes them
    return [FrameSpec(frame_id=f, color=colors[f], depth=(d / "depth" / f"{f}.png") if has_depth else None,
                      pose=pose, intrinsics=K, intrinsics_size=ksize, depth_scale=depth_scale,
                      label=(d / "label" / f"{f}.png") if gt else None,
                      instance=(d / "instance" / f"{f}.png") if gt else None)
            for f, pose in zip(kept, poses)]


def _matterport_specs(p: Path, scene_id: str, points: np.ndarray, depth_scale: float) -> list[FrameSpec]:
    building = scene_id.split("_")[0]
    d = _data_root(p) / "matterport_2d" / building
    if not (d / "color").is_dir():
        log.info("%s: no 2D frames at %s", p, d)
        return []
    names = sorted((c.stem for c in (d / "color").glob("*.jpg")), key=natural_key)
    if not names:
        return []
    poses = [read_pose(d / "pose" / f"{n}.txt") for n in names]
    cam = np.stack([q[:3, 3] for q in poses])
    lo, hi = points.min(0), points.max(0)
    inside = np.all((cam > lo) & (cam < hi), axis=1)
    idx = np.nonzero(inside)[0]
    if len(idx) == 0:
        dist = np.linalg.norm(cam - (lo + hi) / 2, axis=1)
        idx = np.sort(np.argsort(dist)[:MATTERPORT_NEAREST])
        log.info("%s: no camera inside the region, using the nearest %d views", p, len(idx))
    specs = []
    for i in idx:
        n = names[i]
        if not np.isfinite(poses[i]).all():
            continue
        m = re.match(r"^(.*)_i(\d+)_(\d+)$", n)
        depth = d / "depth" / (f"{m.group(1)}_d{m.group(2)}_{m.group(3)}.png" if m else f"{n}.png")
        specs.append(FrameSpec(frame_id=n, color=d / "color" / f"{n}.jpg", depth=depth, pose=poses[i],
                               intrinsics=read_intrinsics(d / "intrinsic" / f"{n}.txt"), depth_scale=depth_scale))
    return specs


def _nuscenes_specs(p: Path, scene_id: str) -> list[FrameSpec]:
    root = _data_root(p) / "nuscenes_2d"
    d = root / p.parent.name / scene_id
    if not d.is_dir():
        d = root / scene_id
    if not (d / "color").is_dir():
        log.info("%s: no 2D frames at %s", p, d)
        return []
    cams = sorted(c.stem for c in (d / "color").glob("*.jpg"))
    specs = []
    for cam in cams:
        pose = read_matrix(d / "pose" / f"{cam}.npy", (4, 4), "pose file")
        if not np.isfinite(pose).all():
            continue
        K = read_matrix(d / "K" / f"{cam}.npy", (3, 3), "intrinsics file")
        specs.append(FrameSpec(frame_id=cam, color=d / "color" / f"{cam}.jpg", depth=None, pose=pose, intrinsics=K))
    return specs


# -- fused 2D features ----------------------------------------------------------------------------------------------
def _read_feature_file(p: Path, trust_pickle: Optional[bool]) -> tuple[np.ndarray, np.ndarray]:
    obj = torch_load(p, trust_pickle, "fused-feature file")
    if not isinstance(obj, dict) or "feat" not in obj or "mask_full" not in obj:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise SASInputError(p, f"fused-feature file needs keys 'feat' and 'mask_full', has {keys}")
    feat = to_numpy(obj["feat"], p, "feat")
    mask_full = to_numpy(obj["mask_full"], p, "mask_full")
    if feat.ndim != 2:
        raise SASInputError(p, f"'feat' must be [M, C], got {list(feat.shape)}")
    if mask_full.ndim != 1:
        raise SASInputError(p, f"'mask_full' must be [N], got {list(mask_full.shape)}")
    if mask_full.dtype != np.bool_:
        if mask_full.size and not np.isin(mask_full, (0, 1)).all():
            raise SASInputError(p, f"'mask_full' must be a boolean mask over all points, got {mask_full.dtype} values")
        mask_full = mask_full.astype(bool)
    if "mask" in obj:  # legacy 3-key form: feat rows follow mask_full, 'mask' marks rows that have a feature
        vis = to_numpy(obj["mask"], p, "mask")
        if vis.dtype != np.bool_:
            b = np.zeros(len(feat), bool)
            if vis.size and (vis.min() < 0 or vis.max() >= len(feat)):
                raise SASInputError(p, "legacy 'mask' indexes rows outside 'feat'")
            b[vis.astype(np.int64)] = True
            vis = b
        if len(vis) != len(feat):
            raise SASInputError(p, f"legacy 'mask' has {len(vis)} entries, 'feat' {len(feat)} rows")
        if int(mask_full.sum()) != len(feat):
            raise SASInputError(p, f"'feat' has {len(feat)} rows but 'mask_full' selects {int(mask_full.sum())}")
        chunk = np.nonzero(mask_full)[0]
        mask_full = np.zeros_like(mask_full)
        mask_full[chunk[vis]] = True
        feat = feat[vis]
    if int(mask_full.sum()) != len(feat):
        raise SASInputError(p, f"'feat' has {len(feat)} rows but 'mask_full' selects {int(mask_full.sum())} points")
    return feat.astype(np.float16), mask_full


def load_openscene_features(path: str | Path, merge_chunks: bool = True,
                            trust_pickle: Optional[bool] = None) -> tuple[np.ndarray, np.ndarray]:
    """Read OpenScene fused 2D features.

    Args:
        path: a ``<scene>_<k>.pt`` / ``<scene>.pt`` file (modern ``{feat, mask_full}`` or legacy
            ``{feat, mask, mask_full}`` form).
        merge_chunks: also read the sibling chunks ``<scene>_<j>.pt`` (train split: 5 random 20k-point chunks)
            and merge them; points covered by several chunks keep the first chunk's row (they are identical).
    Returns:
        ``(feat float16 [M, C], mask_full bool [N])``; rows of ``feat`` follow ``mask_full.nonzero()``.
    """
    p = require_file(path, "fused-feature file")
    files = [p]
    m = re.match(r"^(.*)_(\d+)\.pt$", p.name)
    if merge_chunks and m:
        sib = [q for q in p.parent.glob(f"{m.group(1)}_*.pt") if re.fullmatch(rf"{re.escape(m.group(1))}_\d+\.pt",
                                                                              q.name)]
        files = sorted(sib, key=lambda q: natural_key(q.name))
    parts = [_read_feature_file(q, trust_pickle) for q in files]
    if len(parts) == 1:
        return parts[0]
    n, c = len(parts[0][1]), parts[0][0].shape[1]
    for q, (f, mk) in zip(files, parts):
        if len(mk) != n or f.shape[1] != c:
            raise SASInputError(q, f"chunk has {len(mk)} points x {f.shape[1]} channels, first chunk {n} x {c}")
    full = np.zeros(n, bool)
    rows = np.zeros((n, c), np.float16)
    for f, mk in reversed(parts):  # earlier chunks win on overlap
        idx = np.nonzero(mk)[0]
        rows[idx] = f
        full[idx] = True
    return rows[full], full
