"""A scan without frames (a PLY mesh or point cloud alone): the 3D student runs on it, the 2D stages say plainly why
they are skipped."""
import numpy as np
import pytest

from sas_engine.cli import main
from sas_engine.io import load_scene, write_ply
from sas_engine.pipeline import PipelineConfig, build_teachers, run_scene
from sas_engine.store import ArtefactStore
from sas_engine.synth import ensure_split


@pytest.fixture(scope="module")
def ply_scan(tmp_path_factory):
    room = load_scene(ensure_split("tiny")[0])
    p = tmp_path_factory.mktemp("lidar") / "myscan.ply"
    keep = np.arange(0, room.num_points, 4)  # a point cloud (no faces), as a LiDAR export would be
    pts, col = room.points[keep], room.colors[keep]
    write_ply(p, {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2], "red": col[:, 0], "green": col[:, 1],
                  "blue": col[:, 2]})
    return p, len(keep)


def test_student_runs_and_2d_stages_explain(ply_scan, tmp_path, capsys):
    import torch

    torch.set_num_threads(1)
    p, n = ply_scan
    store = tmp_path / "store"
    assert main(["infer", str(p), "--checkpoint", "checkpoints/student_synthetic.pt", "--name", "student",
                 "--store", str(store)]) == 0
    got = ArtefactStore(store).read_any("myscan", "pred3d.student")
    assert got["features"].shape == (n, 384) and got["__header__"]["geometry"] == load_scene(p).geometry_digest
    capsys.readouterr()
    for cmd in (["extract", str(p), "--teacher", "lseg_compact"], ["fuse", str(p), "--mode", "lseg_compact"]):
        assert main([*cmd, "--store", str(store)]) == 2
        err = capsys.readouterr().err
        assert "myscan.ply: has no RGB-D frames" in err and "3D student" in err
    # the pipeline skips the 2D stages for it and still gives superpoints and the student's layer
    cfg = PipelineConfig()
    made = run_scene(ArtefactStore(store), load_scene(p), cfg, build_teachers(cfg), table=None, progress=False)
    assert made == ["superpoints", "pred3d.student"]
