"""Custom RGB-D captures: a nerfstudio-style ``transforms.json``, an Open3D reconstruction-system folder or a plain
folder layout, with TSDF reconstruction when no mesh or point cloud is given. The user guide is ``docs/captures.md``.

**Poses** are camera-to-world everywhere. The engine's camera convention is OpenCV's (x right, y down, z forward);
only nerfstudio's ``transform_matrix`` uses OpenGL's and is converted. The world frame is the capture's own.

**Depth units**, one convention with two accepted spellings. ``depth_scale`` is raw depth units per metre
(ScanNet/Open3D 1000 = millimetres, TUM 5000); ``depth_unit_scale_factor`` is metres per raw unit (nerfstudio's,
1e-3 = millimetres), so one is the reciprocal of the other. Where both are given they must agree (else
:class:`SASInputError`). Float ``.npy`` depth is always read as metres. After the frame list is built,
:func:`check_depth_units` reads the first frame with depth and refuses a median depth outside 0.05-30 m, naming
the file, the value read and the likely fix.

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

**Open3D reconstruction system** (``examples/python/reconstruction_system``): the dataset folder it reads plus the
trajectory it writes::

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

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..config import get_preset
from ..errors import SASInputError
from ..scene import Scene
from .files import (image_size as file_image_size, natural_key, read_depth, read_intrinsics, read_json, read_pose,
                    require_file)
from .frames import ASPECT_TOLERANCE, FrameSpec, frame_sequence, select_frames
from .ply import read_ply
from .reconstruct import cached_reconstruction
from .scannet import mesh_arrays

log = logging.getLogger(__name__)

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
"""Right-multiplying a camera-to-world pose by this flips the camera's y and z axes (OpenGL <-> OpenCV)."""
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
DEFAULT_DEPTH_SCALE = 1000.0
"""Raw depth units per metre when a capture does not say (millimetres: ScanNet, Open3D, most sensors' uint16 PNGs)."""
DEPTH_RANGE = (0.05, 30.0)
"""Plausible median depth of a capture frame, metres; outside it :func:`check_depth_units` refuses the units."""
O3D_COLOR_DIRS = ("color", "rgb", "image")
"""Colour folders of an Open3D reconstruction-system dataset, in Open3D's precedence (it takes the last existing of
``image/``, ``rgb/``, ``color/``)."""
O3D_DEFAULT_INTRINSIC = (640, 480, 525.0, 525.0, 319.5, 239.5)
"""Open3D's ``PrimeSenseDefault`` (width, height, fx, fy, cx, cy): what its reconstruction system uses when the
config's ``path_intrinsic`` is empty."""
O3D_INTRINSIC_NAMES = ("camera_intrinsic.json", "intrinsic.json", "intrinsics.json")


def _json_dict(path: Path) -> Optional[dict]:
    """A small JSON file's top-level object, None when it is unreadable or not an object (detection only)."""
    try:
        if path.stat().st_size > 1 << 20:
            return None
        d = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return d if isinstance(d, dict) else None


def is_open3d_config(path: Path) -> bool:
    """A JSON file that is an Open3D reconstruction-system config (it has ``path_dataset``)."""
    return path.is_file() and path.suffix == ".json" and "path_dataset" in (_json_dict(path) or {})


def is_transforms_capture(path: Path) -> bool:
    return (path.is_file() and path.name.endswith(".json") and path.name != "sas_synthetic.json"
            and not is_open3d_config(path)) or (path.is_dir() and (path / "transforms.json").is_file())


def is_plain_capture(path: Path) -> bool:
    return path.is_dir() and (path / "color").is_dir() and ((path / "poses").is_dir() or (path / "pose").is_dir())


def is_open3d_capture(path: Path) -> bool:
    """An Open3D reconstruction-system config JSON, or a folder with ``depth/``, a colour folder (``color/``,
    ``rgb/`` or ``image/``) and a ``.log`` trajectory (see the module docstring for where it is looked for)."""
    if path.is_file():
        return is_open3d_config(path)
    return (path.is_dir() and (path / "depth").is_dir() and any((path / d).is_dir() for d in O3D_COLOR_DIRS)
            and bool(_log_candidates(path)))


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


