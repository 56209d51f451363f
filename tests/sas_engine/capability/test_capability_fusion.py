"""Capability-guided fusion (Eq. 6-8) against hand-computed cases, its limits, and the Add / Linear baselines."""
import math

import numpy as np
import pytest
import torch

from sas_engine.capability.fusion import add_fuse, capability_fuse, capability_weights, fill_missing, linear_fuse
from sas_engine.errors import SASInputError

E = torch.eye(3)                                    # 3 classes, 3-d features = one-hot class directions


def _sm(x):
    e = [math.exp(v) for v in x]
    return [v / sum(e) for v in e]


def test_two_teachers_by_hand():
    S = np.array([[0.6, 0.2, 0.5],                  # teacher L
                  [0.3, 0.7, 0.4]])                 # teacher S
    fl = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]])   # L votes 0, 2
    fs = torch.tensor([[0.1, 0.8, 0.1], [0.1, 0.1, 0.9]])   # S votes 1, 2
    ok = torch.ones(2, dtype=torch.bool)
    r = capability_fuse([fl, fs], [ok, ok], S, E, tau=0.05)
    # point 0: k_L = 0, k_S = 1 -> w_L = (0.6 + 0.2) / 2 = 0.4, w_S = (0.3 + 0.7) / 2 = 0.5
    a0 = _sm([0.4 / 0.05, 0.5 / 0.05])
    # point 1: both vote 2 -> w_L = 0.5, w_S = 0.4
    a1 = _sm([0.5 / 0.05, 0.4 / 0.05])
    assert r.weights[0].tolist() == pytest.approx(a0, abs=1e-6)
    assert r.weights[1].tolist() == pytest.approx(a1, abs=1e-6)
    want = torch.stack([a0[0] * fl[0] + a0[1] * fs[0], a1[0] * fl[1] + a1[1] * fs[1]])
    assert torch.allclose(r.features.float(), want, atol=2e-3)   # float16 storage
    assert r.features.dtype == torch.float16 and r.mask.tolist() == [True, True]
    # the release's normalised variant: w / (w_L + w_S) before the softmax
    rn = capability_fuse([fl, fs], [ok, ok], S, E, tau=0.05, weighting="normalized")
    assert rn.weights[0].tolist() == pytest.approx(_sm([0.4 / 0.9 / 0.05, 0.5 / 0.9 / 0.05]), abs=1e-6)


def test_three_teachers_by_hand():
    S = np.array([[0.8, 0.1, 0.3],
                  [0.2, 0.9, 0.3],
                  [0.5, 0.5, 0.6]])
    f = [torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.2, 0.1, 0.7]])]
    ok = [torch.ones(1, dtype=torch.bool)] * 3
    r = capability_fuse(f, ok, S, E, tau=0.1)
    # votes k = (0, 1, 2); w_t = mean(S_t[0], S_t[1], S_t[2])
    w = [(0.8 + 0.1 + 0.3) / 3, (0.2 + 0.9 + 0.3) / 3, (0.5 + 0.5 + 0.6) / 3]
    a = _sm([x / 0.1 for x in w])
    assert r.weights[0].tolist() == pytest.approx(a, abs=1e-6)
    want = sum(ai * fi[0] for ai, fi in zip(a, f))
    assert torch.allclose(r.features[0].float(), want, atol=2e-3)
    # teacher 2 missing at this point: only teachers 0 and 1 vote and are weighted
    r2 = capability_fuse(f, [ok[0], ok[1], torch.zeros(1, dtype=torch.bool)], S, E, tau=0.1)
    w2 = [(0.8 + 0.1) / 2, (0.2 + 0.9) / 2]
    a2 = _sm([x / 0.1 for x in w2])
    assert r2.weights[0].tolist() == pytest.approx(a2 + [0.0], abs=1e-6)
    assert torch.allclose(r2.features[0].float(), a2[0] * f[0][0] + a2[1] * f[1][0], atol=2e-3)


