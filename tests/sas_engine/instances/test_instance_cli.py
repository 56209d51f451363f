"""``sas instances`` (store, query answer, submission export, JSON) and ``sas eval --task instances``."""
import json

import numpy as np

from sas_engine.cli import main
from sas_engine.instances.adapters import read_submission


def test_sas_instances_command(tiny_store, tmp_path, capsys, class_feature_artefact):
    store, scenes = tiny_store
    s = scenes[0]
    class_feature_artefact(store, s, "pred3d.oracle")
    rc = main(["instances", str(s.source), "--store", str(store.root), "--features", "pred3d.oracle,pred3d.student",
               "--query", "chair", "--export", str(tmp_path / "sub"), "--json", str(tmp_path / "q.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"{s.scene_id}:" in out and "pred3d.oracle: labels" in out and "instance" in out
    ans = json.loads((tmp_path / "q.json").read_text())
    assert ans["scene"] == s.scene_id and ans["query"] == "chair" and ans["count"] == len(ans["instances"])
    assert all("point_indices" in i for i in ans["instances"])
    preds = read_submission(tmp_path / "sub" / f"{s.scene_id}.txt", s.num_points)
    assert preds and all(int(np.asarray(p.mask).sum()) >= 100 for p in preds)
    assert store.header(s.scene_id, "instances.pred3d.student")["geometry"] == s.geometry_digest
    # bad inputs are one error line
    assert main(["instances", str(s.source), "--store", str(store.root), "--features", "pred3d.nothing"]) == 2
    assert "pred3d.nothing" in capsys.readouterr().err


def test_sas_eval_task_instances(tiny_store, tmp_path, capsys, class_feature_artefact):
    store, scenes = tiny_store
    for s in scenes:
        class_feature_artefact(store, s, "pred3d.oracle")
    rc = main(["eval", "--task", "instances", "--split", "tiny", "--sources", "pred3d.oracle,pred3d.student",
               "--store", str(store.root), "--out", str(tmp_path / "rep")])
    assert rc == 0
    res = json.loads((tmp_path / "rep" / "instances.json").read_text())
    src = res["val"]["sources"]
    assert set(src) == {"pred3d.oracle", "pred3d.student"} and res["val"]["scenes"] == [s.scene_id for s in scenes]
    assert src["pred3d.oracle"]["ap50"] > src["pred3d.student"]["ap50"]
    md = (tmp_path / "rep" / "instances.md").read_text()
    assert "| pred3d.oracle |" in md and "AP50" in md
