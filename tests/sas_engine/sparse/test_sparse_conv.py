"""Sparse convolutions against a dense torch reference (conv3d / conv_transpose3d on a scattered grid)."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from sas_engine.sparse import (CoordinateManager, SparseConv3d, SparseConvTranspose3d, SparseTensor, kernel_offsets,
                               make_sparse_tensor)
from sas_engine.sparse.functional import sparse_conv_features


def random_coords(n, batches=3, lo=-7, hi=7, stride=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(lo, hi + 1, (n, 4), generator=g)
    c[:, 0] = torch.randint(0, batches, (n,), generator=g)
    c[:, 1:] = torch.div(c[:, 1:], stride, rounding_mode="floor") * stride
    c = torch.unique(c, dim=0)
    return c[torch.randperm(c.shape[0], generator=g)].to(torch.int32)  # arbitrary row order


def dense_weight(w, k, transposed):
    """ME kernel [K^3, Cin, Cout] (x fastest) -> conv3d [Cout, Cin, Kx, Ky, Kz] / conv_transpose3d [Cin, Cout, ...]."""
    w5 = w.reshape(k, k, k, w.shape[-2], w.shape[-1])  # [kz, ky, kx, Cin, Cout]
    return w5.permute(3, 4, 2, 1, 0) if transposed else w5.permute(4, 3, 2, 1, 0)


def dense_reference(coords, feats, in_stride, w, k, stride, dilation, transposed, out_coords):
    """Dense conv of the scattered features, sampled at ``out_coords`` (all in original voxel units)."""
    out_stride = in_stride // stride if transposed else in_stride * stride
    align = max(in_stride, out_stride)
    margin = (k + 2) * dilation * align
    allc = torch.cat([coords, out_coords]).to(torch.int64)
    lo = torch.div(allc[:, 1:].min(0).values - margin, align, rounding_mode="floor") * align
    hi = allc[:, 1:].max(0).values + margin
    size = (torch.div(hi - lo, in_stride, rounding_mode="floor") + 1).tolist()
    nb = int(allc[:, 0].max()) + 1
    grid = feats.new_zeros(nb, feats.shape[1], *size)
    idx = torch.div(coords[:, 1:].to(torch.int64) - lo, in_stride, rounding_mode="floor")
    grid[coords[:, 0].long(), :, idx[:, 0], idx[:, 1], idx[:, 2]] = feats
    wd = dense_weight(w, k, transposed)
    pad = dilation * (k // 2) if k % 2 else 0
    if transposed:
        out = F.conv_transpose3d(grid, wd, stride=stride, padding=pad, dilation=dilation)
    else:
        if k % 2 == 0:
            grid = F.pad(grid, (0, dilation * (k - 1)) * 3)
        out = F.conv3d(grid, wd, stride=stride, padding=pad, dilation=dilation)
    oidx = torch.div(out_coords[:, 1:].to(torch.int64) - lo, out_stride, rounding_mode="floor")
    return out[out_coords[:, 0].long(), :, oidx[:, 0], oidx[:, 1], oidx[:, 2]]


def test_kernel_offset_order_matches_me():
    o3 = kernel_offsets(3)
    for dx, dy, dz in itertools.product((-1, 0, 1), repeat=3):
        k = (dx + 1) + 3 * (dy + 1) + 9 * (dz + 1)
        assert o3[k].tolist() == [dx, dy, dz]
    assert o3[13].tolist() == [0, 0, 0]
    assert kernel_offsets(2).tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0],
                                          [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]]
    assert kernel_offsets(5)[0].tolist() == [-2, -2, -2] and kernel_offsets(5)[62].tolist() == [0, 0, 0]
    assert kernel_offsets(3, dilation=2)[0].tolist() == [-2, -2, -2]


def test_convolution_direction_single_voxel():
    """out[q] += in[q + offset_k] @ W[k]: one unit voxel at p reaches q = p - offset_k through kernel k."""
    coords = torch.tensor([[0, 0, 0, 0]] + [[0, *o] for o in (-kernel_offsets(3)).tolist() if any(o)], dtype=torch.int32)
    feats = torch.zeros(coords.shape[0], 1)
    feats[0, 0] = 1.0
    w = torch.arange(27, dtype=torch.float32).reshape(27, 1, 1)
    conv = SparseConv3d(1, 1, 3)
    conv.kernel.data.copy_(w)
    out = conv(make_sparse_tensor(feats, coords)).features[:, 0]
    for row, c in enumerate(coords[:, 1:].tolist()):
        k = int(((kernel_offsets(3) == -torch.tensor(c)).all(1)).nonzero())
        assert out[row].item() == k


@pytest.mark.parametrize("k,in_stride,dilation", [(3, 1, 1), (5, 1, 1), (2, 1, 1), (3, 2, 1), (2, 4, 1), (3, 1, 2)])
def test_stride1_conv_matches_dense(k, in_stride, dilation):
    coords = random_coords(220, stride=in_stride, seed=k + in_stride)
    feats = torch.randn(coords.shape[0], 4, dtype=torch.float64)
    conv = SparseConv3d(4, 3, k, dilation=dilation).double()
    x = SparseTensor(feats, coords, in_stride)
    out = conv(x)
    assert out.coords is x.coords and out.tensor_stride == in_stride  # same rows, same order
    ref = dense_reference(coords, feats, in_stride, conv.kernel.detach(), k, 1, dilation, False, coords)
    torch.testing.assert_close(out.features, ref)


def test_pointwise_conv_is_2d_and_matmul():
    conv = SparseConv3d(4, 6, 1)
    assert conv.kernel.shape == (4, 6)
    coords = random_coords(50)
    feats = torch.randn(coords.shape[0], 4)
    torch.testing.assert_close(conv(make_sparse_tensor(feats, coords)).features, feats @ conv.kernel.detach())
    assert SparseConv3d(4, 6, 1, stride=2).kernel.shape == (1, 4, 6)


@pytest.mark.parametrize("k,stride,in_stride", [(2, 2, 1), (2, 2, 2), (3, 2, 1), (4, 4, 1)])
def test_strided_conv_coords_and_values(k, stride, in_stride):
    coords = random_coords(300, stride=in_stride, seed=7 * k + stride)
    feats = torch.randn(coords.shape[0], 5, dtype=torch.float64)
    conv = SparseConv3d(5, 2, k, stride=stride).double()
    out = conv(SparseTensor(feats, coords, in_stride))
    s_out = in_stride * stride
    assert out.tensor_stride == s_out
    expected = {(b, *[(v // s_out) * s_out for v in xyz]) for b, *xyz in coords.tolist()}  # python floor division
    got = [tuple(r) for r in out.coords.tolist()]
    assert len(got) == len(set(got)) and set(got) == expected
    ref = dense_reference(coords, feats, in_stride, conv.kernel.detach(), k, stride, 1, False, out.coords)
    torch.testing.assert_close(out.features, ref)


@pytest.mark.parametrize("k,stride", [(2, 2), (3, 2), (3, 1)])
def test_transposed_conv_matches_dense_and_reuses_map(k, stride):
    coords = random_coords(300, seed=11 + k)
    x = make_sparse_tensor(torch.randn(coords.shape[0], 3, dtype=torch.float64), coords)
    down = SparseConv3d(3, 4, k, stride=stride).double()
    up = SparseConvTranspose3d(4, 2, k, stride=stride).double()
    coarse = down(x)
    maps_before = dict(x.manager._maps)
    out = up(coarse)
    assert out.tensor_stride == 1 and out.coords is x.coords  # back on the encoder's coordinates, same rows
    assert dict(x.manager._maps).keys() == maps_before.keys()  # no new map: the strided map was swapped
    ref = dense_reference(coarse.coords, coarse.features, stride, up.kernel.detach(), k, stride, 1, True, coords)
    torch.testing.assert_close(out.features, ref)


def test_transposed_conv_without_fine_coords_fails_clearly():
    coords = random_coords(40, stride=2)
    x = SparseTensor(torch.randn(coords.shape[0], 2), coords, 2)
    with pytest.raises(KeyError, match="transposed convolution"):
        SparseConvTranspose3d(2, 2, 2, stride=2)(x)


def test_partition_map_equals_search_map():
    coords = random_coords(400, seed=3)
    mgr = CoordinateManager(coords)
    fast = mgr.kernel_map(1, 2, 2)
    slow = mgr._search_map(1, 2, 2, 1)

    def triples(m):
        return {(k, int(i), int(o)) for k in range(m.volume) for i, o in zip(*m.pairs(k))}
    assert triples(fast) == triples(slow) and len(triples(fast)) == coords.shape[0]


@pytest.mark.parametrize("k,stride,transposed", [(3, 1, False), (2, 2, False), (2, 2, True), (5, 1, False)])
def test_backward_matches_dense(k, stride, transposed):
    coords = random_coords(150, seed=5 + k)
    cin, cout = 3, 4
    w = torch.randn(k ** 3, cin, cout, dtype=torch.float64)
    x = make_sparse_tensor(torch.randn(coords.shape[0], cin, dtype=torch.float64), coords)
    if transposed:
        x = SparseConv3d(cin, cin, 2, stride=2).double()(x)
        x = x.replace_feature(x.features.detach())
    feats = x.features.clone().requires_grad_(True)
    weight = w.clone().requires_grad_(True)
    mod = (SparseConvTranspose3d if transposed else SparseConv3d)(cin, cout, k, stride=stride).double()
    mod.kernel = torch.nn.Parameter(weight)
    out = mod(x.replace_feature(feats))
    g = torch.randn_like(out.features)
    (out.features * g).sum().backward()
    feats_r = x.features.clone().requires_grad_(True)
    weight_r = w.clone().requires_grad_(True)
    ref = dense_reference(x.coords, feats_r, x.tensor_stride, weight_r, k, stride, 1, transposed, out.coords)
    (ref * g).sum().backward()
    torch.testing.assert_close(out.features, ref.detach())
    torch.testing.assert_close(feats.grad, feats_r.grad)
    torch.testing.assert_close(mod.kernel.grad, weight_r.grad)


def test_gradcheck_float64():
    coords = random_coords(30, batches=2, lo=-2, hi=2, seed=9)
    mgr = CoordinateManager(coords)
    for kmap in (mgr.kernel_map(1, 1, 3), mgr.kernel_map(1, 2, 2), mgr.kernel_map(1, 2, 2).swapped()):
        x = torch.randn(kmap.n_in, 2, dtype=torch.float64, requires_grad=True)
        w = torch.randn(kmap.volume, 2, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b: sparse_conv_features(a, b, kmap), (x, w))


def test_row_order_follows_input():
    coords = random_coords(120, seed=21)
    feats = torch.randn(coords.shape[0], 3)
    perm = torch.randperm(coords.shape[0])
    conv = SparseConv3d(3, 2, 3)
    a = conv(make_sparse_tensor(feats, coords)).features
    b = conv(make_sparse_tensor(feats[perm], coords[perm])).features
    torch.testing.assert_close(b, a[perm])


def test_duplicate_coordinates_rejected():
    coords = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]], dtype=torch.int32)
    with pytest.raises(ValueError, match="duplicate"):
        make_sparse_tensor(torch.ones(2, 1), coords)


def test_large_dilation_uses_checked_lookup():
    """Offsets beyond the key margin must not alias other coordinates (range-checked path)."""
    coords = torch.tensor([[0, 0, 0, 0], [0, 5000, 0, 0], [1, -5000, 0, 0]], dtype=torch.int32)
    conv = SparseConv3d(1, 1, 3, dilation=5000)
    conv.kernel.data.fill_(1.0)
    out = conv(make_sparse_tensor(torch.tensor([[1.0], [2.0], [4.0]]), coords)).features[:, 0]
    assert out.tolist() == [3.0, 3.0, 4.0]  # batch 1 never mixes with batch 0
