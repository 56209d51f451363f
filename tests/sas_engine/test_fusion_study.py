"""``sas ablate --part fusion`` end to end on the tiny split with small random teachers: every row, the oracle
table, the correlation and the tau grid land in the report, and the M = 2 rows are real subsets."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from sas_engine.fusion_study import FusionStudyConfig, run_fusion_study
from sas_engine.labels import get_label_set
from sas_engine.pipeline import PipelineConfig
from sas_engine.store import ArtefactStore
from sas_engine.teachers.compact import save_compact
from sas_engine.teachers.compact_nets import CompactDenseNet, CompactMaskNet, DenseNetConfig, MaskNetConfig
from sas_engine.teachers.proposals import ProposalConfig


@pytest.fixture(scope="module")
def teacher_ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(1)
    base = {"text_encoder": "minilm", "vocabulary": list(get_label_set("scannet20").prompt_names),
            "template": "a {} in a scene", "train": {}}
    nets = {"lseg_compact": CompactDenseNet(DenseNetConfig()), "seem_compact": CompactMaskNet(MaskNetConfig()),
            "odise_compact": CompactDenseNet(DenseNetConfig(input_scale=0.5))}
    out = {}
    for name, net in nets.items():
        kind = "compact_mask" if name == "seem_compact" else "compact_dense"
        extra = {"proposals": dataclasses.asdict(ProposalConfig())} if kind == "compact_mask" else {}
        save_compact(d / f"{name}.pt", kind, net, {**base, "net": dataclasses.asdict(net.cfg), **extra}, {})
        out[name] = {"checkpoint": str(d / f"{name}.pt")}
    return out


def test_fusion_study_on_tiny(tmp_path, teacher_ckpts):
    torch.set_num_threads(1)
    store = ArtefactStore(tmp_path / "store")
    pcfg = PipelineConfig(capability_images=1, teacher_kwargs=teacher_ckpts, student_checkpoint=str(tmp_path / "x"))
    cfg = FusionStudyConfig(pipeline=pcfg, val_split="tiny", select_split="tiny", oracle_rooms=2, select_rooms=1,
                            frame_step=10, taus=(0.05, 0.5), weightings=("mean",), plain_images=1, parallel=1)
    out = run_fusion_study(store, cfg, tmp_path / "report")
    names = ["lseg_compact", "seem_compact", "odise_compact"]
    v = out["summary"]["val_miou"]
    assert list(v) == [f"fused.{n}" for n in names] + ["fused.add", "fused.linear", "fused.sas", "study.add_m2",
                                                        "study.sas_m2", "study.sas_oracle"]
    assert all(0.0 <= m <= 100.0 for m in v.values())
    assert set(out["summary"]["tau_grid_teaching_rooms"]) == {"0.05|mean", "0.5|mean"}
    assert out["summary"]["chosen_on_teaching_rooms"]["tau"] in (0.05, 0.5)
    assert set(out["correlation"]) == {"rooms", "synthetic"}
    assert set(out["correlation"]["rooms"]["pairs"]) == {"lseg_compact|seem_compact", "lseg_compact|odise_compact",
                                                         "seem_compact|odise_compact"}
    # the oracle table is the in-room IoU, stored like any capability table
    oracle = json.loads(store.path(None, "capability.oracle", ".json").read_text())
    room = np.array([[np.nan if x is None else x / 100 for x in out["in_room_iou"][n]] for n in names])
    got = np.array([[np.nan if x is None else x for x in r] for r in oracle["scores"]])
    assert np.allclose(room, got, atol=1e-4, equal_nan=True)
    # the M = 2 rows combine only the first two teachers; the oracle row used other weights than the shipped table
    sid = out["validation"]["scenes"][0]
    m2, m3 = store.read_any(sid, "study.sas_m2"), store.read_any(sid, "fused.sas")
    assert m2["teachers"] == names[:2] and m2["weights"].shape[1] == 2 and m3["weights"].shape[1] == 3
    orc = store.read_any(sid, "study.sas_oracle")
    assert orc["__header__"]["config"]["synth"] == "oracle" and not torch.equal(orc["weights"], m3["weights"])
    md = (tmp_path / "report" / "fusion.md").read_text()
    assert "Spearman" in md and "study.sas_oracle" in md
    # the study's variants are not layers of the app (only fused.<teacher> and fused.sas|add|linear are)
    assert not [p for p in store.scene_dir(sid).iterdir() if p.name.startswith("fused.") and "_m2" in p.name]
    for f in ("fusion.json", "fusion_val.md", "capability_correlation.png", "iou_per_class.png"):
        assert (tmp_path / "report" / f).stat().st_size > 500
