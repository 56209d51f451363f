"""Capability scoring on hand-made images, masks and teachers; the capability table in the store."""
import json

import numpy as np
import pytest
import torch

from sas_engine.capability import CapabilityTable, SynthImage, load_capability_table, save_capability_table
from sas_engine.capability.scoring import IoUAccumulator, combine_logits, score_capabilities, simplex_grid, teacher_logits
from sas_engine.errors import SASInputError
from sas_engine.store import ArtefactStore

VOCAB = ["chair", "table", "sofa"]


class WordEncoder:
    """Text encoder for the tests: a one-hot direction per vocabulary word found in the text; "couch" ~ sofa."""

    name, dim = "words", 3

    def encode(self, texts):
        out = []
        for t in texts:
            if "couch" in t:
                v = [0.1, 0.2, 0.97]
            else:
                v = [float(w in t) for w in VOCAB]
            out.append(v)
        e = torch.tensor(out)
        return e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)


class LabelMapDense:
    """Dense teacher returning one-hot features of a fixed label map per image id (pixel [0, 0, 0])."""

    def __init__(self, name, maps, down=1):
        self.name, self.maps, self.down = name, maps, down

    def predict(self, image):
        lab = self.maps[int(image[0, 0, 0])][::self.down, ::self.down]
        f = torch.zeros(*lab.shape, 3)
        ok = lab >= 0
        f[torch.as_tensor(ok)] = torch.eye(3)[torch.as_tensor(lab[ok])]
        return f


class Pred:
    def __init__(self, mask, label, score):
        self.mask, self.label, self.score = mask, label, score


class FixedMasks:
    def __init__(self, name, preds):
        self.name, self.preds = name, preds

    def predict(self, image):
        return self.preds[int(image[0, 0, 0])]


def _img(i, h=20, w=20):
    im = np.zeros((h, w, 3), np.uint8)
    im[0, 0, 0] = i
    return im


def _blk(h, w, r0, r1, c0, c1):
    m = np.zeros((h, w), bool)
    m[r0:r1, c0:c1] = True
    return m


def test_iou_variants_by_hand():
    gt_a, gt_b = _blk(20, 20, 0, 10, 0, 10), _blk(20, 20, 15, 17, 15, 17)      # 100 px and 4 px
    pred_a = _blk(20, 20, 0, 10, 0, 5)                                        # 50 px inside -> IoU 0.5
    pred_b = _blk(20, 20, 15, 16, 15, 16)                                     # 1 px inside -> IoU 0.25
    maps = {0: np.where(pred_a, 0, 1), 1: np.where(pred_b, 0, 1)}
    images = [SynthImage(_img(0), gt_a, 0, {"id": 0}), SynthImage(_img(1), gt_b, 0, {"id": 1})]
    t = score_capabilities([LabelMapDense("d", maps)], images, VOCAB, WordEncoder(), linear_step=None)
    assert t.scores_per_image[0, 0] == pytest.approx((0.5 + 0.25) / 2)
    assert t.scores_pooled[0, 0] == pytest.approx((50 + 1) / (100 + 4))
    assert t.mode == "pooled" and t.scores[0, 0] == pytest.approx(51 / 104)
    assert np.isnan(t.scores[0, 1]) and np.isnan(t.scores[0, 2])               # no images of table / sofa
    assert t.image_counts.tolist() == [2, 0, 0]
    assert [p["id"] for p in t.provenance] == [0, 1]
    t2 = score_capabilities([LabelMapDense("d", maps)], images, VOCAB, WordEncoder(), mode="per_image",
                            linear_step=None)
    assert t2.scores[0, 0] == pytest.approx(0.375)
    acc = IoUAccumulator(1, 1)
    acc.add(0, 0, 0, 0)                                                      # empty union: not counted
    assert np.isnan(acc.pooled()[0, 0]) and np.isnan(acc.per_image()[0, 0])
    with pytest.raises(SASInputError):
        score_capabilities([LabelMapDense("d", maps)], images, VOCAB, WordEncoder(), mode="mean")


