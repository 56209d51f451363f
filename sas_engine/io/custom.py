"""Custom RGB-D captures: a nerfstudio-style ``transforms.json`` or a plain folder layout, with TSDF reconstruction
when no mesh or point cloud is given.

**nerfstudio-style** ``<capture>/transforms.json``. Fields read (everything else is ignored):

* intrinsics ``fl_x``, ``fl_y``, ``cx``, ``cy`` and image size ``w``, ``h`` - top level, or per frame (per-frame
  values win); ``camera_angle_x`` (+ ``w``) when ``fl_x`` is absent; ``fl_y`` defaults to ``fl_x``, ``cx``/``cy`` to
  the image centre. Distortion coefficients (``k1``... ``p2``) are not applied (a warning is logged when non-zero).
  The intrinsics refer to an image of ``w`` x ``h`` (the colour image's own size when absent);
* ``frames[i].file_path`` (colour image, relative to the json's folder), ``frames[i].transform_matrix`` (4x4
  camera-to-world in nerfstudio's **OpenGL/Blender convention**: x right, y up, camera looking along -z; converted
  to the engine's OpenCV convention by flipping the camera's y and z axes: ``pose = T @ diag(1, -1, -1, 1)``),
  ``frames[i].depth_file_path`` (uint16 PNG or ``.npy``);
* ``depth_unit_scale_factor``: metres per raw depth unit (nerfstudio default 1e-3 = millimetres);
* ``ply_file_path`` (optional): mesh or point cloud used instead of a reconstruction.

**Plain folder** ``<capture>/``::

    color/<id>.jpg|png        RGB images
    depth/<id>.png|npy        depth registered to the colour camera: uint16 PNG in depth_scale units per metre
                              (default 1000 = mm) or float .npy in metres
    poses/<id>.txt            4x4 camera-to-world, OpenCV convention (x right, y down, z forward)  [pose/ also accepted]
    intrinsics.txt            3x3 (or 4x4) pinhole matrix for the colour image's size
    depth_scale.txt           optional: one number, raw depth units per metre
    mesh.ply | points.ply     optional: geometry; otherwise reconstructed by TSDF fusion

Frames default to every frame (stride 1; captures are usually subsampled already). The working image keeps the
capture's aspect ratio: width from the preset (320), height from the aspect, unless ``image_size`` is given.
Without a mesh, :func:`tsdf_reconstruct` integrates all selected frames into an open3d TSDF volume
(``VoxelBlockGrid``, voxel = ``preset.tsdf_voxel``) and extracts a triangle mesh (points, colours, normals, faces).
The reconstruction is recomputed at each load (it is not cached).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..config import get_preset
from ..errors import SASInputError
from ..scene import Frame, Scene
from .files import (image_size as file_image_size, natural_key, read_intrinsics, read_json, read_pose,
                    require_file)
from .frames import FrameSpec, frame_sequence, select_frames
from .ply import read_ply
from .scannet import mesh_arrays

log = logging.getLogger(__name__)

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
"""Right-multiplying a camera-to-world pose by this flips the camera's y and z axes (OpenGL <-> OpenCV)."""
DEPTH_TRUNC = 6.0
"""Depth beyond this many metres is ignored by TSDF integration."""
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def is_transforms_capture(path: Path) -> bool:
    return (path.is_file() and path.name.endswith(".json") and path.name != "sas_synthetic.json") or (
        path.is_dir() and (path / "transforms.json").is_file())


def is_plain_capture(path: Path) -> bool:
    return path.is_dir() and (path / "color").is_dir() and ((path / "poses").is_dir() or (path / "pose").is_dir())


def working_size(src: tuple[int, int], preset_size: tuple[int, int]) -> tuple[int, int]:
    """Preset width, height from the source aspect ratio (rounded to even)."""
    w = int(preset_size[0])
    h = max(2, int(round(w * src[1] / src[0] / 2)) * 2)
    return w, h


def _f(d: dict, key: str, p: Path):
    try:
        return float(d[key]) if key in d else None
    except (TypeError, ValueError):
        raise SASInputError(p, f"field '{key}' is not a number") from None


