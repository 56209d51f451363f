"""Write generated rooms in the layouts real data comes in, so the real loaders read them unchanged.

* :func:`write_scannet`: ScanNet raw + exported layout, ``<root>/scans/<scene_id>/`` with the mesh, labels PLY,
  segments, aggregation, ``color/ depth/ pose/ intrinsic/`` and the synthetic extras ``label/ instance/`` and the
  marker ``sas_synthetic.json`` (written last: a folder without it is incomplete).
* :func:`write_openscene`: OpenScene's preprocessed layout, ``<root>/scannet_3d/<split>/<id>_vh_clean_2.pth`` and
  ``<root>/scannet_2d/<id>/{color,depth,pose,label,instance}/`` with ``intrinsics.txt``.

Folders are built under a temporary name next to the target and renamed into place (atomic per scene).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import config_dict, config_hash
from ..labels import SCANNET20
from .config import GENERATOR_VERSION
from .render import RenderedFrame
from .room import SynthRoom

MARKER = "sas_synthetic.json"
"""Marker file of a complete synthetic scan folder (the io loader switches to the ``synthetic`` preset on it)."""


def marker_info(room: SynthRoom, num_frames: int) -> dict:
    """Content of the marker file: generator version, seed, room type, config and its hash, counts."""
    present = sorted(set(int(c) for c in np.unique(room.labels)) - {255})
    return {
        "generator": "sas_engine.synth", "version": GENERATOR_VERSION, "seed": room.seed, "room_type": room.room_type,
        "scene_id": room.scene_id, "config": config_dict(room.cfg), "config_hash": config_hash(room.cfg),
        "num_vertices": room.num_vertices, "num_faces": int(len(room.faces)), "num_frames": int(num_frames),
        "spacing_m": round(room.spacing, 5), "classes": [SCANNET20[c] for c in present],
        "objects": [{"id": i, "label": o.name, "nyu40": int(o.nyu40)} for i, o in enumerate(room.layout.objects)],
    }


def _new_tmp(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the final folder should read like any other
    return tmp


def _commit(tmp: Path, final: Path) -> None:
    """Move the finished temp folder into place, replacing an older version."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _nyu40_colors(nyu: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(40)
    pal = rng.integers(40, 255, (256, 3)).astype(np.uint8)
    pal[0] = 0
    return pal[np.clip(nyu, 0, 255)]


def _write_frames(d: Path, frames: Sequence[RenderedFrame], quality: int, gt: bool) -> None:
    from PIL import Image

    for sub in ("color", "depth", "pose") + (("label", "instance") if gt else ()):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f.color).save(d / "color" / f"{i}.jpg", quality=quality)
        mm = np.clip(np.round(f.depth * 1000.0), 0, 65535).astype(np.uint16)
        Image.fromarray(mm).save(d / "depth" / f"{i}.png")
        np.savetxt(d / "pose" / f"{i}.txt", f.pose, fmt="%.8f")
        if gt:
            Image.fromarray(f.labels.astype(np.uint8)).save(d / "label" / f"{i}.png")
            Image.fromarray((f.instances.astype(np.int64) + 1).astype(np.uint16)).save(d / "instance" / f"{i}.png")


def _k4(K: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = K
    return out


def write_scannet(room: SynthRoom, frames: Sequence[RenderedFrame], root: str | Path) -> Path:
    """Write ``room`` and its rendered ``frames`` as a ScanNet scan folder ``<root>/scans/<scene_id>``; returns it."""
    from ..io.ply import write_ply

    sid = room.scene_id
    final = Path(root) / "scans" / sid
    tmp = _new_tmp(final)
    try:
        v = room.vertices
        n = len(v)
        alpha = np.full(n, 255, np.uint8)
        base = {"x": v[:, 0], "y": v[:, 1], "z": v[:, 2]}
        write_ply(tmp / f"{sid}_vh_clean_2.ply", {**base, "red": room.colors[:, 0], "green": room.colors[:, 1],
                                                  "blue": room.colors[:, 2], "alpha": alpha}, room.faces)
        lc = _nyu40_colors(room.vertex_nyu40)
        write_ply(tmp / f"{sid}_vh_clean_2.labels.ply", {**base, "red": lc[:, 0], "green": lc[:, 1], "blue": lc[:, 2],
                                                         "alpha": alpha, "label": room.vertex_nyu40.astype(np.uint16)},
                  room.faces)
        segs_name = f"{sid}_vh_clean_2.0.010000.segs.json"
        (tmp / segs_name).write_text(json.dumps({
            "params": {"kThresh": "0.01", "segMinVerts": "20", "minPoints": "750", "maxPoints": "5000",
                       "thinThresh": "0.05", "flatThresh": "0.001", "minLength": "0.02", "maxLength": "1",
                       "synthetic": (f"patches of {room.cfg.segment_size} m per primitive face"
                                     if room.cfg.segments == "patches" else
                                     "Segmentator on the seam-welded mesh, split by object")},
            "sceneId": sid, "segIndices": room.segments.tolist()}))
        seg_obj = np.full(int(room.segments.max()) + 1, -1, np.int64)
        seg_obj[room.segments] = room.vertex_instance
        groups = [{"id": i, "objectId": i, "segments": np.nonzero(seg_obj == i)[0].tolist(), "label": o.name}
                  for i, o in enumerate(room.layout.objects)]
        (tmp / f"{sid}.aggregation.json").write_text(json.dumps({
            "sceneId": f"scannet.{sid}", "appId": f"sas.synth.v{GENERATOR_VERSION}", "segGroups": groups,
            "segmentsFile": f"scannet.{segs_name}"}))
        _write_frames(tmp, frames, room.cfg.jpeg_quality, gt=True)
        (tmp / "intrinsic").mkdir()
        K = frames[0].intrinsics if frames else None
        if K is not None:
            for name in ("intrinsic_color.txt", "intrinsic_depth.txt"):
                np.savetxt(tmp / "intrinsic" / name, _k4(K), fmt="%.6f")
            for name in ("extrinsic_color.txt", "extrinsic_depth.txt"):
                np.savetxt(tmp / "intrinsic" / name, np.eye(4), fmt="%.6f")
        (tmp / MARKER).write_text(json.dumps(marker_info(room, len(frames)), indent=1))
        _commit(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def write_openscene(room: SynthRoom, frames: Sequence[RenderedFrame], root: str | Path, split: str = "train"
                    ) -> Path:
    """Write ``room`` in OpenScene's layout under ``root``; returns the ``.pth`` file.

    The 3D file is ``torch.save((coords, colors, labels))`` of numpy arrays: coords float32 metres, colors float32
    ``rgb / 127.5 - 1``, labels float32 ScanNet-20 (255 ignore). 2D frames go to ``scannet_2d/<scene_id>/``.
    """
    import torch

    from ..store import atomic_write

    root = Path(root)
    sid = room.scene_id
    d2 = root / "scannet_2d" / sid
    tmp = _new_tmp(d2)
    try:
        _write_frames(tmp, frames, room.cfg.jpeg_quality, gt=True)
        if frames:
            np.savetxt(tmp / "intrinsics.txt", _k4(frames[0].intrinsics), fmt="%.6f")
        _commit(tmp, d2)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    coords = room.vertices.astype(np.float32)
    colors = (room.colors.astype(np.float32) / 127.5 - 1.0).astype(np.float32)
    labels = room.labels.astype(np.float32)
    pth = root / "scannet_3d" / split / f"{sid}_vh_clean_2.pth"
    atomic_write(pth, lambda f: torch.save((coords, colors, labels), f))
    return pth