@dataclass
class DepthUnits:
    """A capture's depth units and where they were read, so a message can quote the user's own spelling.

    Attributes:
        scale: raw depth units per metre (what :class:`FrameSpec` takes).
        where: the file that says so ("" = nothing did; the default applies).
        key: the spelling used there: ``depth_scale`` (units per metre) or ``depth_unit_scale_factor`` (metres per
            unit).
        value: the number as written.
    """

    scale: float = DEFAULT_DEPTH_SCALE
    where: str = ""
    key: str = "depth_scale"
    value: float = DEFAULT_DEPTH_SCALE

    def describe(self) -> str:
        unit = "units per metre" if self.key == "depth_scale" else "metres per unit"
        if not self.where:
            return f"no depth scale is given, so the default {self.value:g} {unit} (millimetres) applies"
        return f"{Path(self.where).name} says {self.key} {self.value:g} {unit}"

    def spelled(self, scale: float) -> str:
        """``scale`` (units per metre) as the number to write in this capture's own spelling."""
        return f"{1.0 / scale:g}" if self.key == "depth_unit_scale_factor" else f"{scale:g}"

    def other_spelling(self) -> str:
        if self.key == "depth_unit_scale_factor":
            return "depth_scale is the units-per-metre spelling"
        return "depth_unit_scale_factor is the metres-per-unit spelling"


def depth_units(given: Sequence[tuple[str, str, object]], default: float = DEFAULT_DEPTH_SCALE) -> DepthUnits:
    """Resolve a capture's depth units from ``(where, key, value)`` triples, ``key`` being ``depth_scale`` (units
    per metre) or ``depth_unit_scale_factor`` (metres per unit). Values must be positive numbers; several must agree
    (within 0.1 %). None given: ``default`` units per metre."""
    found: list[DepthUnits] = []
    for where, key, value in given:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise SASInputError(where, f"{key} is not a number ({value!r})") from None
        if not math.isfinite(v) or v <= 0:
            raise SASInputError(where, f"{key} must be a positive number, got {v:g}")
        found.append(DepthUnits(v if key == "depth_scale" else 1.0 / v, where, key, v))
    if not found:
        return DepthUnits(float(default), "", "depth_scale", float(default))
    for other in found[1:]:
        if abs(other.scale / found[0].scale - 1.0) > 1e-3:
            raise SASInputError(other.where, f"depth units disagree: {other.describe()} = {other.scale:g} units per "
                                             f"metre, but {found[0].describe()} = {found[0].scale:g} units per metre "
                                             "(depth_scale is units per metre, depth_unit_scale_factor metres per "
                                             "unit: one is the reciprocal of the other); keep one")
    return found[0]


def _read_number(p: Path) -> float:
    try:
        return float(p.read_text().split()[0])
    except (ValueError, IndexError, UnicodeDecodeError):
        raise SASInputError(p, "is not a number") from None


def folder_depth_units(folder: Path, given: Sequence[tuple[str, str, object]] = ()) -> DepthUnits:
    """Depth units of a capture folder: ``depth_scale.txt`` (units per metre) and/or ``depth_unit_scale_factor.txt``
    (metres per unit), plus any ``given`` elsewhere (e.g. an Open3D config); they must agree."""
    found = list(given)
    for key in ("depth_scale", "depth_unit_scale_factor"):
        p = folder / f"{key}.txt"
        if p.is_file():
            found.append((str(p), key, _read_number(p)))
    return depth_units(found)


def _likely_scale(raw_median: float, units: DepthUnits) -> Optional[float]:
    """A depth scale (units per metre) that puts ``raw_median`` at a room-like depth: the reciprocal of what was given
    (the two spellings swapped), else a common sensor unit."""
    for c in (1.0 / units.scale, 1000.0, 5000.0, 10000.0, 4000.0, 100.0, 1.0):
        if abs(c / units.scale - 1.0) > 1e-6 and 0.2 <= raw_median / c <= 15.0:
            return c
    return None


