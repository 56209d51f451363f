"""Multi-view fusion: hand-built cases, agreement with a straightforward OpenScene-style reference, CPU/CUDA."""
import numpy as np
import pytest
import torch

from sas_engine.config import PRESETS
from sas_engine.errors import SASInputError
from sas_engine.geometry import FusionConfig, fuse_features, fuse_votes, one_hot_source
from sas_engine.scene import Frame

W, H = 32, 24
K = np.array([[20.0, 0, 15.5], [0, 20.0, 11.5], [0, 0, 1]])


def frame(depth=None, pose=None, fid="0", w=W, h=H):
    return Frame(frame_id=fid, color=np.zeros((h, w, 3), np.uint8), depth=depth,
                 pose=np.eye(4) if pose is None else pose, intrinsics=K.copy())


def const_source(maps):
    return lambda i, f: (torch.as_tensor(maps[i]), None)


def wall(z=2.0):
    return np.full((H, W), z, np.float32)


def test_point_behind_wall_is_not_fused_and_visible_one_is():
    pts = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 3.0], [0.1, 0.0, 2.05]])
    feat = np.random.default_rng(0).standard_normal((H, W, 4)).astype(np.float32)
    r = fuse_features(pts, [frame(wall())], const_source([feat]), FusionConfig(), progress=False)
    assert r.mask.tolist() == [True, False, True]
    assert r.view_count.tolist() == [1, 0, 1]
    # (0,0,2) projects to u = round(15.5) = 16 (half to even), v = round(11.5) = 12
    assert torch.allclose(r.features[0].float(), torch.as_tensor(feat[12, 16]), atol=1e-3)
    # u = round(0.1*20/2.05 + 15.5) = round(16.4756) = 16
    assert torch.allclose(r.features[2].float(), torch.as_tensor(feat[12, 16]), atol=1e-3)
    assert r.features.dtype == torch.float16 and r.mask.dtype == torch.bool and r.view_count.dtype == torch.int32


def test_occlusion_tolerance_is_relative_to_depth():
    # |d - z| <= sigma * d with d = 2: z in [1.5, 2.5] passes for sigma = 0.25, [1.6, 2.4] for sigma = 0.2
    pts = np.array([[0, 0, 1.55], [0, 0, 2.45], [0, 0, 2.55], [0, 0, 1.45]])
    src = const_source([np.ones((H, W, 1), np.float32)])
    r = fuse_features(pts, [frame(wall())], src, FusionConfig(sigma=0.25), progress=False)
    assert r.mask.tolist() == [True, True, False, False]
    r = fuse_features(pts, [frame(wall())], src, FusionConfig(sigma=0.2), progress=False)
    assert r.mask.tolist() == [False, False, False, False]


def test_border_is_cut():
    cut = 10
    # u = x*20/2 + 15.5 -> x such that u lands on chosen columns; v at centre row
    cols = [cut - 1, cut, W - cut - 1, W - cut]
    xs = [(c - 15.5) * 2 / 20 + 0.01 for c in cols]  # +0.01 -> rounds to c (c - 15.5 + 0.1 -> c - 15.4)
    pts = np.array([[x, 0.0, 2.0] for x in xs])
    src = const_source([np.ones((H, W, 2), np.float32)])
    r = fuse_features(pts, [frame(wall())], src, FusionConfig(cut_bound=cut), progress=False)
    assert r.mask.tolist() == [False, True, True, False]
    r0 = fuse_features(pts, [frame(wall())], src, FusionConfig(cut_bound=0), progress=False)
    assert r0.mask.all()


def test_no_view_is_masked_not_zero_filled_and_mean_of_two_views():
    pts = np.array([[0.0, 0.0, 2.0], [5.0, 0.0, 2.0]])  # second projects far outside the image
    a = np.zeros((H, W, 3), np.float32)
    b = np.zeros((H, W, 3), np.float32)
    a[12, 16] = [1.0, 2.0, 3.0]
    b[12, 16] = [3.0, -2.0, 0.5]
    r = fuse_features(pts, [frame(wall()), frame(wall(), fid="1")], const_source([a, b]), progress=False)
    assert r.mask.tolist() == [True, False]
    assert r.view_count.tolist() == [2, 0]
    np.testing.assert_allclose(r.features[0].float().numpy(), [2.0, 0.0, 1.75], atol=1e-3)
    assert (r.features[1] == 0).all()


