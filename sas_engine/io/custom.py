"""Custom RGB-D captures: a nerfstudio-style ``transforms.json``, an Open3D reconstruction-system folder or a plain
folder layout, with TSDF reconstruction when no mesh or point cloud is given. The user guide is ``docs/captures.md``.

**Poses** are camera-to-world everywhere. The engine's camera convention is OpenCV's (x right, y down, z forward);
only nerfstudio's ``transform_matrix`` uses OpenGL's and is converted. The world frame is the capture's own.

**Depth units**, one convention with two accepted spellings. ``depth_scale`` is raw depth units per metre
(ScanNet/Open3D 1000 = millimetres, TUM 5000); ``depth_unit_scale_factor`` is metres per raw unit (nerfstudio's,
1e-3 = millimetres), so one is the reciprocal of the other. Where both are given they must agree (else
:class:`SASInputError`). Float ``.npy`` depth is always read as metres. After the frame list is built,
:func:`sas_engine.io.depth_units.check_depth_units` reads the first frame with depth and refuses a median depth
outside 0.05-30 m, naming the file, the value read and the likely fix.

**nerfstudio-style** ``<capture>/transforms.json``. Fields read (everything else is ignored):

* intrinsics ``fl_x``, ``fl_y``, ``cx``, ``cy`` and image size ``w``, ``h`` - top level, or per frame (per-frame
  values win); ``camera_angle_x`` (+ ``w``) when ``fl_x`` is absent; ``fl_y`` defaults to ``fl_x``, ``cx``/``cy`` to
  the image centre. Distortion coefficients (``k1``... ``p2``) are not applied (a warning is logged when non-zero).
  The intrinsics refer to an image of ``w`` x ``h`` (the colour image's own size when absent);
* ``frames[i].file_path`` (colour image, relative to the json's folder), ``frames[i].transform_matrix`` (4x4
  camera-to-world in nerfstudio's **OpenGL/Blender convention**: x right, y up, camera looking along -z; converted
  to the engine's OpenCV convention by flipping the camera's y and z axes: ``pose = T @ diag(1, -1, -1, 1)``),
  ``frames[i].depth_file_path`` (uint16 PNG or ``.npy``);
* ``depth_unit_scale_factor`` (metres per raw unit, nerfstudio's default 1e-3) or ``depth_scale`` (units per metre);
* ``ply_file_path`` (optional): mesh or point cloud used instead of a reconstruction.

**Open3D reconstruction system** (``examples/python/reconstruction_system``; read by
:mod:`sas_engine.io.open3d_capture`): the dataset folder it reads plus the trajectory it writes::

    color/ | rgb/ | image/    colour images (.jpg/.png); paired with depth/ by sorted order, as Open3D does
    depth/*.png               uint16 depth registered to the colour camera, depth_scale units per metre (default 1000)
    scene/trajectory.log      camera-to-world poses, Redwood .log format: per frame a line "i i i+1" (the third number
                              is the 1-based frame number) then 4 rows of the 4x4 matrix; OpenCV camera convention
    scene/integrated.ply      optional: the mesh Open3D integrated; used as the scene's geometry when present
    camera_intrinsic.json     optional: open3d.camera.PinholeCameraIntrinsic JSON ("width", "height",
                              "intrinsic_matrix": 9 numbers in column-major order); default PrimeSense 640x480,
                              fx = fy = 525, cx = 319.5, cy = 239.5, as Open3D assumes
    <config>.json             optional: the system's config ("path_dataset", "path_intrinsic", "depth_scale",
                              "color_folder", "depth_folder", "template_global_traj", "template_global_mesh";
                              "max_depth" is not applied)

The trajectory is ``scene/trajectory.log`` (or the config's ``template_global_traj``); otherwise the one ``*.log``
in the folder, or the one ``*/trajectory.log`` a level down. The path may also be the config JSON itself (its
``path_dataset`` is resolved against the config's folder, then the working directory).

**Plain folder** ``<capture>/``::

    color/<id>.jpg|png        RGB images
    depth/<id>.png|npy        depth registered to the colour camera: uint16 PNG in depth_scale units per metre
                              (default 1000 = mm) or float .npy in metres
    poses/<id>.txt            4x4 camera-to-world, OpenCV convention (x right, y down, z forward)  [pose/ also accepted]
    intrinsics.txt            3x3 (or 4x4) pinhole matrix for the colour image's size
    depth_scale.txt           optional: one number, raw depth units per metre (1000 = mm, 5000 = TUM)
    depth_unit_scale_factor.txt  optional: one number, metres per raw unit (0.001 = mm); must agree with the above
    mesh.ply | points.ply     optional: geometry; otherwise reconstructed by TSDF fusion

A depth image may have a lower resolution than its colour image (e.g. 320x240 depth with 640x480 colour) but the
same aspect ratio; a different aspect ratio is an error. Without a mesh every frame needs depth (TSDF fusion).

Frames default to every frame (stride 1; captures are usually subsampled already). The working image keeps the
capture's aspect ratio: width from the preset (320), height from the aspect, unless ``image_size`` is given.
Without a mesh, :func:`sas_engine.io.reconstruct.tsdf_reconstruct` integrates all selected frames into an open3d
TSDF volume (``VoxelBlockGrid``, voxel = ``preset.tsdf_voxel``) and extracts a triangle mesh (points, colours,
normals, faces) in a canonical vertex order. It is written once next to the capture (``sas_reconstruction.ply`` +
``.json``) and reused by every later load while the frames and settings are unchanged
(:mod:`sas_engine.io.reconstruct`).
:func:`capture_specs` is the one entry point to the frame lists of all three layouts.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import get_preset
from ..errors import SASInputError
from ..scene import Scene
from .depth_units import check_depth_units, depth_units, folder_depth_units, require_depth_for_tsdf
from .files import IMAGE_EXTS, natural_key, read_intrinsics, read_json, read_pose, require_file
from .files import image_size as file_image_size
from .frames import FrameSpec, frame_sequence, select_frames
from .open3d_capture import is_open3d_capture, is_open3d_config, open3d_specs
from .ply import read_ply
from .reconstruct import cached_reconstruction
from .scannet import mesh_arrays

log = logging.getLogger(__name__)

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
"""Right-multiplying a camera-to-world pose by this flips the camera's y and z axes (OpenGL <-> OpenCV)."""
def is_transforms_capture(path: Path) -> bool:
    return (path.is_file() and path.name.endswith(".json") and path.name != "sas_synthetic.json"
            and not is_open3d_config(path)) or (path.is_dir() and (path / "transforms.json").is_file())


