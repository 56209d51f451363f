"""Matterport K-class label sets and nuScenes' 43 detailed query names."""
import numpy as np

from sas_engine.labels import LABEL_SETS, MATTERPORT160, NUSCENES16, get_label_set


def test_matterport_k_sets():
    for k in (40, 80, 160):
        ls = get_label_set(f"matterport{k}")
        assert len(ls) == k and len(set(ls.names)) == k
        assert ls.names == MATTERPORT160[:k]
    mp = get_label_set("matterport160")
    assert mp.names[:6] == ("wall", "door", "ceiling", "floor", "picture", "window")
    assert mp.names[-1] == "alarm" and get_label_set("matterport40").names[-1] == "faucet"
    assert get_label_set("matterport80").names[-1] == "bucket"
    i = mp.names.index("refridgerator")
    assert mp.prompts()[i] == "a refrigerator in a scene"


def test_nuscenes_43_map_back_to_16():
    ls = LABEL_SETS["nuscenes43"]
    assert len(ls) == 16 and ls.names == NUSCENES16
    prompts = ls.prompts()
    assert len(prompts) == 43 and prompts[0] == "a barrier in a scene"
    q2c = ls.query_to_class()
    assert q2c.shape == (43,) and set(q2c.tolist()) == set(range(16))
    names = [q for q, _ in ls.query_names]
    assert ls.names[q2c[names.index("excavator")]] == "construction vehicle"
    assert ls.names[q2c[names.index("sod")]] == "terrain"
    assert ls.names[q2c[names.index("road")]] == "driveable surface"
    # every class has at least one query and the mapping is monotone in class order
    assert (np.diff(q2c) >= 0).all()