def test_pose_is_inverted_and_invalid_poses_are_skipped():
    # camera translated to x = 1: the world point (1, 0, 2) is straight ahead
    pose = np.eye(4)
    pose[0, 3] = 1.0
    bad = np.full((4, 4), np.nan)
    feat = np.arange(H * W, dtype=np.float32).reshape(H, W, 1)
    r = fuse_features(np.array([[1.0, 0.0, 2.0]]), [frame(wall(), pose), frame(wall(), bad, fid="1")],
                      const_source([feat, feat]), progress=False)
    assert r.view_count.tolist() == [1]
    assert r.frames_used == 1 and r.frames_skipped == (1,)
    assert float(r.features[0, 0]) == pytest.approx(12 * W + 16, rel=1e-3)


def test_zero_depth_pixel_never_sees_and_no_depth_mode_only_needs_front():
    d = wall()
    d[12, 16] = 0.0
    pts = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, -2.0], [0.0, 0.0, 7.0]])
    src = const_source([np.ones((H, W, 1), np.float32)])
    assert fuse_features(pts, [frame(d)], src, progress=False).mask.tolist() == [False, False, False]
    r = fuse_features(pts, [frame(None)], src, FusionConfig(use_depth=False), progress=False)
    assert r.mask.tolist() == [True, False, True]
    with pytest.raises(SASInputError, match="no depth"):
        fuse_features(pts, [frame(None)], src, FusionConfig(use_depth=True), progress=False)


