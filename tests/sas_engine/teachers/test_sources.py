"""Each compact teacher's own data source: splits disjoint from each other and from every evaluation split, label
granularity applied exactly as the data card says."""
import numpy as np
import pytest

from sas_engine.errors import SASInputError
from sas_engine.labels import IGNORE, get_label_set
from sas_engine.synth.splits import SPLITS
from sas_engine.teachers import DEMO_TEACHERS, TEACHERS
from sas_engine.teachers.compact_train import RECIPES, CompactTrainConfig, recipe_config, recipe_train_record
from sas_engine.teachers.sources import SOURCES, TEACHER_SOURCES, TeachingSource, get_source

NAMES = list(get_label_set("scannet20").names)


def test_every_demo_teacher_has_a_recipe_a_source_and_its_own_rooms():
    assert set(DEMO_TEACHERS) == set(RECIPES) == set(TEACHER_SOURCES) and all(t in TEACHERS for t in DEMO_TEACHERS)
    seeds = {}
    for name in DEMO_TEACHERS:
        src = get_source(RECIPES[name].source)
        assert TEACHER_SOURCES[name] == src.name and len(src.card) > 200 and src.merges
        seeds[name] = {s for s, _ in SPLITS[src.split].scenes}
        assert len(seeds[name]) == 56
    # no two teachers share a room, and no teacher sees an evaluation, tuning, student or selection room
    others = set().union(*({s for s, _ in SPLITS[n].scenes} for n in ("val", "train", "tune", "teach", "tiny")))
    a, b, c = seeds.values()
    assert not (a & b) and not (a & c) and not (b & c)
    assert not ((a | b | c) & others)
    # and the three worlds differ in room mix, camera or lighting, as their cards say
    mixes = [tuple(sorted({r for _, r in SPLITS[get_source(RECIPES[n].source).split].scenes})) for n in DEMO_TEACHERS]
    assert "bathroom" not in mixes[2] and "bathroom" in mixes[0] and "bathroom" in mixes[1]
    kinds = [[r for _, r in SPLITS[get_source(RECIPES[n].source).split].scenes] for n in DEMO_TEACHERS]
    wet = [sum(k in ("kitchen", "bathroom") for k in ks) / len(ks) for ks in kinds]
    assert wet[1] >= 0.45 and wet[0] <= 0.2                                 # objects: kitchens and bathrooms
    cfgs = [SPLITS[get_source(RECIPES[n].source).split].cfg for n in DEMO_TEACHERS]
    assert cfgs[2].ambient < cfgs[0].ambient and cfgs[2].camera_height != cfgs[0].camera_height


def test_remap_merges_and_unannotated_classes():
    src = TeachingSource("t", "tiny", (("desk", "table"), ("picture", None)), "card")
    lab = np.array([[NAMES.index("desk"), NAMES.index("picture")], [NAMES.index("wall"), IGNORE]], np.uint8)
    out = src.remap(lab)
    assert out.tolist() == [[NAMES.index("table"), IGNORE], [NAMES.index("wall"), IGNORE]]
    assert out.dtype == np.uint8 and lab[0, 0] == NAMES.index("desk")  # input untouched
    with pytest.raises(SASInputError, match="unknown class"):
        TeachingSource("t", "tiny", (("spaceship", "table"),), "card").lookup()
    with pytest.raises(SASInputError, match="unknown teaching source"):
        get_source("imagenet")


def test_the_shipped_sources_blind_each_teacher_to_different_classes():
    blind = {n: {a for a, _ in SOURCES[TEACHER_SOURCES[n]].merges} for n in DEMO_TEACHERS}
    assert blind["lseg_compact"] >= {"shower curtain", "counter", "desk", "refrigerator"}
    assert blind["seem_compact"] >= {"window", "picture", "door", "bookshelf"}
    assert not (blind["lseg_compact"] & blind["seem_compact"])


def test_recipe_config_and_record():
    base = CompactTrainConfig()
    for name, r in RECIPES.items():
        cfg = recipe_config(base, r)
        assert cfg.train_split == get_source(r.source).split and cfg.seed == r.seed
        rec = recipe_train_record(cfg, r)
        assert rec["recipe"]["name"] == name and rec["source"]["name"] == r.source
        assert rec["train_split"] == cfg.train_split
    ctx = recipe_config(base, RECIPES["odise_compact"])
    assert ctx.dense_crop[0] >= 240 and ctx.dense_context_blocks == 4  # whole frames, whole-frame context
