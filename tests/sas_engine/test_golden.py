"""Golden numbers: the shipped teachers, their shipped capability table, the fusions and the shipped student run on
one validation room from scratch and reproduce the per-room mIoU recorded in the committed reports
(``assets/fusion/fusion_val.json``, ``assets/ablation/ablation.json``) within +-1 point: the README's numbers are
tested by running the models, not by reading their metadata."""
import json
from pathlib import Path

import pytest
import torch

from sas_engine.eval.evaluate import evaluate_sources, store_source
from sas_engine.io import load_scene
from sas_engine.pipeline import PipelineConfig, run_split, vocabulary_text
from sas_engine.store import ArtefactStore
from sas_engine.synth import ensure_split

ROOT = Path(__file__).resolve().parents[2]
ROOM = "synth1001_00"


def test_shipped_models_reproduce_the_recorded_numbers(tmp_path):
    torch.set_num_threads(2)
    store = ArtefactStore(tmp_path / "store")
    path = ensure_split("val", first=1)[0]
    assert path.name == ROOM
    cfg = PipelineConfig()
    run_split(store, [path], cfg, workers=1)
    # the shipped capability table was installed (its stamp matches the shipped teachers), not recomputed
    assert store.path(None, "capability.rooms", ".json").is_file()
    assert not store.path(None, "capimages.rooms").exists()
    rows = [f"fused.{t}" for t in cfg.teachers] + ["fused.add", "fused.linear", "fused.sas", "pred3d.student"]
    res = evaluate_sources([load_scene(path)], [(r, store_source(store, r)) for r in rows], "scannet20",
                           vocabulary_text("scannet20", cfg), progress=False)["sources"]
    fusion = json.loads((ROOT / "assets" / "fusion" / "fusion_val.json").read_text())["sources"]
    ablation = json.loads((ROOT / "assets" / "ablation" / "ablation.json").read_text())["sources"]
    recorded = {r: fusion[r]["per_scene"][ROOM]["miou"] for r in rows[:-1]}
    recorded["pred3d.student"] = ablation["pred3d.abl_stage2_selfdistill"]["per_scene"][ROOM]["miou"]
    for r in rows:
        assert res[r]["per_scene"][ROOM]["miou"] == pytest.approx(recorded[r], abs=1.0), r
    # and on this room the capability-guided fusion is ahead of averaging and of every single teacher
    got = {r: res[r]["per_scene"][ROOM]["miou"] for r in rows}
    assert got["fused.sas"] > max(got["fused.add"], got["fused.linear"]) + 5
    assert got["fused.sas"] > max(got[f"fused.{t}"] for t in cfg.teachers)