def test_smaller_feature_map_is_sampled_at_the_covering_cell_and_valid_mask_counts():
    # 8x6 map over a 32x24 image: pixel (u, v) -> cell (u*8//32, v*6//24) = (u//4, v//4)
    small = np.arange(6 * 8, dtype=np.float32).reshape(6, 8, 1)
    us = [11, 16, 21]
    pts = np.array([[(u - 15.5 + 0.1) * 2 / 20, 0.0, 2.0] for u in us])
    r = fuse_features(pts, [frame(wall())], const_source([small]), FusionConfig(cut_bound=0), progress=False)
    assert r.features[:, 0].float().tolist() == [3 * 8 + u // 4 for u in us]
    valid = np.ones((6, 8), bool)
    valid[3, 4] = False  # the cell of u = 16, 17, 18, 19 at row 12
    src = lambda i, f: (small, valid)  # noqa: E731  (numpy inputs are accepted too)
    r = fuse_features(pts, [frame(wall())], src, FusionConfig(cut_bound=0), progress=False)
    assert r.mask.tolist() == [True, False, True] and r.view_count.tolist() == [1, 0, 1]


def test_votes_count_per_view_labels():
    pts = np.array([[0.0, 0.0, 2.0], [0.6, 0.0, 2.0]])  # pixels (16, 12) and (22, 12)
    l0 = np.full((H, W), 255, np.int64)
    l0[12, 16], l0[12, 22] = 2, 1
    l1 = l0.copy()
    l1[12, 16] = 0
    l2 = l0.copy()
    l2[12, 22] = 255
    frames = [frame(wall(), fid=str(i)) for i in range(3)]
    votes = fuse_votes(pts, frames, lambda i, f: [l0, l1, l2][i], 3, FusionConfig(cut_bound=0), progress=False)
    assert votes.dtype == torch.int32
    assert votes.tolist() == [[1, 0, 2], [0, 2, 0]]
    # the same through fuse_features(vote_fn=argmax) on one-hot features
    r = fuse_features(pts, frames, one_hot_source(lambda i, f: [l0, l1, l2][i], 3), FusionConfig(cut_bound=0),
                      vote_fn=lambda x: x.argmax(1), num_classes=3, progress=False)
    assert torch.equal(r.votes, votes)
    np.testing.assert_allclose(r.features[0].float().numpy(), [1 / 3, 0, 2 / 3], atol=1e-3)
    assert r.view_count.tolist() == [3, 2]


def test_from_preset_paper_and_code_defaults():
    assert FusionConfig.from_preset("scannet") == FusionConfig(0.25, 10, True, 0.0)
    assert FusionConfig.from_preset("scannet", paper=True).sigma == 0.2
    assert FusionConfig.from_preset("matterport").sigma == 0.02
    nus = FusionConfig.from_preset(PRESETS["nuscenes"])
    assert (nus.use_depth, nus.cut_bound) == (False, 5)


def test_bad_inputs_raise_clear_errors():
    src = const_source([np.ones((H, W, 2), np.float32), np.ones((H, W, 3), np.float32)])
    with pytest.raises(SASInputError, match=r"\[N, 3\]"):
        fuse_features(np.zeros((4, 2)), [frame(wall())], src, progress=False)
    with pytest.raises(SASInputError, match="channels"):
        fuse_features(np.array([[0.0, 0, 2]]), [frame(wall()), frame(wall())], src, progress=False)
    with pytest.raises(SASInputError, match=r"\[h, w, C\]"):
        fuse_features(np.array([[0.0, 0, 2]]), [frame(wall())], lambda i, f: (np.ones((H, W)), None),
                      progress=False)


# ----------------------------------------------------------------------------------------------- reference
def reference_fusion(points, frames, maps, valids, cfg):
    """Straightforward per-frame OpenScene loop in numpy (mapping for every point, gather, mask)."""
    n, c = len(points), maps[0].shape[2]
    acc = np.zeros((n, c), np.float64)
    cnt = np.zeros(n, np.int64)
    homo = np.concatenate([points, np.ones((n, 1))], 1).T
    for fr, fmap, valid in zip(frames, maps, valids):
        p = np.linalg.inv(fr.pose) @ homo
        with np.errstate(divide="ignore", invalid="ignore"):
            p[0] = (p[0] * fr.intrinsics[0][0]) / p[2] + fr.intrinsics[0][2]
            p[1] = (p[1] * fr.intrinsics[1][1]) / p[2] + fr.intrinsics[1][2]
        pi = np.round(np.nan_to_num(p, nan=-1e9, posinf=-1e9, neginf=-1e9)).astype(np.int64)
        hh, ww = fr.depth.shape
        cb = cfg.cut_bound
        inside = (pi[0] >= cb) & (pi[1] >= cb) & (pi[0] < ww - cb) & (pi[1] < hh - cb) & (p[2] > 0)
        d = np.zeros(n)
        d[inside] = fr.depth[pi[1][inside], pi[0][inside]]
        inside &= np.abs(d - p[2]) <= cfg.sigma * d
        fh, fw = fmap.shape[:2]
        rows = np.where(inside, pi[1] * fh // hh, 0)
        cols = np.where(inside, pi[0] * fw // ww, 0)
        inside &= valid[rows, cols]
        g = fmap[rows, cols]  # every point gathered, then masked
        acc[inside] += g[inside]
        cnt[inside] += 1
    return (acc / np.maximum(cnt, 1)[:, None]).astype(np.float32), cnt


def random_case(seed, n=3000, nf=6, c=8, small=False):
    rng = np.random.default_rng(seed)
    pts = rng.uniform([-1, -1, 2], [1, 1, 4], (n, 3))
    frames, maps, valids = [], [], []
    for i in range(nf):
        ang = rng.uniform(-0.3, 0.3)
        pose = np.eye(4)
        pose[:3, :3] = [[np.cos(ang), 0, np.sin(ang)], [0, 1, 0], [-np.sin(ang), 0, np.cos(ang)]]
        pose[:3, 3] = rng.uniform(-0.3, 0.3, 3)
        # depth: z-buffer of the points themselves (nearest point per pixel) with holes
        cam = (np.linalg.inv(pose) @ np.c_[pts, np.ones(n)].T)[:3]
        u = np.round(cam[0] * 20 / cam[2] + 15.5).astype(int)
        v = np.round(cam[1] * 20 / cam[2] + 11.5).astype(int)
        ok = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (cam[2] > 0)
        depth = np.full((H, W), np.inf)
        np.minimum.at(depth, (v[ok], u[ok]), cam[2][ok])
        depth[~np.isfinite(depth)] = 0
        depth[rng.random((H, W)) < 0.1] = 0
        frames.append(frame(depth.astype(np.float32), pose, fid=str(i)))
        fh, fw = (H // 4, W // 4) if small else (H, W)
        maps.append(rng.standard_normal((fh, fw, c)).astype(np.float32))
        valids.append(rng.random((fh, fw)) > 0.2)
    return pts, frames, maps, valids


@pytest.mark.parametrize("seed,small", [(0, False), (1, True), (2, False)])
def test_matches_straightforward_reference(seed, small):
    pts, frames, maps, valids = random_case(seed, small=small)
    cfg = FusionConfig(sigma=0.1, cut_bound=2)
    ref, cnt = reference_fusion(pts, frames, maps, valids, cfg)
    r = fuse_features(pts, frames, lambda i, f: (torch.from_numpy(maps[i]), torch.from_numpy(valids[i])), cfg,
                      progress=False)
    assert (cnt > 0).sum() > 500 and (cnt > 1).sum() > 100  # the case is not trivial
    assert (cnt == 0).sum() > 100  # and some points are occluded / outside
    np.testing.assert_array_equal(r.view_count.numpy(), cnt)
    np.testing.assert_array_equal(r.mask.numpy(), cnt > 0)
    np.testing.assert_allclose(r.features.float().numpy(), ref, atol=2e-3, rtol=2e-3)


def test_float16_feature_maps_and_streaming_from_a_lazy_sequence():
    from sas_engine.scene import FrameSequence

    pts, frames, maps, valids = random_case(3)
    seq = FrameSequence([f.frame_id for f in frames], lambda i: frames[i])
    cfg = FusionConfig(sigma=0.1, cut_bound=2)
    r16 = fuse_features(torch.from_numpy(pts), seq, lambda i, f: torch.from_numpy(maps[i]).half(), cfg,
                        progress=False)
    ref, cnt = reference_fusion(pts, frames, [m.astype(np.float16).astype(np.float32) for m in maps],
                                [np.ones(m.shape[:2], bool) for m in maps], cfg)
    np.testing.assert_array_equal(r16.view_count.numpy(), cnt)
    np.testing.assert_allclose(r16.features.float().numpy(), ref, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("small", [False, True])
def test_indexed_feature_maps_fuse_exactly_as_their_expansion(small):
    """A mask teacher's id map + segment table (:class:`IndexedFeatureMap`) gives bit for bit what the expanded
    [h, w, C] map gives, votes included."""
    from sas_engine.geometry.fusion import IndexedFeatureMap

    pts, frames, maps, _ = random_case(4, small=small)
    rng = np.random.default_rng(5)
    ids = [torch.from_numpy(rng.integers(-1, 7, m.shape[:2])) for m in maps]
    tables = [torch.from_numpy(rng.standard_normal((7, 8)).astype(np.float32)).half() for _ in maps]
    ids[2][:] = -1  # a frame without any segment
    tables[2] = tables[2][:0]
    cfg = FusionConfig(sigma=0.1, cut_bound=2)
    vote = lambda f: f.argmax(1)  # noqa: E731

    def expanded(i, f):
        t = tables[i]
        dense = t[ids[i].clamp(min=0)] if t.shape[0] else torch.zeros(*ids[i].shape, 8, dtype=t.dtype)
        return dense, ids[i] >= 0

    a = fuse_features(pts, frames, lambda i, f: (IndexedFeatureMap(ids[i], tables[i]), ids[i] >= 0), cfg,
                      vote_fn=vote, num_classes=8, progress=False)
    b = fuse_features(pts, frames, expanded, cfg, vote_fn=vote, num_classes=8, progress=False)
    assert int(a.mask.sum()) > 500
    assert torch.equal(a.features, b.features) and torch.equal(a.view_count, b.view_count)
    assert torch.equal(a.votes, b.votes)
    with pytest.raises(SASInputError, match="indexed feature map"):
        fuse_features(pts, frames, lambda i, f: (IndexedFeatureMap(ids[i][0], tables[i]), None), cfg, progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available on this machine")
def test_cpu_and_cuda_agree():
    pts, frames, maps, valids = random_case(4, small=True)
    cfg = FusionConfig(sigma=0.1, cut_bound=2)
    src = lambda i, f: (torch.from_numpy(maps[i]), torch.from_numpy(valids[i]))  # noqa: E731
    a = fuse_features(pts, frames, src, cfg, device="cpu", progress=False)
    b = fuse_features(pts, frames, src, cfg, device="cuda", progress=False)
    assert torch.equal(a.view_count, b.view_count) and torch.equal(a.mask, b.mask)
    assert torch.allclose(a.features.float(), b.features.float(), atol=1e-3)
    va = fuse_votes(pts, frames, lambda i, f: maps[i].argmax(2), 8, cfg, device="cpu", progress=False)
    vb = fuse_votes(pts, frames, lambda i, f: maps[i].argmax(2), 8, cfg, device="cuda", progress=False)
    assert torch.equal(va, vb)