def test_dense_upsampling_and_mask_teacher_mapping():
    enc = WordEncoder()
    vocab = enc.encode([f"a {w} in a scene" for w in VOCAB])
    # dense at half resolution: a uniform class-1 map upsamples to class 1 everywhere
    lab = np.ones((20, 20), np.int64)
    logits, valid = teacher_logits(LabelMapDense("d", {0: lab}, down=2), _img(0), vocab)
    assert logits.shape == (20, 20, 3) and bool(valid.all()) and bool((logits.argmax(-1) == 1).all())
    # mask teacher: "couch" maps to sofa; overlapping masks -> the higher score wins; uncovered pixels invalid
    m1, m2 = _blk(20, 20, 0, 10, 0, 10), _blk(20, 20, 5, 15, 5, 15)
    preds = {0: [Pred(m1, "couch", 0.9), Pred(m2, "table", 0.5)]}
    logits, valid = teacher_logits(FixedMasks("m", preds), _img(0), vocab, enc)
    lab = torch.where(valid, logits.argmax(-1), torch.full((20, 20), -1))
    assert int(lab[2, 2]) == 2 and int(lab[7, 7]) == 2 and int(lab[12, 12]) == 1 and int(lab[18, 18]) == -1
    assert int(valid.sum()) == 100 + 100 - 25


def test_linear_weights_chosen_on_synthesized_images():
    # teacher A: right with logit 1; teacher B: wrong with logit 1 -> combination right iff w_A > w_B
    gts = [_blk(20, 20, 0, 20, 0, 20)] * 2
    right = {0: np.ones((20, 20), np.int64), 1: np.full((20, 20), 2)}
    wrong = {0: np.zeros((20, 20), np.int64), 1: np.zeros((20, 20), np.int64)}    # ties go to class 0: wrong
    images = [SynthImage(_img(0), gts[0], 1, {}), SynthImage(_img(1), gts[1], 2, {})]
    t = score_capabilities([LabelMapDense("A", right), LabelMapDense("B", wrong)], images, VOCAB, WordEncoder())
    assert t.scores_pooled[:, 1:].tolist() == [[1.0, 1.0], [0.0, 0.0]]
    assert t.linear_weights == pytest.approx([0.6, 0.4])   # first grid point (enumeration order) with w_A > w_B
    assert t.linear_miou == pytest.approx(1.0)
    g = simplex_grid(3, 0.1)
    assert g.shape == (66, 3) and np.allclose(g.sum(1), 1) and (g >= 0).all()
    # combine_logits: weights renormalised over valid teachers
    la, lb = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    c, ok = combine_logits([la, lb], [torch.tensor([True]), torch.tensor([False])], [0.3, 0.7])
    assert c.tolist() == [[1.0, 0.0]] and ok.tolist() == [True]


def test_table_store_round_trip(tmp_path):
    t = CapabilityTable(scores=np.array([[0.5, np.nan], [0.25, 0.75]]), teachers=["a", "b"], classes=["x", "otherf"],
                        scores_pooled=np.array([[0.5, np.nan], [0.25, 0.75]]),
                        scores_per_image=np.array([[0.4, np.nan], [0.2, 0.7]]), image_counts=np.array([3, 0]),
                        linear_weights=[0.3, 0.7], linear_miou=0.6, provenance=[{"seed": 1}], words=["x", "other"])
    store = ArtefactStore(tmp_path / "store")
    jpath, ppath = save_capability_table(store, t, "synthetic", config={"m": 3})
    assert jpath.name == "capability.synthetic.json" and ppath.name == "capability.synthetic.png"
    assert ppath.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    raw = json.loads(jpath.read_text())                                   # strict JSON: NaN stored as null
    assert raw["scores"][0][1] is None and raw["__header__"]["kind"] == "capability"
    back = load_capability_table(store, "synthetic")
    assert back.teachers == ["a", "b"] and back.classes == ["x", "otherf"] and back.prompt_words() == ["x", "other"]
    assert np.allclose(back.scores, t.scores, equal_nan=True)
    assert back.linear_weights == [0.3, 0.7] and back.provenance == [{"seed": 1}]
    assert back.select(["b", "a"]).tolist()[0] == [0.25, 0.75]
    with pytest.raises(SASInputError):
        back.row("c")
    with pytest.raises(SASInputError, match="sas capability"):
        load_capability_table(store, "sd")
    with pytest.raises(SASInputError):
        CapabilityTable(scores=np.zeros((2, 3)), teachers=["a"], classes=["x"])
