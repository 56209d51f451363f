"""`sas info` end to end on a tiny ScanNet scan folder written by the test."""
import json

import numpy as np
import torch
from PIL import Image

from sas_engine.cli import main
from sas_engine.io import write_ply
from sas_engine.store import ArtefactStore


def _scan(root):
    folder = root / "scans" / "scene0042_00"
    folder.mkdir(parents=True)
    n = 30
    g = np.arange(n, dtype=np.float32)
    v = {"x": g / 10, "y": (g % 3) / 10, "z": np.zeros(n, np.float32), "red": np.full(n, 200, np.uint8),
         "green": np.zeros(n, np.uint8), "blue": np.zeros(n, np.uint8)}
    faces = np.array([[i, i + 1, i + 2] for i in range(n - 2)])
    write_ply(folder / "scene0042_00_vh_clean_2.ply", v, faces)
    nyu = np.array([1] * 10 + [5] * 12 + [0] * 8, np.uint16)  # wall x10, chair x12, unannotated x8
    write_ply(folder / "scene0042_00_vh_clean_2.labels.ply", {**v, "label": nyu}, faces)
    (folder / "scene0042_00_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": [i // 5 for i in
                                                                                                  range(n)]}))
    for sub in ("color", "depth", "pose", "intrinsic"):
        (folder / sub).mkdir()
    np.savetxt(folder / "intrinsic" / "intrinsic_depth.txt", np.diag([30.0, 30.0, 1, 1]) + np.array(
        [[0, 0, 19.5, 0], [0, 0, 14.5, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))
    for i in range(41):
        Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(folder / "color" / f"{i}.jpg")
        Image.fromarray(np.full((30, 40), 1000, np.uint16)).save(folder / "depth" / f"{i}.png")
        np.savetxt(folder / "pose" / f"{i}.txt", np.eye(4) if i != 40 else np.full((4, 4), -np.inf))
    return folder


def test_sas_info_on_scannet_folder(tmp_path, capsys):
    folder = _scan(tmp_path)
    store = tmp_path / "store"
    ArtefactStore(store).save("scene0042_00", "superpoints", {"superpoints": torch.zeros(30, dtype=torch.int64)},
                              kind="superpoints", geometry="30:0")
    rc = main(["info", str(folder), "--store", str(store)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "scene0042_00" in out and "dataset preset: scannet" in out
    assert "points     30" in out and "28 faces" in out
    assert "frames     2" in out  # frames 0 and 20 (stride 20); frame 40 has an invalid pose
    assert "image      320x240" in out and "depth: yes" in out
    assert "superpts   6" in out
    assert "classes    2 of 20" in out and "wall(10)" in out and "chair(12)" in out and "ignore: 8 points" in out
    assert "artefacts  1 cached" in out and "superpoints" in out


def test_sas_info_bad_input_is_one_clear_line(tmp_path, capsys):
    folder = _scan(tmp_path)
    rc = main(["info", str(folder), "--dataset", "kitti", "--store", str(tmp_path / "st")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: unknown dataset preset 'kitti'") and "Traceback" not in err
    (folder / "scene0042_00_vh_clean_2.labels.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\n")
    rc = main(["info", str(folder), "--store", str(tmp_path / "st")])
    err = capsys.readouterr().err
    assert rc == 2 and "scene0042_00_vh_clean_2.labels.ply" in err and "end_header" in err
