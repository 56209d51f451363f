"""The whole pipeline on the tiny synthetic split with small randomly initialised compact teachers: every stage's
artefact is produced and cached, the ablation writes its report, and the exported student loads for inference."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from sas_engine.ablate import RUNS, AblateConfig, run_ablation
from sas_engine.labels import get_label_set
from sas_engine.pipeline import PipelineConfig, run_split
from sas_engine.store import ArtefactStore
from sas_engine.synth import ensure_split
from sas_engine.teachers.compact import save_compact
from sas_engine.teachers.compact_nets import CompactDenseNet, CompactMaskNet, DenseNetConfig, MaskNetConfig
from sas_engine.teachers.proposals import ProposalConfig


@pytest.fixture(scope="module")
def teacher_ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(0)
    base = {"text_encoder": "minilm", "vocabulary": list(get_label_set("scannet20").prompt_names),
            "template": "a {} in a scene", "train": {}}
    dn, mn = CompactDenseNet(DenseNetConfig()), CompactMaskNet(MaskNetConfig())
    cn = CompactDenseNet(DenseNetConfig(input_scale=0.5, context_blocks=4, context_dilation=2))
    save_compact(d / "dense.pt", "compact_dense", dn, {**base, "net": dataclasses.asdict(dn.cfg)}, {})
    save_compact(d / "context.pt", "compact_dense", cn, {**base, "net": dataclasses.asdict(cn.cfg)}, {})
    save_compact(d / "mask.pt", "compact_mask", mn, {**base, "net": dataclasses.asdict(mn.cfg),
                                                    "proposals": dataclasses.asdict(ProposalConfig())}, {})
    return {"lseg_compact": {"checkpoint": str(d / "dense.pt")}, "seem_compact": {"checkpoint": str(d / "mask.pt")},
            "odise_compact": {"checkpoint": str(d / "context.pt")}}


def test_pipeline_and_ablation_end_to_end(tmp_path, teacher_ckpts):
    torch.set_num_threads(1)
    store = ArtefactStore(tmp_path / "store")
    pcfg = PipelineConfig(capability_images=1, teacher_kwargs=teacher_ckpts,
                          student_checkpoint=str(tmp_path / "none.pt"))
    # trained on the first tiny room, checkpoints picked, reported and held out on the second
    cfg = AblateConfig(train_split="tiny[:1]", select_split="tiny[1:]", val_split="tiny", pipeline=pcfg,
                       epochs_stage1=1, epochs_stage2=1, stage2_weight=0.5, pseudo_keep=0.6,
                       val_every_stage2=1, held_out_split="tiny[1:]", held_out_rooms=2, tta=1)
    with pytest.raises(ValueError, match="both trained on and"):
        run_ablation(store, cfg, tmp_path / "report")
    cfg = dataclasses.replace(cfg, val_split="tiny[1:]")
    res = run_ablation(store, cfg, tmp_path / "report", export_student=tmp_path / "student.pt")

    # every row of Table 3 was evaluated on both tiny scenes
    rows = ["fused.lseg_compact", "fused.seem_compact", "fused.odise_compact", "fused.add", "fused.linear",
            "fused.sas"] + \
           [f"pred3d.abl_{n}" for n, _, _ in RUNS] + [f"pred3d.abl_{n}_tta" for n, _, _ in RUNS]
    assert list(res["sources"]) == rows
    for r in rows:
        assert 0.0 <= res["sources"][r]["miou"] <= 100.0
        assert res["sources"][r]["missing_scenes"] == []
    assert len(res["scenes"]) == 1
    # the TTA rows are the same checkpoints with augmented passes averaged in: other features, same coverage
    sid0 = res["scenes"][0]
    one = store.read_any(sid0, "pred3d.abl_stage1_point")["features"].float()
    aug = store.read_any(sid0, "pred3d.abl_stage1_point_tta")["features"].float()
    assert one.shape == aug.shape and not torch.allclose(one, aug, atol=1e-3)
    out = json.loads((tmp_path / "report" / "ablation.json").read_text())
    assert set(out["sources"]) == set(rows) and "timings" in out["meta"]
    assert (tmp_path / "report" / "ablation.md").read_text().count("|") > 20
    assert (tmp_path / "report" / "iou_per_class.png").stat().st_size > 1000
    # validation curves over optimiser steps; row (c) continues after the step of (b)'s best checkpoint
    curves = out["meta"]["curves"]
    assert set(curves) == {n for n, _, _ in RUNS} and all(len(c) == 1 for c in curves.values())
    assert curves["stage2_selfdistill"][0][0] > curves["stage1_superpoint"][0][0] > 0
    assert (tmp_path / "report" / "training_curves.png").stat().st_size > 1000
    # every row is also scored on the held-out rooms, in the JSON and their own report
    held = out["meta"]["held_out"]
    assert held["split"] == "tiny[1:]" and held["rooms"] == 1 and set(held["miou"]) == set(rows)
    ho = json.loads((tmp_path / "report" / "ablation_held_out.json").read_text())
    assert len(ho["scenes"]) == 1 and all(abs(ho["sources"][r]["miou"] - held["miou"][r]) < 0.01 for r in rows)
    # and on the points the 2D fusion covers: there every 2D row has a feature for every scored point, the points
    # it misses no longer count, so no 2D row scores lower than on all points
    cov = json.loads((tmp_path / "report" / "ablation_covered.json").read_text())
    assert set(cov["sources"]) == set(rows) and out["meta"]["covered_miou"]["fused.sas"] == \
        round(cov["sources"]["fused.sas"]["miou"], 2)
    assert res["sources"]["fused.sas"]["coverage"] < 100.0 == cov["sources"]["fused.sas"]["coverage"]
    for r in rows[:6]:
        assert cov["sources"][r]["miou"] >= res["sources"][r]["miou"] - 1e-6, r
    assert set(held["miou_covered"]) == set(rows)
    assert (tmp_path / "report" / "ablation_held_out_covered.md").is_file()

    # rows (a) and (b) start at lr; row (c) resumes (b)'s best weights at the gentler stage-2 rate
    runs = store.root / "runs"
    ck = {n: torch.load(runs / n / "best.pt", weights_only=True)["config"] for n, _, _ in RUNS}
    assert ck["stage1_point"]["lr"] == ck["stage1_superpoint"]["lr"] == cfg.lr
    assert ck["stage2_selfdistill"]["lr"] == cfg.lr_stage2 != cfg.lr
    assert ck["stage2_selfdistill"]["init_checkpoint"] == str(runs / "stage1_superpoint" / "best.pt")
    assert ck["stage2_selfdistill"]["epochs_stage1"] == 0 and not ck["stage1_superpoint"]["epochs_stage2"]
    # the stage-2 loss settings reach row (c) only; the stage-1 rows keep the trainer's defaults
    assert (ck["stage2_selfdistill"]["stage2_weight"], ck["stage2_selfdistill"]["pseudo_keep"]) == (0.5, 0.6)
    assert ck["stage1_superpoint"]["stage2_weight"] == ck["stage1_point"]["pseudo_keep"] == 1.0
    # row (c) validates and checkpoints on its own interval; the stage-1 rows keep val_every
    assert ck["stage2_selfdistill"]["val_every"] == ck["stage2_selfdistill"]["checkpoint_every"] == 1
    assert ck["stage1_point"]["val_every"] == ck["stage1_superpoint"]["checkpoint_every"] == cfg.val_every != 1
    exported = torch.load(tmp_path / "student.pt", weights_only=True)
    assert exported["iteration"] == torch.load(runs / "stage2_selfdistill" / "best.pt", weights_only=True)["iteration"]

    # a warm-started ablation: rows (a) and (b) start from the first run's best weights, curves count on from there
    warm = dataclasses.replace(cfg, init_runs=str(runs))
    res2 = run_ablation(store, warm, tmp_path / "report2", runs_dir=tmp_path / "runs2",
                        export_student=tmp_path / "s1.pt", export_row="stage1_superpoint")
    assert torch.load(tmp_path / "s1.pt", weights_only=True)["config"]["run"] == "stage1_superpoint"
    with pytest.raises(ValueError, match="unknown ablation row"):
        run_ablation(store, warm, tmp_path / "report3", export_row="stage3")
    ck2 = torch.load(tmp_path / "runs2" / "stage1_point" / "best.pt", weights_only=True)
    assert ck2["config"]["init_checkpoint"] == str(runs / "stage1_point" / "best.pt")
    first, second = curves["stage1_point"][-1][0], res2["meta"]["curves"]["stage1_point"][0][0]
    assert second == first + ck2["iteration"]
    assert res2["meta"]["curves"]["stage2_selfdistill"][0][0] > second
    # --train-only: the rows are trained (here: resumed, finished) and picked, nothing is reported, and the
    # reported splits are not read (an unknown split name would raise if they were)
    only = run_ablation(store, dataclasses.replace(warm, train_only=True, val_split="no_such_split",
                                                   held_out_split="no_such_split"),
                        tmp_path / "report4", runs_dir=tmp_path / "runs2")
    assert only["curves"] == res2["meta"]["curves"] and not (tmp_path / "report4").exists()
    assert set(only["checkpoints"]) == {n for n, _, _ in RUNS}

    # artefacts: SAS weights are a softmax over the teachers; votes count views per class; gallery images exist
    sid = res["scenes"][0]
    sas = store.read_any(sid, "fused.sas")
    m = sas["mask"]
    assert m.any() and torch.allclose(sas["weights"][m].sum(1), torch.ones(int(m.sum())), atol=1e-4)
    single = store.read_any(sid, "fused.lseg_compact")
    assert torch.equal(single["votes"].sum(1), single["view_count"].to(single["votes"].dtype))
    table = json.loads(store.path(None, "capability.rooms", ".json").read_text())
    assert np.array(table["scores"], dtype=float).shape == (3, 20)
    assert sas["weights"].shape[1] == 3 and sas["teachers"] == ["lseg_compact", "seem_compact", "odise_compact"]
    assert table["images"] and (store.root / "_shared" / table["images"][0]["image"]).is_file()

    # a second run only reads the caches
    before = {p: p.stat().st_mtime_ns for p in store.scene_dir(sid).iterdir()}
    run_split(store, ensure_split("tiny")[:1], pcfg, student=False)
    assert {p: p.stat().st_mtime_ns for p in store.scene_dir(sid).iterdir() if p in before} == before

    # the exported float16 student loads and yields per-point features
    from sas_engine.distill.infer import infer_points, load_student
    from sas_engine.io import load_scene

    net, meta = load_student(tmp_path / "student.pt")
    scene = load_scene(ensure_split("tiny")[0])
    assert meta["input_color"]  # the ablation's default students read colour
    f = infer_points(net, scene.points, meta["voxel_size"], colors=scene.colors)
    assert f.shape == (scene.num_points, 384) and f.dtype == torch.float16 and torch.isfinite(f.float()).all()
