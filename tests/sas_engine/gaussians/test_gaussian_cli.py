"""``sas gaussians``: fit, eval with one teacher on a tiny room (small images, few steps), render, bad input."""
import json

import numpy as np

from sas_engine.cli import main

FAST = ["--fit.width", "40", "--fit.height", "30", "--fit.iterations", "6", "--fit.init-voxel", "0.1",
        "--fit.holdout-every", "4", "--encoder.steps", "3", "--encoder.voxel", "0.15", "--threads", "1"]


def test_sas_gaussians_eval_and_render(tiny_scene, tmp_path, capsys):
    store = str(tmp_path / "store")
    src = str(tiny_scene.source)
    rc = main(["gaussians", "eval", src, "--teachers", "lseg_compact", "--store", store, "--out",
               str(tmp_path / "rep"), *FAST])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "| lseg_compact | lifted |" in out and "| lseg_compact | distilled |" in out
    rep = json.loads((tmp_path / "rep" / "gaussians.json").read_text())
    res = rep["results"][src]
    conf = np.asarray(res["confusion"]["lseg_compact"]["lifted"])
    held = len([i for i in range(len(tiny_scene.frames)) if i % 4 == 3])
    # every labelled pixel of every held-out view is counted once (the room's views are mostly labelled)
    assert 0.5 * held * 40 * 30 < conf.sum() <= held * 40 * 30
    summ = res["summary"]["lseg_compact"]["lifted"]
    assert 0 <= summ["miou"] <= 100 and summ["points"] == conf.sum()
    assert (tmp_path / "rep" / "gaussians.md").read_text().startswith("# 3D Gaussian segmentation")
    # second run: every stage cached (same numbers)
    rc = main(["gaussians", "eval", src, "--teachers", "lseg_compact", "--store", store, *FAST])
    assert rc == 0 and f"{summ['miou']:.1f}" in capsys.readouterr().out
    png = tmp_path / "r.png"
    rc = main(["gaussians", "render", src, "--teachers", "lseg_compact", "--source", "lseg_compact", "--store", store,
               "--frame", "3", "--out", str(png), *FAST])
    assert rc == 0 and png.is_file()
    from PIL import Image

    assert Image.open(png).size == (3 * 40, 30)


def test_sas_gaussians_bad_input(tiny_scene, tmp_path, capsys):
    store = str(tmp_path / "store")
    rc = main(["gaussians", "render", str(tiny_scene.source), "--store", store, "--frame", "999", *FAST])
    assert rc == 2 and "--frame 999 is outside" in capsys.readouterr().err
    rc = main(["gaussians", "fit", str(tiny_scene.source), "--store", store, "--fit.holdout-every", "1"])
    assert rc == 2 and "holdout_every" in capsys.readouterr().err
    rc = main(["gaussians", "eval", str(tiny_scene.source), "--store", store, "--teachers", "lseg_compact",
               "--sources", "nope", *FAST])
    assert rc == 2 and "unknown Gaussian feature source 'nope'" in capsys.readouterr().err
