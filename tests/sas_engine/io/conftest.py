"""Tiny fixtures in each supported format, written by the tests themselves (never downloaded)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sas_engine.io import write_ply

# camera looking straight down (OpenCV convention: x right, y down, z forward = world -z)
R_DOWN = np.array([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]])
# wall, floor, chair, blinds (-> ignore), otherprop (-> ignore), otherfurniture, unannotated
NYU_CYCLE = np.array([1, 2, 5, 13, 40, 39, 0])


def pose_down(x: float, y: float, height: float) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R_DOWN
    T[:3, 3] = (x, y, height)
    return T


def grid_mesh(n: int = 10, size: float = 1.0):
    """n x n vertices on the floor z = 0 over [0, size]^2 and its 2 (n-1)^2 triangles."""
    g = np.linspace(0, size, n, dtype=np.float32)
    xx, yy = np.meshgrid(g, g, indexing="xy")
    pts = np.stack([xx.ravel(), yy.ravel(), np.zeros(n * n, np.float32)], 1)
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            i = r * n + c
            faces += [(i, i + 1, i + n), (i + 1, i + n + 1, i + n)]
    return pts, np.array(faces, np.int64)


def save_rgb(path: Path, w: int, h: int, value=(120, 60, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((h, w, 3), np.uint8)
    img[...] = value
    img[:, : w // 2, 0] = 250  # left half differs so resizing is visible
    Image.fromarray(img).save(path)


def save_u16(path: Path, arr: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint16)).save(path)


def save_matrix(path: Path, m: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, m)


def write_scannet_scan(root: Path, scene_id: str = "scene0000_00", n_frames: int = 45, invalid=(20,),
                       synthetic: bool = False, color_size=(80, 60), depth_size=(40, 30), exported: bool = False,
                       n: int = 10) -> Path:
    """A ScanNet raw scan folder: 10x10 floor mesh, labels, segs, aggregation, exported frames."""
    folder = root / "scans" / scene_id
    folder.mkdir(parents=True)
    pts, faces = grid_mesh(n)
    N = len(pts)
    rgb = (np.arange(N * 3) % 256).astype(np.uint8).reshape(N, 3)
    v = {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2], "red": rgb[:, 0], "green": rgb[:, 1], "blue": rgb[:, 2],
         "alpha": np.full(N, 255, np.uint8)}
    write_ply(folder / f"{scene_id}_vh_clean_2.ply", v, faces)
    write_ply(folder / f"{scene_id}_vh_clean_2.labels.ply",
              {**v, "label": NYU_CYCLE[np.arange(N) % len(NYU_CYCLE)].astype(np.uint16)}, faces)
    segs = (np.arange(N) // 10) * 7
    (folder / f"{scene_id}_vh_clean_2.0.010000.segs.json").write_text(
        json.dumps({"sceneId": scene_id, "segIndices": segs.tolist()}))
    groups = [{"id": 0, "objectId": 0, "segments": [0, 7], "label": "chair"},
              {"id": 1, "objectId": 1, "segments": [14], "label": "table"}]
    (folder / f"{scene_id}.aggregation.json").write_text(json.dumps({"sceneId": scene_id, "segGroups": groups}))
    if synthetic:
        (folder / "sas_synthetic.json").write_text(json.dumps({"generator": "test", "seed": 0, "room_type": "office"}))
    fdir = folder / "exported" if exported else folder
    dw, dh = depth_size
    Kd = np.eye(4)
    Kd[0, 0] = Kd[1, 1] = 30.0 * dw / 40
    Kd[0, 2], Kd[1, 2] = (dw - 1) / 2, (dh - 1) / 2
    save_matrix(fdir / "intrinsic" / "intrinsic_depth.txt", Kd)
    Kc = Kd.copy()
    Kc[:2] *= color_size[0] / dw
    save_matrix(fdir / "intrinsic" / "intrinsic_color.txt", Kc)
    for i in range(n_frames):
        save_rgb(fdir / "color" / f"{i}.jpg", *color_size)
        save_u16(fdir / "depth" / f"{i}.png", np.full((dh, dw), 1500))
        pose = pose_down(0.5 + 0.001 * i, 0.5, 1.5)
        if i in invalid:
            pose[:] = -np.inf
        save_matrix(fdir / "pose" / f"{i}.txt", pose)
        if synthetic:
            lab = np.full((dh, dw), 255, np.uint8)
            lab[:, : dw // 2] = 1
            save_u16(fdir / "instance" / f"{i}.png", np.where(lab == 1, 4, 0))
            fdir.joinpath("label").mkdir(exist_ok=True)
            Image.fromarray(lab).save(fdir / "label" / f"{i}.png")
    return folder


@pytest.fixture
def scannet_scan(tmp_path) -> Path:
    return write_scannet_scan(tmp_path)


@pytest.fixture
def fx():
    """The fixture-writing helpers of this conftest (test modules cannot import conftest under importlib mode)."""
    import sys

    return sys.modules[__name__]