def check_depth_units(specs: Sequence[FrameSpec], units: DepthUnits, max_tries: int = 5) -> None:
    """Refuse implausible depth units early, from the first frame with valid depth (one image read; up to
    ``max_tries`` frames when the first ones have no valid pixel).

    Also checks that frame's depth and colour images have the same aspect ratio (headers only). Raises
    :class:`SASInputError` naming the depth file, the median depth read and the likely fix when the median valid
    depth is outside :data:`DEPTH_RANGE`.
    """
    lo, hi = DEPTH_RANGE
    tried = 0
    for s in specs:
        if s.depth is None:
            continue
        if tried == 0:
            dw, dh = file_image_size(s.depth)
            cw, ch = file_image_size(s.color)
            if abs((dw / dh) / (cw / ch) - 1.0) > ASPECT_TOLERANCE:
                raise SASInputError(s.depth, f"depth image is {dw}x{dh} but its colour image {s.color.name} is "
                                             f"{cw}x{ch}: aspect ratios differ, they cannot be registered (a lower "
                                             "depth resolution of the same aspect ratio is fine)")
        tried += 1
        d = read_depth(s.depth, s.depth_scale)
        valid = d[d > 0]
        if valid.size:
            med = float(np.median(valid))
            if lo <= med <= hi:
                return
            msg = f"median depth of this frame is {med:.4g} m, outside the plausible {lo:g}-{hi:g} m: "
            if s.depth.suffix == ".npy" and np.load(s.depth, mmap_mode="r", allow_pickle=False).dtype.kind == "f":
                raise SASInputError(s.depth, msg + "float .npy depth is read as metres (no depth scale applies); "
                                                   "save metres, or integer units with a depth scale")
            raw = med * s.depth_scale
            c = _likely_scale(raw, units)
            if c is not None and not units.where:
                fix = (f"if the depth is not in millimetres, give its units: depth_scale {c:g} (units per metre) or "
                       f"depth_unit_scale_factor {1.0 / c:g} (metres per unit) reads the raw median {raw:g} as "
                       f"{raw / c:.3g} m")
            elif c is not None:
                fix = (f"did you mean {units.spelled(c)}? ({units.other_spelling()}; that reads the raw median "
                       f"{raw:g} as {raw / c:.3g} m)")
            else:
                fix = (f"check the depth images' units (raw median {raw:g}; depth_scale is units per metre, e.g. 1000 "
                       "for millimetres, 5000 for TUM; depth_unit_scale_factor is metres per unit)")
            raise SASInputError(s.depth, msg + f"{units.describe()}; {fix}")
        if tried >= max_tries:
            return


