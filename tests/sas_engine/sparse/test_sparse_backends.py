"""Backend registry selection, tensor ops (BN, ReLU, cat) and the spconv weight permutation."""
import importlib.util

import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.sparse import (BACKENDS, SparseBatchNorm, SparseConv3d, SparseReLU, available_backends, cat,
                               get_backend, make_sparse_tensor, set_default_backend)
from sas_engine.sparse import backends as bk
from sas_engine.sparse.backends import me_to_spconv_weight


def coords(n=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.unique(torch.randint(-4, 5, (n, 3), generator=g), dim=0)


def test_registry_and_selection(monkeypatch):
    assert set(BACKENDS) == {"torch", "minkowski", "spconv"}
    assert get_backend().name == "torch" and get_backend("auto", "cpu").name == "torch"
    assert "torch" in available_backends("cpu") and "torch" in available_backends("cuda")
    with pytest.raises(SASInputError, match="unknown sparse backend"):
        get_backend("torchsparse")
    # pretend MinkowskiEngine is installed / missing, independently of this machine
    real = importlib.util.find_spec
    monkeypatch.setattr(bk.importlib.util, "find_spec", lambda name: object() if name == "MinkowskiEngine" else
                        (None if name == "spconv" else real(name)))
    assert available_backends("cuda") == ["torch", "minkowski"]
    assert get_backend("auto", "cuda").name == "minkowski"
    assert get_backend("auto", "cpu").name == "torch"  # CPU never picks an optional backend
    with pytest.raises(SASInputError, match="needs the package 'spconv'"):
        get_backend("spconv")
    monkeypatch.setattr(bk.importlib.util, "find_spec", lambda name: None if name in ("MinkowskiEngine", "spconv")
                        else real(name))
    assert get_backend("auto", "cuda").name == "torch"
    monkeypatch.setenv("SAS_SPARSE_BACKEND", "minkowski")
    with pytest.raises(SASInputError, match="MinkowskiEngine"):
        get_backend()


def test_default_backend_switch():
    try:
        set_default_backend("torch")
        assert make_sparse_tensor(torch.ones(3, 1), torch.eye(3, dtype=torch.int32)).backend == "torch"
        with pytest.raises(SASInputError):
            set_default_backend("nope")
    finally:
        set_default_backend(None)
    assert get_backend().name == "torch"


def test_bn_relu_cat_keep_rows():
    c = coords()
    x = make_sparse_tensor(torch.randn(c.shape[0], 3), c)
    bn = SparseBatchNorm(3)
    assert bn.bn.eps == 1e-5 and bn.bn.momentum == 0.1 and set(bn.state_dict()) == {
        "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}
    y = SparseReLU()(bn(x))
    torch.testing.assert_close(y.features, torch.relu(torch.nn.functional.batch_norm(
        x.features, None, None, training=True, eps=1e-5)))
    z = cat(y, x)
    assert z.features.shape == (c.shape[0], 6) and z.coords is x.coords
    torch.testing.assert_close(z.features[:, :3], y.features)  # first argument first (decoder before skip)
    down = SparseConv3d(3, 3, 2, stride=2)(x)
    with pytest.raises(ValueError, match="same coordinates"):
        cat(x, down)
    with pytest.raises(ValueError, match="channels"):
        SparseConv3d(4, 3, 3)(x)


def test_spconv_weight_permutation_layout():
    """spconv [C_out, kx, ky, kz, C_in] entry (x, y, z) must hold ME kernel row x + K y + K^2 z."""
    k, cin, cout = 3, 2, 5
    w = torch.randn(k ** 3, cin, cout)
    s = me_to_spconv_weight(w, k)
    assert s.shape == (cout, k, k, k, cin) and s.is_contiguous()
    for x, y, z in [(0, 0, 0), (2, 0, 1), (1, 2, 0), (0, 1, 2)]:
        torch.testing.assert_close(s[:, x, y, z, :], w[x + k * y + k * k * z].t())


@pytest.mark.skipif(importlib.util.find_spec("spconv") is None, reason="spconv not installed (optional)")
def test_spconv_backend_agrees_on_stride_and_transpose():
    from sas_engine.sparse import SparseConvTranspose3d
    c = torch.cat([torch.zeros(200, 1, dtype=torch.int64), torch.randint(-9, 9, (200, 3))], 1).unique(dim=0)
    f = torch.randn(c.shape[0], 3)
    conv, down, up = SparseConv3d(3, 4, 3), SparseConv3d(3, 4, 2, stride=2), SparseConvTranspose3d(4, 2, 2, stride=2)
    a, b = make_sparse_tensor(f, c, "torch"), make_sparse_tensor(f, c, "spconv")
    torch.testing.assert_close(conv(a).features, conv(b).features)
    torch.testing.assert_close(up(down(a)).features, up(down(b)).features)
