"""Fast paths of the torch sparse backend against the original ones: dense-grid kernel maps must equal the
searchsorted maps pair for pair (including every fallback), and the grouped forward must equal the per-offset forward
(and the dense reference) up to float rounding."""
import pytest
import torch

from sas_engine.models import MinkUNet18ASlim
from sas_engine.sparse import CoordinateManager, SparseConv3d, SparseTensor, forward_points, make_sparse_tensor
from sas_engine.sparse import functional as spf
from sas_engine.sparse.functional import conv_forward, group_plan, sparse_conv_features

from .test_sparse_conv import dense_reference, random_coords


def same_map(a, b):
    return (torch.equal(a.in_idx, b.in_idx) and torch.equal(a.out_idx, b.out_idx) and a.bounds == b.bounds
            and (a.n_in, a.n_out, a.identity) == (b.n_in, b.n_out, b.identity))


def surface_coords(n_side=40, batches=2):
    """Two axis-aligned planes and a diagonal ramp per batch: few neighbour patterns with many rows each."""
    a, b = torch.meshgrid(torch.arange(n_side), torch.arange(n_side), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    z = torch.zeros_like(a)
    rows = []
    for bi in range(batches):
        for xyz in ((a, b, z), (a, z + 3, b), (a, b, b // 2)):
            rows.append(torch.stack([torch.full_like(a, bi), xyz[0] - 7 * bi, xyz[1], xyz[2] - 5], 1))
    return torch.unique(torch.cat(rows), dim=0).to(torch.int32)


CASES = [(1, 1, 3, 1), (1, 1, 5, 1), (1, 1, 2, 1), (1, 1, 3, 2), (1, 2, 3, 1), (1, 4, 3, 1), (2, 2, 3, 1)]


@pytest.mark.parametrize("lookup", ["numba", "torch"])
@pytest.mark.parametrize("in_stride,out_stride,k,dilation", CASES)
def test_grid_map_equals_searchsorted_map(in_stride, out_stride, k, dilation, lookup, monkeypatch):
    if lookup == "torch":  # the chunked torch look-up (CUDA, or tables over the cap)
        monkeypatch.setattr("sas_engine.sparse.coords.NEIGHBOUR_TABLE_MAX", 0)
    coords = random_coords(500, batches=3, lo=-9, hi=9, seed=k + 10 * dilation + out_stride)
    grid, ref = CoordinateManager(coords, map_method="grid"), CoordinateManager(coords, map_method="searchsorted")
    for mgr in (grid, ref):
        if in_stride == 2:
            mgr.kernel_map(1, 2, 2)  # the stride-2 set, as a network builds it
    a, b = grid.kernel_map(in_stride, out_stride, k, dilation), ref.kernel_map(in_stride, out_stride, k, dilation)
    assert same_map(a, b)
    assert grid.map_methods_used[(in_stride, out_stride, k, dilation)] == "grid"
    assert ref.map_methods_used[(in_stride, out_stride, k, dilation)] == "searchsorted"
    assert same_map(a.swapped(), b.swapped())


def test_auto_method_uses_grid_then_falls_back_when_grid_too_large():
    coords = random_coords(400, seed=4)
    ref = CoordinateManager(coords, map_method="searchsorted").kernel_map(1, 1, 3)
    auto = CoordinateManager(coords)
    assert auto.map_method == "auto" and same_map(auto.kernel_map(1, 1, 3), ref)
    assert auto.map_methods_used[(1, 1, 3, 1)] == "grid"
    for method in ("auto", "grid"):  # a grid over the cap is never allocated, whatever the method
        small = CoordinateManager(coords, map_method=method, max_grid_cells=100)
        assert same_map(small.kernel_map(1, 1, 3), ref)
        assert small.map_methods_used[(1, 1, 3, 1)] == "searchsorted"
    far = coords.clone()
    far[0, 1:] = torch.tensor([100000, -100000, 50000])  # bounding box far over the default cap
    mgr = CoordinateManager(far)
    assert same_map(mgr.kernel_map(1, 1, 3), CoordinateManager(far, map_method="searchsorted").kernel_map(1, 1, 3))
    assert mgr.map_methods_used[(1, 1, 3, 1)] == "searchsorted"


def test_off_lattice_coarse_coordinates_fall_back():
    """A user-given stride-2 tensor with odd coordinates cannot be divided onto a stride-2 grid."""
    coords = random_coords(300, seed=8)  # not multiples of 2
    grid = CoordinateManager(coords, tensor_stride=2)
    assert same_map(grid.kernel_map(2, 2, 3), CoordinateManager(coords, 2, "searchsorted").kernel_map(2, 2, 3))
    assert grid.map_methods_used[(2, 2, 3, 1)] == "searchsorted"


def test_large_dilation_grid_has_no_batch_aliasing():
    """Offsets reaching far past the coordinates: the grid spans the reach, so batches never mix."""
    coords = torch.tensor([[0, 0, 0, 0], [0, 50, 0, 0], [1, -50, 0, 0]], dtype=torch.int32)
    x = make_sparse_tensor(torch.tensor([[1.0], [2.0], [4.0]]), coords)
    conv = SparseConv3d(1, 1, 3, dilation=50)
    conv.kernel.data.fill_(1.0)
    assert conv(x).features[:, 0].tolist() == [3.0, 3.0, 4.0]
    assert x.manager.map_methods_used[(1, 1, 3, 50)] == "grid"
    assert same_map(x.manager.kernel_map(1, 1, 3, 50),
                    CoordinateManager(coords, map_method="searchsorted").kernel_map(1, 1, 3, 50))
    far = CoordinateManager(coords * 100)  # dilation 5000: a grid of ~4e12 cells, so searchsorted
    far.kernel_map(1, 1, 3, 5000)
    assert far.map_methods_used[(1, 1, 3, 5000)] == "searchsorted"


def test_empty_and_bad_method():
    with pytest.raises(ValueError, match="map_method"):
        CoordinateManager(random_coords(10), map_method="hash")
    with pytest.raises(ValueError, match="forward method"):
        conv_forward(torch.ones(1, 1), torch.ones(1, 1, 1), CoordinateManager(random_coords(1)).kernel_map(1, 1, 1),
                     "fused")


def test_lookup_chunks_give_the_same_map(monkeypatch):
    coords = random_coords(300, seed=12)
    ref = CoordinateManager(coords, map_method="searchsorted").kernel_map(1, 1, 5)
    monkeypatch.setattr("sas_engine.sparse.coords.NEIGHBOUR_TABLE_MAX", 0)  # the chunked torch look-up
    monkeypatch.setattr("sas_engine.sparse.coords.LOOKUP_CHUNK", 700)  # a few offsets per chunk
    assert same_map(CoordinateManager(coords, map_method="grid").kernel_map(1, 1, 5), ref)


@pytest.fixture
def small_groups(monkeypatch):
    monkeypatch.setattr(spf, "GROUP_MIN_ROWS", 16)
    monkeypatch.setattr(spf, "GROUP_CHUNK", 500)  # several chunks per group


@pytest.mark.parametrize("k,stride,in_stride", [(3, 1, 1), (2, 2, 1), (3, 1, 2), (3, 2, 1), (2, 1, 1), (5, 1, 1)])
def test_grouped_forward_matches_offset_forward_and_dense(small_groups, k, stride, in_stride):
    coords = surface_coords()
    if in_stride > 1:
        coords = torch.unique(torch.cat([coords[:, :1], coords[:, 1:] // in_stride * in_stride], 1), dim=0)
    feats = torch.randn(coords.shape[0], 5, dtype=torch.float64)
    conv = SparseConv3d(5, 4, k, stride=stride).double()
    x = SparseTensor(feats, coords, in_stride)
    out_stride = in_stride * stride
    kmap = x.manager.kernel_map(in_stride, out_stride, k)
    plan = group_plan(kmap)
    assert plan is not None and plan.groups  # the fast path really runs
    grouped_rows = sum(r.numel() for r, _, _ in plan.groups)
    assert grouped_rows + plan.rest_rows.numel() == kmap.n_out
    w = conv.kernel.detach()
    a, b = conv_forward(feats, w, kmap, "grouped"), conv_forward(feats, w, kmap, "offset")
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    out = conv(x)  # the default (grouped) through the module
    torch.testing.assert_close(out.features, b, rtol=1e-12, atol=1e-12)
    ref = dense_reference(coords, feats, in_stride, w, k, stride, 1, False, out.coords)
    torch.testing.assert_close(out.features, ref)


@pytest.mark.parametrize("k,stride", [(3, 1), (3, 2), (5, 1)])
def test_group_plan_from_the_maps_neighbour_table_equals_the_plan_from_its_pairs(small_groups, monkeypatch, k, stride):
    coords = surface_coords()
    a = CoordinateManager(coords).kernel_map(1, stride, k)  # numba look-up: the plan reads its neighbour table
    assert "neighbours" in a._plans
    pa = group_plan(a)
    assert "neighbours" not in a._plans  # handed over, not kept
    monkeypatch.setattr("sas_engine.sparse.coords.NEIGHBOUR_TABLE_MAX", 0)
    b = CoordinateManager(coords).kernel_map(1, stride, k)
    assert "neighbours" not in b._plans and same_map(a, b)
    pb = group_plan(b)
    assert len(pa.groups) == len(pb.groups) > 0
    for (ra, oa, ia), (rb, ob, ib) in zip(pa.groups, pb.groups):
        assert torch.equal(ra, rb) and oa == ob and torch.equal(ia, ib) and ia.dtype == torch.int64
    assert torch.equal(pa.rest_rows, pb.rest_rows) and same_map(pa.rest, pb.rest)


def test_grouped_forward_float32_close_to_offset(small_groups):
    coords = surface_coords()
    mgr = CoordinateManager(coords)
    kmap = mgr.kernel_map(1, 1, 3)
    x, w = torch.randn(kmap.n_in, 32), torch.randn(27, 32, 24) / 30
    torch.testing.assert_close(conv_forward(x, w, kmap, "grouped"), conv_forward(x, w, kmap, "offset"),
                               rtol=1e-5, atol=1e-5)


def test_plans_of_large_kernels_and_single_offset_maps(small_groups, monkeypatch):
    coords = surface_coords()
    mgr = CoordinateManager(coords)
    kmap = mgr.kernel_map(1, 1, 7)
    plan = group_plan(kmap)
    assert plan is not None  # 343 offsets: patterns over 6 int64 words
    hit = torch.zeros(kmap.volume, kmap.n_out, dtype=torch.bool)
    for k in range(kmap.volume):
        hit[k, kmap.out_idx[kmap.bounds[k]:kmap.bounds[k + 1]]] = True
    hit[kmap.identity] = True
    for rows, offs, _ in plan.groups:  # each group: rows with exactly its neighbour offsets, one group per pattern
        sub = hit[:, rows]
        assert bool((sub == sub[:, :1]).all()) and sub[:, 0].nonzero()[:, 0].tolist() == offs
        assert bool((rows[1:] > rows[:-1]).all())
    assert len({tuple(offs) for _, offs, _ in plan.groups}) == len(plan.groups)
    monkeypatch.setattr(spf, "GROUP_MAX_OFFSETS", 100)
    assert group_plan(mgr.kernel_map(1, 1, 5)) is None  # 125 offsets, over this cap
    assert group_plan(mgr.kernel_map(1, 2, 2).swapped()) is None  # transposed: one pair per output row
    assert group_plan(mgr.kernel_map(1, 1, 3)) is group_plan(mgr.kernel_map(1, 1, 3))  # cached on the map


def test_grouped_forward_gradcheck(small_groups):
    coords = surface_coords(n_side=8, batches=1)
    kmap = CoordinateManager(coords).kernel_map(1, 1, 3)
    assert group_plan(kmap) is not None
    x = torch.randn(kmap.n_in, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(27, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: sparse_conv_features(a, b, kmap), (x, w))


def test_network_output_equal_across_implementations(monkeypatch, small_groups):
    """MinkUNet (slim) on a surface scene: current defaults vs the previous searchsorted + per-offset forward."""
    torch.manual_seed(0)
    model = MinkUNet18ASlim(out_channels=8).double().eval()
    coords = surface_coords(n_side=24)
    feats = torch.ones(coords.shape[0], 3, dtype=torch.float64)
    now = forward_points(model, coords, feats)
    monkeypatch.setattr(CoordinateManager, "default_map_method", "searchsorted")
    monkeypatch.setattr(spf, "default_forward_method", "offset")
    x = make_sparse_tensor(feats, coords)
    assert x.manager.map_method == "searchsorted"
    before = model(x).features
    torch.testing.assert_close(now, before, rtol=1e-10, atol=1e-10)
