"""Zero-shot labelling: held-back checks (GT-equal -> 100, permuted names -> chance), nuScenes 43->16, ensemble, TTA."""
import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.eval.metrics import confusion_matrix, miou
from sas_engine.eval.zeroshot import FeatureSet, evaluate_features, predict_labels, text_embeddings
from sas_engine.labels import get_label_set


def orthonormal(q, c, seed=0):
    g = np.random.default_rng(seed).standard_normal((c, q))
    return np.linalg.qr(g)[0].T.astype(np.float32)  # [q, c] orthonormal rows


def noisy_features(text, gt, noise, seed=1):
    rng = np.random.default_rng(seed)
    f = text[gt] + noise * rng.standard_normal((len(gt), text.shape[1])).astype(np.float32)
    return f.astype(np.float16)


@pytest.fixture
def world():
    k, c, n = 20, 64, 4000
    rng = np.random.default_rng(0)
    gt = rng.integers(0, k, n)
    gt[rng.random(n) < 0.1] = 255  # some ignore points
    text = orthonormal(k, c)
    feats = noisy_features(text, np.where(gt == 255, 0, gt), 0.05)
    return k, gt, text, feats


def test_features_matching_gt_give_100(world):
    k, gt, text, feats = world
    conf = evaluate_features(feats, None, text, gt, num_classes=k)
    assert miou(conf) == pytest.approx(1.0)
    assert miou(conf, "openscene") == pytest.approx(1.0)


def test_permuted_class_names_give_chance(world):
    k, gt, text, feats = world
    scores = []
    for seed in range(12):
        perm = np.random.default_rng(seed).permutation(k)
        fixed = int((perm == np.arange(k)).sum())
        conf = evaluate_features(feats, None, text[perm], gt, num_classes=k)  # row j now embeds class perm[j]
        # only classes mapped to themselves stay right: mIoU = fixed points / K (1 fixed point expected)
        assert miou(conf) == pytest.approx(fixed / k, abs=1e-6)
        scores.append(miou(conf))
    assert np.mean(scores) < 0.1  # chance level 1 / K = 0.05
    # and a uniformly random prediction is near the analytic chance IoU 1 / (2K - 1)
    rnd = np.random.default_rng(5).integers(0, k, len(gt))
    assert miou(confusion_matrix(rnd, gt, k)) == pytest.approx(1 / (2 * k - 1), abs=0.01)


def test_mask_marks_misses_and_chunking_is_exact(world):
    k, gt, text, feats = world
    mask = np.ones(len(gt), bool)
    mask[::4] = False
    a = predict_labels(feats, text, mask=mask, chunk_size=97)
    b = predict_labels(torch.from_numpy(feats), torch.from_numpy(text), mask=torch.from_numpy(mask))
    np.testing.assert_array_equal(a, b)
    assert (a[::4] == -1).all() and (a[mask] >= 0).all()
    conf = evaluate_features(feats, mask, text, gt, num_classes=k)
    ev = gt != 255
    assert conf[:, -1].sum() == int((~mask & ev).sum())
    assert miou(conf) == pytest.approx(0.75, abs=0.03)  # a quarter of every class missed


def test_nuscenes_43_queries_map_back_to_16():
    ls = get_label_set("nuscenes43")
    q2c = ls.query_to_class()
    assert len(ls.prompts()) == 43 and len(ls) == 16 and q2c.max() == 15
    text = orthonormal(43, 64, seed=2)
    rng = np.random.default_rng(0)
    q = rng.integers(0, 43, 3000)  # each point looks like one detailed name
    gt = q2c[q]
    feats = noisy_features(text, q, 0.05)
    pred = predict_labels(feats, text, q2c)
    np.testing.assert_array_equal(pred, gt)
    conf = evaluate_features(feats, None, text, gt, num_classes=16, query_to_class=q2c)
    assert miou(conf) == pytest.approx(1.0)
    names = [n for n, _ in ls.query_names]
    lawn = feats[:1].copy()
    lawn[0] = text[names.index("lawn")]
    assert predict_labels(lawn, text, q2c)[0] == ls.names.index("terrain")


def test_ensemble_takes_the_more_confident_source():
    k, c, n = 5, 16, 300
    text = orthonormal(k, c)
    gt = np.arange(n) % k
    wrong = (gt + 1) % k
    a, b, m = slice(0, 100), slice(100, 200), slice(200, 300)
    f2d = np.zeros((n, c), np.float32)
    f3d = np.zeros((n, c), np.float32)
    f2d[a] = text[gt[a]]  # 2D right and sure (cos 1)
    f3d[a] = 0.8 * text[wrong[a]] + 0.6 * text[gt[a]]  # 3D wrong, cos 0.8
    f2d[b] = 0.7 * text[wrong[b]] + 0.3 * text[gt[b]]  # 2D wrong, cos ~0.92
    f3d[b] = text[gt[b]]  # 3D right, cos 1
    f3d[m] = 0.9 * text[gt[m]] + 0.1 * text[wrong[m]]  # 2D has no feature here, 3D right
    mask2d = np.ones(n, bool)
    mask2d[m] = False
    ens = FeatureSet([f2d, f3d], [mask2d, None], "max_score")
    np.testing.assert_array_equal(predict_labels(ens, text), gt)
    only2d = predict_labels(f2d, text, mask=mask2d)
    assert (only2d[a] == gt[a]).all() and (only2d[b] == wrong[b]).all() and (only2d[m] == -1).all()
    assert miou(evaluate_features(ens, None, text, gt)) == pytest.approx(1.0)


def test_tta_averages_logits():
    k, c, n = 6, 24, 600
    text = orthonormal(k, c)
    gt = np.arange(n) % k
    noise = 0.9 * np.random.default_rng(0).standard_normal((n, c)).astype(np.float32)
    base = text[gt]
    p1, p2 = base + noise, base - noise  # each pass alone is often wrong, their mean is exact
    single = miou(evaluate_features(p1, None, text, gt))
    assert single < 0.9
    assert miou(evaluate_features([p1, p2], None, text, gt)) == pytest.approx(1.0)
    stacked = torch.from_numpy(np.stack([p1, p2]))  # [A, N, C] stored layout
    assert miou(evaluate_features(stacked, None, text, gt)) == pytest.approx(1.0)


def test_dimension_mismatch_and_bad_sets_raise():
    text = orthonormal(4, 8)
    with pytest.raises(SASInputError, match="8-d"):
        predict_labels(np.zeros((3, 5), np.float32), text)
    with pytest.raises(SASInputError, match="queries"):
        predict_labels(np.zeros((3, 8), np.float32), text, np.arange(3))
    with pytest.raises(SASInputError, match="different point counts"):
        FeatureSet([np.zeros((3, 8)), np.zeros((4, 8))])
    with pytest.raises(SASInputError, match="combine"):
        FeatureSet([np.zeros((3, 8))], combine="median")


class RecordingEncoder:
    name, dim = "recording", 3

    def __init__(self):
        self.seen = []

    def encode(self, texts):
        self.seen.extend(texts)
        return torch.tensor([[len(t), 1.0, 0.0] for t in texts])


def test_text_embeddings_use_template_and_normalise():
    enc = RecordingEncoder()
    emb = text_embeddings("scannet20", enc, "a photo of a {}")
    assert emb.shape == (20, 3)
    assert enc.seen[0] == "a photo of a wall" and enc.seen[-1] == "a photo of a other"
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(20))
    with pytest.raises(SASInputError, match="placeholder"):
        text_embeddings("scannet20", enc, "no slot")
