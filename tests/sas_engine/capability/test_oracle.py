"""In-room IoU, the oracle capability table and the capability correlation (Spearman)."""
import numpy as np
import pytest
import torch

from sas_engine.capability.oracle import capability_correlation, in_room_iou, oracle_table, spearman
from sas_engine.labels import get_label_set
from sas_engine.synth import ensure_split
from sas_engine.teachers import get_text_encoder

WORDS = list(get_label_set("scannet20").prompt_names)


class _GroundTruthTeacher:
    """A dense 'teacher' that outputs the text embedding of the true class (of a chosen class where it is told to
    err), read from a lookup of frame colours to label images."""

    kind = "dense"

    def __init__(self, name, frames, emb, swap=None):
        self.name, self.emb, self.swap = name, emb, swap or {}
        self.lookup = {f.color.tobytes(): np.asarray(f.gt_labels) for f in frames}

    def predict(self, image):
        lab = self.lookup[np.asarray(image).tobytes()].astype(np.int64).copy()
        for a, b in self.swap.items():
            lab[lab == a] = b
        lab[lab == 255] = 0
        return self.emb[torch.as_tensor(lab)]


def test_in_room_iou_oracle_and_correlation():
    from sas_engine.io import load_scene

    path = ensure_split("tiny")[0]
    scene = load_scene(path)
    enc = get_text_encoder(None)
    emb = enc.encode([f"a {w} in a scene" for w in WORDS]).float()
    frames = [scene.frames[i] for i in range(0, len(scene.frames), 5)]
    present = sorted(set(np.concatenate([np.unique(f.gt_labels) for f in frames]).tolist()) - {255})
    a, b = present[1], present[2]
    perfect = _GroundTruthTeacher("perfect", frames, emb)
    blind = _GroundTruthTeacher("blind", frames, emb, swap={a: b})          # calls every `a` pixel `b`
    iou, prov = in_room_iou([perfect, blind], [path], WORDS, enc, frame_step=5, progress=False)
    assert prov["frames"] == len(frames) and prov["scenes"] == [scene.scene_id]
    assert np.allclose(iou[0, present], 1.0)                                 # 255 pixels are not scored
    assert iou[1, a] == 0.0 and 0 < iou[1, b] < 1 and iou[1, present[0]] == 1.0
    absent = [k for k in range(len(WORDS)) if k not in present]
    assert np.isnan(iou[:, absent]).all()
    table = oracle_table([perfect, blind], [path], WORDS, enc, frame_step=5, progress=False)
    assert table.teachers == ["perfect", "blind"] and np.allclose(table.scores, iou, equal_nan=True)
    assert table.provenance[0]["synthesizer"] == "oracle" and table.image_counts[a] > 0

    corr = capability_correlation(iou, iou, ["perfect", "blind"], WORDS)   # a table equal to the rooms: rho 1
    assert corr["pairs"]["perfect|blind"]["rho"] == pytest.approx(1.0) and corr["mean_rho"] == pytest.approx(1.0)
    flipped = capability_correlation(-iou, iou, ["perfect", "blind"], WORDS)
    assert flipped["pairs"]["perfect|blind"]["rho"] == pytest.approx(-1.0)


def test_spearman_matches_scipy_and_handles_ties():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.integers(0, 5, 12).astype(float), rng.normal(size=12)
        assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert np.isnan(spearman([1, 2], [2, 1])) and np.isnan(spearman([1, 1, 1], [1, 2, 3]))