def transforms_specs(json_path: Path, stride: int) -> tuple[list[FrameSpec], Optional[Path]]:
    """Frame specs of a nerfstudio ``transforms.json`` and its optional ``ply_file_path``."""
    meta = read_json(json_path, "transforms.json")
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise SASInputError(json_path, "transforms.json has no 'frames' list")
    if not meta["frames"]:
        raise SASInputError(json_path, "transforms.json lists no frames")
    base = json_path.parent
    scale_factor = _f(meta, "depth_unit_scale_factor", json_path) or 1e-3
    if any(abs(_f(meta, k, json_path) or 0.0) > 0 for k in ("k1", "k2", "k3", "p1", "p2")):
        log.warning("%s: lens distortion coefficients are not applied", json_path)

    def pose_of(i):
        fr = meta["frames"][int(i)]
        try:
            T = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise SASInputError(json_path, f"frame {i}: missing or non-numeric 'transform_matrix'") from None
        if T.shape == (3, 4):
            T = np.vstack([T, [0, 0, 0, 1]])
        if T.shape != (4, 4):
            raise SASInputError(json_path, f"frame {i}: transform_matrix is not 4x4 (got shape {list(T.shape)})")
        return T @ GL_TO_CV

    kept, poses = select_frames([str(i) for i in range(len(meta["frames"]))], stride, pose_of, str(json_path))
    specs = []
    for i, pose in zip(kept, poses):
        fr = meta["frames"][int(i)]
        if not isinstance(fr, dict) or "file_path" not in fr:
            raise SASInputError(json_path, f"frame {i} has no 'file_path'")
        color = base / fr["file_path"]
        cam = {**meta, **fr}
        w, h = _f(cam, "w", json_path), _f(cam, "h", json_path)
        if w is None or h is None:
            w, h = file_image_size(color)
        fx = _f(cam, "fl_x", json_path)
        if fx is None and "camera_angle_x" in cam:
            fx = 0.5 * w / math.tan(0.5 * _f(cam, "camera_angle_x", json_path))
        if fx is None:
            raise SASInputError(json_path, "no focal length: need 'fl_x' (or 'camera_angle_x')")
        fy = _f(cam, "fl_y", json_path) or fx
        cx = _f(cam, "cx", json_path)
        cy = _f(cam, "cy", json_path)
        K = np.array([[fx, 0, w / 2 if cx is None else cx], [0, fy, h / 2 if cy is None else cy], [0, 0, 1]])
        depth = base / fr["depth_file_path"] if fr.get("depth_file_path") else None
        specs.append(FrameSpec(frame_id=Path(fr["file_path"]).stem, color=color, depth=depth, pose=pose,
                               intrinsics=K, intrinsics_size=(int(w), int(h)), depth_scale=1.0 / scale_factor))
    ply = base / meta["ply_file_path"] if meta.get("ply_file_path") else None
    return specs, ply


def plain_specs(folder: Path, stride: int) -> list[FrameSpec]:
    """Frame specs of the plain capture layout (see the module docstring)."""
    colors = {p.stem: p for p in (folder / "color").iterdir() if p.suffix.lower() in IMAGE_EXTS}
    ids = sorted(colors, key=natural_key)
    if not ids:
        raise SASInputError(folder / "color", "no colour images (.jpg/.png) found")
    pose_dir = folder / "poses" if (folder / "poses").is_dir() else folder / "pose"
    kp = folder / "intrinsics.txt"
    if not kp.is_file() and (folder / "intrinsic" / "intrinsic_color.txt").is_file():
        kp = folder / "intrinsic" / "intrinsic_color.txt"
    K = read_intrinsics(kp)
    scale = 1000.0
    if (folder / "depth_scale.txt").is_file():
        try:
            scale = float((folder / "depth_scale.txt").read_text().split()[0])
        except (ValueError, IndexError):
            raise SASInputError(folder / "depth_scale.txt", "is not a number") from None
    ksize = file_image_size(colors[ids[0]])
    kept, poses = select_frames(ids, stride, lambda i: read_pose(pose_dir / f"{i}.txt"), str(folder))
    specs = []
    for fid, pose in zip(kept, poses):
        depth = None
        for ext in (".png", ".npy"):
            if (folder / "depth" / f"{fid}{ext}").is_file():
                depth = folder / "depth" / f"{fid}{ext}"
        if depth is None and (folder / "depth").is_dir():
            raise SASInputError(folder / "depth" / f"{fid}.png", "depth image not found")
        specs.append(FrameSpec(frame_id=fid, color=colors[fid], depth=depth, pose=pose, intrinsics=K,
                               intrinsics_size=ksize, depth_scale=scale))
    return specs