def _require_depth_for_tsdf(specs: Sequence[FrameSpec], source: Path, how: str) -> None:
    """Without a mesh the scene is reconstructed by TSDF fusion, which needs depth for every frame."""
    missing = [s.frame_id for s in specs if s.depth is None]
    if missing:
        raise SASInputError(source, f"{len(missing)} of {len(specs)} frames have no depth (e.g. frame {missing[0]}) "
                                    f"and no mesh is given, so the scene would be reconstructed by TSDF fusion, which "
                                    f"needs a depth image for every frame: {how}")


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
                         if meta.get(k) is not None], default=DEFAULT_DEPTH_SCALE)
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
        _require_depth_for_tsdf(specs, json_path, "give each frame a 'depth_file_path', or a mesh or point cloud "
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
        _require_depth_for_tsdf(specs, folder, "add depth/<id>.png (or .npy) for each colour image, or a mesh.ply / "
                                               "points.ply beside color/")
    check_depth_units(specs, units)
    return specs


def read_trajectory_log(path: Path) -> list[tuple[int, np.ndarray]]:
    """Camera-to-world poses of a Redwood / Open3D ``.log`` trajectory as ``(frame index, 4x4 pose)``, in file order.

    Each entry is a metadata line of three integers and four rows of four numbers; blank lines and lines starting
    with ``#`` are skipped (as Open3D's reader does). The frame index is the third number minus one (the Redwood
    format's 1-based frame number; Open3D writes ``i i i+1``).
    """
    p = require_file(path, "trajectory .log")
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise SASInputError(p, "trajectory .log is not a text file") from None
    lines = [(n, ln.split()) for n, ln in enumerate(text.splitlines(), 1)
             if ln.strip() and not ln.lstrip().startswith("#")]
    layout = "each entry is a line 'id id frame' followed by exactly 4 rows of the 4x4 camera-to-world matrix"
    out: list[tuple[int, np.ndarray]] = []
    i = 0
    while i < len(lines):
        n, head = lines[i]
        try:
            meta = [int(v) for v in head]
        except ValueError:
            meta = []
        if len(meta) != 3:
            raise SASInputError(p, f"line {n}: expected the 3 integers of an entry's header, got {len(head)} "
                                   f"value(s) '{' '.join(head)[:60]}' ({layout}; is an earlier entry's matrix "
                                   "longer than 4 rows?)")
        rows = []
        for k in range(4):
            if i + 1 + k >= len(lines):
                raise SASInputError(p, f"the entry starting at line {n} has {k} matrix rows, expected 4 (the file "
                                       f"ends early; {layout})")
            rn, row = lines[i + 1 + k]
            try:
                vals = [float(v) for v in row]
            except ValueError:
                raise SASInputError(p, f"line {rn}: matrix row is not numeric ('{' '.join(row)[:60]}')") from None
            if len(vals) != 4:
                raise SASInputError(p, f"line {rn}: row {k + 1} of the matrix of the entry starting at line {n} "
                                       f"has {len(vals)} numbers, expected 4 ({layout})")
            rows.append(vals)
        out.append((meta[2] - 1, np.array(rows, dtype=np.float64)))
        i += 5
    if not out:
        raise SASInputError(p, "trajectory .log has no poses")
    return out


def read_open3d_intrinsic(path: Path) -> tuple[np.ndarray, Optional[tuple[int, int]]]:
    """3x3 pinhole matrix and (width, height) of an ``open3d.camera.PinholeCameraIntrinsic`` JSON (or of the
    ``intrinsic`` of a ``PinholeCameraParameters`` JSON). ``intrinsic_matrix`` is 9 numbers in column-major order
    (Eigen's), i.e. ``[fx, 0, 0, 0, fy, 0, cx, cy, 1]``; a row-major list is recognised and accepted with a warning.
    """
    d = read_json(path, "camera intrinsic JSON")
    if isinstance(d, dict) and isinstance(d.get("intrinsic"), dict):
        d = d["intrinsic"]
    if not isinstance(d, dict) or "intrinsic_matrix" not in d:
        raise SASInputError(path, "not an Open3D camera intrinsic JSON: needs 'width', 'height' and "
                                  "'intrinsic_matrix' (9 numbers, column-major)")
    try:
        v = np.asarray(d["intrinsic_matrix"], dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise SASInputError(path, "'intrinsic_matrix' is not numeric") from None
    if v.size != 9:
        raise SASInputError(path, f"'intrinsic_matrix' has {v.size} numbers, expected 9 (3x3, column-major)")
    K = v.reshape(3, 3).T
    if not np.allclose(K[2], (0, 0, 1)):
        if np.allclose(v.reshape(3, 3)[2], (0, 0, 1)):
            log.warning("%s: 'intrinsic_matrix' is written row-major; Open3D writes it column-major "
                        "([fx, 0, 0, 0, fy, 0, cx, cy, 1]). Reading it row-major.", path)
            K = v.reshape(3, 3)
        else:
            raise SASInputError(path, "'intrinsic_matrix' is not a pinhole matrix (column-major, the last three "
                                      "numbers must be cx, cy, 1)")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise SASInputError(path, f"'intrinsic_matrix' has non-positive focal lengths ({K[0, 0]:g}, {K[1, 1]:g})")
    try:
        w, h = int(d.get("width", -1)), int(d.get("height", -1))
    except (TypeError, ValueError):
        raise SASInputError(path, "'width' / 'height' are not integers") from None
    return K, ((w, h) if w > 0 and h > 0 else None)


def _resolve(rel: str, *bases: Path) -> Optional[Path]:
    p = Path(rel).expanduser()
    if p.is_absolute():
        return p if p.exists() else None
    for b in bases:
        if (b / p).exists():
            return b / p
    return None


def _log_candidates(folder: Path, config: Optional[dict] = None) -> list[Path]:
    """Trajectory files of an Open3D dataset folder, best first: the config's ``template_global_traj`` or
    ``scene/trajectory.log``; else the ``*.log`` files in the folder (``trajectory.log`` first); else the
    ``*/trajectory.log`` files a level down. More than one candidate is ambiguous (the loader says so)."""
    tmpl = (config or {}).get("template_global_traj") or "scene/trajectory.log"
    if (folder / tmpl).is_file():
        return [folder / tmpl]
    try:
        top = sorted((p for p in folder.glob("*.log") if p.is_file()), key=lambda p: (p.name != "trajectory.log",
                                                                                     p.name))
        if top:
            return top[:1] if top[0].name == "trajectory.log" else top
        return sorted(p for p in folder.glob("*/trajectory.log") if p.is_file())
    except OSError:
        return []


def _open3d_config_of(path: Path) -> tuple[Path, dict, Optional[Path]]:
    """(dataset folder, config dict, config path) for a config JSON or a dataset folder (whose own top-level config
    JSON, one with ``path_dataset``, is used when there is exactly one)."""
    if path.is_file():
        cfg = read_json(path, "Open3D config")
        rel = str(cfg.get("path_dataset") or "")
        if rel.endswith(".bag"):
            raise SASInputError(path, f"path_dataset '{rel}' is a RealSense .bag: extract its frames first (Open3D's "
                                      "reconstruction system does so into color/, depth/ and camera_intrinsic.json) "
                                      "and point path_dataset at that folder")
        folder = _resolve(rel, path.parent, Path.cwd()) if rel else None
        if folder is None or not folder.is_dir():
            raise SASInputError(path, f"path_dataset '{rel}' is not a folder (relative paths are tried against the "
                                      "config's folder, then the working directory)")
        return folder, cfg, path
    configs = [p for p in sorted(path.glob("*.json")) if is_open3d_config(p)]
    if len(configs) > 1:
        raise SASInputError(path, f"several Open3D config files ({', '.join(p.name for p in configs)}): pass the one "
                                  "to use instead of the folder")
    return path, (read_json(configs[0], "Open3D config") if configs else {}), (configs[0] if configs else None)


def open3d_specs(path: Path, stride: int) -> tuple[list[FrameSpec], Optional[Path], Path]:
    """Frame specs, optional mesh (``integrated.ply`` beside the trajectory, or the config's
    ``template_global_mesh``) and dataset folder of an Open3D reconstruction-system capture (module docstring)."""
    folder, cfg, cfg_path = _open3d_config_of(Path(path))
    where = cfg_path or folder
    names = [str(cfg["color_folder"])] if cfg.get("color_folder") else O3D_COLOR_DIRS
    color_dir = next((folder / d for d in names if (folder / d).is_dir()), None)
    if color_dir is None:
        raise SASInputError(folder, f"no colour folder: expected {', '.join(n + '/' for n in names)} beside depth/")
    colors = sorted((p for p in color_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=lambda p: natural_key(
        p.name))
    if not colors:
        raise SASInputError(color_dir, "no colour images (.jpg/.png) found")
    depth_dir = folder / str(cfg.get("depth_folder") or "depth")
    if not depth_dir.is_dir():
        raise SASInputError(depth_dir, "depth folder not found (the reconstruction system needs depth/*.png)")
    depths = sorted((p for p in depth_dir.iterdir() if p.suffix.lower() == ".png"), key=lambda p: natural_key(p.name))
    if len(depths) != len(colors):
        raise SASInputError(depth_dir, f"{len(depths)} depth images (.png) but {len(colors)} colour images in "
                                       f"{color_dir.name}/: Open3D pairs them by sorted order, so the counts must "
                                       "match")
    logs = _log_candidates(folder, cfg)
    if not logs:
        raise SASInputError(folder, "no camera trajectory: expected scene/trajectory.log (Open3D's output), a *.log "
                                    "in the folder, or the config's template_global_traj")
    if len(logs) > 1:
        raise SASInputError(folder, f"several trajectory files ({', '.join(str(p.relative_to(folder)) for p in logs)}"
                                    "): keep one, or name it in a config JSON as template_global_traj")
    traj = logs[0]
    entries = read_trajectory_log(traj)
    poses: dict[str, np.ndarray] = {}
    for idx, T in entries:
        if not 0 <= idx < len(colors):
            raise SASInputError(traj, f"pose for frame number {idx + 1} but there are {len(colors)} colour images")
        if str(idx) in poses:
            raise SASInputError(traj, f"frame number {idx + 1} has two poses")
        poses[str(idx)] = T
    if len(poses) < len(colors):
        log.info("%s: %d of %d frames have a pose; the others are left out", traj, len(poses), len(colors))
    # intrinsics: the config's path_intrinsic, else a camera intrinsic JSON in the folder, else Open3D's default
    kp = None
    if cfg.get("path_intrinsic"):
        kp = _resolve(str(cfg["path_intrinsic"]), *(b for b in (cfg_path.parent if cfg_path else None, Path.cwd(),
                                                                 folder) if b is not None))
        if kp is None:
            raise SASInputError(where, f"path_intrinsic '{cfg['path_intrinsic']}' not found")
    else:
        named = [folder / n for n in O3D_INTRINSIC_NAMES if (folder / n).is_file()]
        found = named or [p for p in sorted(folder.glob("*.json"))
                          if {"intrinsic_matrix", "intrinsic"} & set(_json_dict(p) or {})]
        if len(found) > 1 and not named:
            raise SASInputError(folder, f"several camera intrinsic files ({', '.join(p.name for p in found)}): name "
                                        "one camera_intrinsic.json or set path_intrinsic in a config JSON")
        kp = found[0] if found else None
    csize = file_image_size(colors[0])
    if kp is not None:
        K, ksize = read_open3d_intrinsic(kp)
        ksize = ksize or csize
    else:
        w, h, fx, fy, cx, cy = O3D_DEFAULT_INTRINSIC
        if csize != (w, h):
            raise SASInputError(folder, f"no camera intrinsic JSON, and Open3D's default (PrimeSense {w}x{h}, "
                                        f"fx = fy = {fx:g}) does not fit {csize[0]}x{csize[1]} colour images: add "
                                        "camera_intrinsic.json ({\"width\", \"height\", \"intrinsic_matrix\": 9 "
                                        "numbers, column-major})")
        log.info("%s: no camera intrinsic JSON; using Open3D's default PrimeSense intrinsics (fx = fy = %g, "
                 "cx = %g, cy = %g)", folder, fx, cx, cy)
        K, ksize = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64), (w, h)
    units = folder_depth_units(folder, [(str(where), k, cfg[k]) for k in ("depth_scale", "depth_unit_scale_factor")
                                        if cfg.get(k) is not None])
    order = sorted(poses, key=int)
    kept, kept_poses = select_frames(order, stride, poses.__getitem__, str(traj))
    specs = [FrameSpec(frame_id=colors[int(i)].stem, color=colors[int(i)], depth=depths[int(i)], pose=T,
                       intrinsics=K, intrinsics_size=ksize, depth_scale=units.scale)
             for i, T in zip(kept, kept_poses)]
    check_depth_units(specs, units)
    mesh = None
    for cand in ([folder / cfg["template_global_mesh"]] if cfg.get("template_global_mesh") else []) + [
            traj.parent / "integrated.ply"]:
        if cand.is_file():
            mesh = cand
            break
    return specs, mesh, folder


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
