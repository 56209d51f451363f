"""``scripts/instance_report.py``: one proposal set labelled by each source, Markdown + JSON, the bar check, missing
sources left out and listed."""
import importlib.util
import json
from pathlib import Path


ROOT = Path(__file__).resolve().parents[3]


def _script():
    spec = importlib.util.spec_from_file_location("instance_report", ROOT / "scripts" / "instance_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_report_on_tiny_rooms(tiny_store, tmp_path, capsys, class_feature_artefact):
    store, scenes = tiny_store
    for s in scenes:
        class_feature_artefact(store, s, "fused.sas")  # true-class features: the "fusion" wins
        class_feature_artefact(store, s, "fused.noisy", confuse={4: 5, 6: 12})  # chair->sofa, table->desk
    rc = _script().main(["--split", "tiny", "--store", str(store.root), "--teachers", "noisy,absent",
                         "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "instances.json").read_text())
    src = res["val"]["sources"]
    assert list(src) == ["fused.noisy", "fused.absent", "fused.sas", "pred3d.student"]
    assert src["fused.absent"]["ap50"] is None and len(src["fused.absent"]["missing_scenes"]) == 2
    assert src["fused.sas"]["ap50"] > src["fused.noisy"]["ap50"]
    assert res["bar"]["passed"] is False  # a teacher without numbers cannot be beaten
    assert res["teachers"] == ["noisy", "absent"] and res["proposal_config"]["feature_levels"] == [0.85]
    md = (tmp_path / "instances.md").read_text()
    assert "| fused.sas |" in md and "not met" in md and "AP50 per class" in md
    assert "fused.sas" in capsys.readouterr().out