def tsdf_reconstruct(frames: Sequence[Frame], voxel: float, depth_trunc: float = DEPTH_TRUNC,
                     source: str = "") -> dict:
    """Integrate RGB-D frames into a sparse TSDF volume and extract a triangle mesh (marching cubes).

    Uses open3d's ``t.geometry.VoxelBlockGrid`` (the maintained, hash-based successor of
    ``ScalableTSDFVolume``; the legacy class extracts empty meshes with the pinned open3d 0.20 on CPU). SDF
    truncation is 8 voxels, depth beyond ``depth_trunc`` metres is ignored, and every observed voxel is meshed
    (a higher observation-count threshold left holes at block borders on low-resolution frames).

    Returns ``{"points" float32 [N,3], "colors" uint8 [N,3], "normals" float32 [N,3], "faces" int64 [F,3]}``.
    """
    import open3d as o3d
    import open3d.core as o3c
    from tqdm import tqdm

    dev = o3c.Device("CPU:0")
    vbg = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"), attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
        attr_channels=((1), (1), (3)), voxel_size=float(voxel), block_resolution=8, block_count=2000, device=dev)
    used = 0
    for fr in tqdm(frames, desc="TSDF integration", leave=False):
        if fr.depth is None:
            raise SASInputError(source, f"frame {fr.frame_id} has no depth: cannot reconstruct a mesh")
        if not ((fr.depth > 0) & (fr.depth < depth_trunc)).any():
            continue
        depth = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(fr.depth, dtype=np.float32)))
        color = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(fr.color, dtype=np.float32) / 255.0))
        K = o3c.Tensor(np.asarray(fr.intrinsics, dtype=np.float64))
        E = o3c.Tensor(np.linalg.inv(fr.pose).astype(np.float64))
        blocks = vbg.compute_unique_block_coordinates(depth, K, E, 1.0, depth_trunc)
        if blocks.shape[0] == 0:
            continue
        vbg.integrate(blocks, depth, color, K, E, 1.0, depth_trunc)
        used += 1
    if used == 0:
        raise SASInputError(source, "TSDF reconstruction produced an empty mesh: no frame has valid depth "
                                    "(check depth units and poses)")
    mesh = vbg.extract_triangle_mesh(weight_threshold=0.5).to_legacy()
    mesh.compute_vertex_normals()
    pts = np.asarray(mesh.vertices, dtype=np.float32)
    if len(pts) == 0:
        raise SASInputError(source, f"TSDF reconstruction from {used} frames produced an empty mesh "
                                    "(check depth units and poses)")
    return {"points": pts,
            "colors": np.clip(np.round(np.asarray(mesh.vertex_colors) * 255), 0, 255).astype(np.uint8),
            "normals": np.asarray(mesh.vertex_normals, dtype=np.float32),
            "faces": np.asarray(mesh.triangles, dtype=np.int64)}


def load_custom(path: str | Path, dataset: Optional[str] = None, *, frame_stride: Optional[int] = None,
                image_size: Optional[tuple[int, int]] = None) -> Scene:
    """Load a custom RGB-D capture (``transforms.json`` file/folder or the plain folder layout)."""
    path = Path(path)
    preset = get_preset(dataset or "scannet")
    stride = frame_stride or 1
    geom_path = None
    if is_transforms_capture(path):
        jp = path if path.is_file() else path / "transforms.json"
        specs, geom_path = transforms_specs(jp, stride)
        folder = jp.parent
    else:
        folder = path
        specs = plain_specs(path, stride)
        for name in ("mesh.ply", "points.ply"):
            if (folder / name).is_file():
                geom_path = folder / name
                break
    if not specs:
        raise SASInputError(path, "no frames with a valid pose")
    size = tuple(image_size) if image_size else working_size(file_image_size(specs[0].color), preset.image_size)
    frames = frame_sequence(specs, size)
    if geom_path is not None:
        m = mesh_arrays(read_ply(require_file(geom_path, "mesh/point cloud")), geom_path)
        if len(m["points"]) == 0:
            raise SASInputError(geom_path, "scene is empty (0 vertices)")
        if m["faces"] is not None and len(m["faces"]) == 0:
            m["faces"] = None
    else:
        log.info("%s: no mesh given, reconstructing one by TSDF fusion of %d frames (voxel %.3f m)",
                 folder, len(frames), preset.tsdf_voxel)
        m = tsdf_reconstruct(frames, preset.tsdf_voxel, source=str(folder))
    return Scene(scene_id=folder.name, points=m["points"], colors=m["colors"], normals=m["normals"],
                 faces=m["faces"], frames=frames, label_set=preset.label_set, dataset=preset.name,
                 source=str(path))