def is_plain_capture(path: Path) -> bool:
    return path.is_dir() and (path / "color").is_dir() and ((path / "poses").is_dir() or (path / "pose").is_dir())


def custom_layout(path: Path) -> Optional[str]:
    """``transforms``, ``plain`` or ``open3d`` for a custom capture at ``path``, None when it is none of them.

    Order: an Open3D config JSON, then ``transforms.json`` (file or folder), the plain folder (``color/`` +
    ``poses/``), the Open3D folder (``depth/`` + colour folder + ``.log`` trajectory)."""
    path = Path(path)
    if path.is_file() and is_open3d_config(path):
        return "open3d"
    if is_transforms_capture(path):
        return "transforms"
    if is_plain_capture(path):
        return "plain"
    if is_open3d_capture(path):
        return "open3d"
    return None


def plain_geometry(folder: Path) -> Optional[Path]:
    """The plain layout's optional geometry file (``mesh.ply``, else ``points.ply``)."""
    for name in ("mesh.ply", "points.ply"):
        if (folder / name).is_file():
            return folder / name
    return None


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
        hint = ("; this looks like an Open3D camera intrinsic file: pass the capture folder instead"
                if isinstance(meta, dict) and ("intrinsic_matrix" in meta or "intrinsic" in meta) else "")
        raise SASInputError(json_path, f"transforms.json has no 'frames' list{hint}")
    if not meta["frames"]:
        raise SASInputError(json_path, "transforms.json lists no frames")
    base = json_path.parent
    units = depth_units([(str(json_path), k, meta[k]) for k in ("depth_unit_scale_factor", "depth_scale")
                         if meta.get(k) is not None])
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
                               intrinsics=K, intrinsics_size=(int(w), int(h)), depth_scale=units.scale))
    ply = base / meta["ply_file_path"] if meta.get("ply_file_path") else None
    if ply is None:
        require_depth_for_tsdf(specs, json_path, "give each frame a 'depth_file_path', or a mesh or point cloud "
                                                  "as 'ply_file_path'")
    check_depth_units(specs, units)
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
    units = folder_depth_units(folder)
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
                               intrinsics_size=ksize, depth_scale=units.scale))
    if plain_geometry(folder) is None:
        require_depth_for_tsdf(specs, folder, "add depth/<id>.png (or .npy) for each colour image, or a mesh.ply / "
                                               "points.ply beside color/")
    check_depth_units(specs, units)
    return specs


def capture_specs(path: str | Path, stride: int) -> tuple[list[FrameSpec], Optional[Path], Path]:
    """Frame specs, optional geometry file (mesh or point cloud; None = reconstruct by TSDF) and capture folder of a
    custom capture in any of its layouts (see :func:`custom_layout` and the module docstring)."""
    path = Path(path)
    layout = custom_layout(path)
    if layout == "open3d":
        return open3d_specs(path, stride)
    if layout == "transforms":
        jp = path if path.is_file() else path / "transforms.json"
        specs, ply = transforms_specs(jp, stride)
        return specs, ply, jp.parent
    if layout is None:
        raise SASInputError(path, "not a capture: expected a transforms.json, a folder with color/ + poses/ + "
                                  "intrinsics.txt, or an Open3D reconstruction-system folder (color/ or image/, "
                                  "depth/ and a .log trajectory)")
    return plain_specs(path, stride), plain_geometry(path), path


def load_custom(path: str | Path, dataset: Optional[str] = None, *, frame_stride: Optional[int] = None,
                image_size: Optional[tuple[int, int]] = None, progress: bool = True) -> Scene:
    """Load a custom RGB-D capture (plain folder, ``transforms.json`` or Open3D reconstruction-system layout). Without
    a mesh, the
    reconstruction is made once and reused (:func:`sas_engine.io.reconstruct.cached_reconstruction`); ``progress``
    shows its bar."""
    path = Path(path)
    preset = get_preset(dataset or "scannet")
    stride = frame_stride or 1
    specs, geom_path, folder = capture_specs(path, stride)
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
        m = cached_reconstruction(folder, frames, preset.tsdf_voxel, source=str(folder), progress=progress)
    return Scene(scene_id=folder.name, points=m["points"], colors=m["colors"], normals=m["normals"],
                 faces=m["faces"], frames=frames, label_set=preset.label_set, dataset=preset.name,
                 source=str(path))