def test_tau_limits():
    S = np.array([[0.7, 0.7, 0.7], [0.2, 0.2, 0.2]])
    g = torch.Generator().manual_seed(0)
    fl, fs = torch.randn(50, 3, generator=g), torch.randn(50, 3, generator=g)
    ok = torch.ones(50, dtype=torch.bool)
    sharp = capability_fuse([fl, fs], [ok, ok], S, E, tau=1e-4)
    assert torch.allclose(sharp.weights, torch.tensor([1.0, 0.0]).expand(50, 2))
    assert torch.allclose(sharp.features.float(), fl, atol=3e-3)        # picks the more capable teacher
    flat = capability_fuse([fl, fs], [ok, ok], S, E, tau=1e6)
    assert torch.allclose(flat.weights, torch.full((50, 2), 0.5), atol=1e-6)
    assert torch.allclose(flat.features.float(), (fl + fs) / 2, atol=3e-3)   # the mean
    # the per-class dependence: teacher 1 better at class 1 -> wins where both vote class 1
    S2 = np.array([[0.9, 0.1, 0.5], [0.1, 0.9, 0.5]])
    p = torch.tensor([[0.0, 1.0, 0.0]])
    one = torch.ones(1, dtype=torch.bool)
    assert capability_fuse([p, p * 2], [one, one], S2, E, tau=1e-4).weights[0].tolist() == pytest.approx([0, 1])


def test_masks_catch_all_and_missing_capabilities():
    S = np.array([[0.9, np.nan, 0.5], [0.1, 0.3, np.nan]])
    filled = fill_missing(S)
    assert np.allclose(filled.numpy(), [[0.9, 0.7, 0.5], [0.1, 0.3, 0.2]])
    fl = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    fs = torch.tensor([[0, 1.0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    ml = torch.tensor([True, True, False])
    ms = torch.tensor([True, False, False])
    r = capability_fuse([fl, fs], [ml, ms], S, E, tau=0.05)
    assert r.mask.tolist() == [True, True, False]
    assert r.weights[1].tolist() == [1.0, 0.0]                       # only L has a feature
    assert r.weights[2].tolist() == [0.0, 0.0] and r.features[2].abs().sum() == 0
    # point 0: votes (0, 1) -> w_L = (0.9 + 0.7) / 2, w_S = (0.1 + 0.3) / 2 (NaN filled with the row mean)
    assert r.weights[0].tolist() == pytest.approx(_sm([0.8 / 0.05, 0.2 / 0.05]), abs=1e-6)
    # catch-all: points where S votes class 1 keep S's pure feature
    rc = capability_fuse([fl, fs], [ml, ms], S, E, tau=0.05, catch_all=(1, 1))
    assert rc.weights[0].tolist() == [0.0, 1.0] and torch.equal(rc.features[0].float(), fs[0])
    with pytest.raises(SASInputError):
        capability_fuse([fl, fs], [ml, ms], S, torch.eye(4)[:, :3], tau=0.05)
    with pytest.raises(SASInputError):
        capability_fuse([fl, fs], [ml], S, E)
    with pytest.raises(SASInputError):
        capability_weights(torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1, dtype=torch.bool),
                           torch.ones(2, 3), tau=0.0)


def test_add_and_linear():
    fa = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 0]])
    fb = torch.tensor([[0, 1.0, 0], [0, 1.0, 0], [0, 0, 0]])
    ma = torch.tensor([True, True, False])
    mb = torch.tensor([True, False, False])
    add = add_fuse([fa, fb], [ma, mb])
    assert add.features.float().tolist() == [[0.5, 0.5, 0], [1, 0, 0], [0, 0, 0]]
    assert add.weights.tolist() == [[0.5, 0.5], [1, 0], [0, 0]] and add.mask.tolist() == [True, True, False]
    lin = linear_fuse([fa, fb], [ma, mb], [0.2, 0.8])
    assert torch.allclose(lin.features.float()[0], torch.tensor([0.2, 0.8, 0.0]), atol=1e-3)
    assert lin.weights[1].tolist() == pytest.approx([1.0, 0.0])       # renormalised over the valid teacher
    lin0 = linear_fuse([fa, fb], [ma, mb], [0.0, 1.0])
    assert lin0.weights[1].tolist() == pytest.approx([1.0, 0.0])      # valid teachers all weight 0 -> their mean
    with pytest.raises(SASInputError):
        linear_fuse([fa, fb], [ma, mb], [0.5, -0.5])


def test_chunking_and_float16_inputs_agree():
    g = torch.Generator().manual_seed(1)
    f = [torch.randn(1000, 8, generator=g).half() for _ in range(2)]
    m = [torch.rand(1000, generator=g) > 0.2 for _ in range(2)]
    E8 = torch.randn(5, 8, generator=g)
    S = np.random.default_rng(0).random((2, 5))
    a = capability_fuse(f, m, S, E8, chunk=97)
    b = capability_fuse(f, m, S, E8, chunk=4096)
    assert torch.equal(a.features, b.features) and torch.equal(a.weights, b.weights)
    assert torch.equal(a.mask, m[0] | m[1])
    assert torch.allclose(a.weights[a.mask].sum(1), torch.ones(int(a.mask.sum())))
