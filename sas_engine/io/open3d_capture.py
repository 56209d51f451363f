"""Open3D reconstruction-system captures: the dataset folder its ``examples/python/reconstruction_system`` reads
(colour + depth folders, camera intrinsic JSON, config JSON) and the ``.log`` trajectory and mesh it writes. The
layout, file by file, is in :mod:`sas_engine.io.custom`'s docstring and ``docs/captures.md``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import SASInputError
from .depth_units import check_depth_units, folder_depth_units
from .files import IMAGE_EXTS, natural_key, read_json, require_file
from .files import image_size as file_image_size
from .frames import FrameSpec, select_frames

log = logging.getLogger(__name__)

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


def is_open3d_capture(path: Path) -> bool:
    """An Open3D reconstruction-system config JSON, or a folder with ``depth/``, a colour folder (``color/``,
    ``rgb/`` or ``image/``) and a ``.log`` trajectory (see the module docstring for where it is looked for)."""
    if path.is_file():
        return is_open3d_config(path)
    return (path.is_dir() and (path / "depth").is_dir() and any((path / d).is_dir() for d in O3D_COLOR_DIRS)
            and bool(_log_candidates(path)))


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
