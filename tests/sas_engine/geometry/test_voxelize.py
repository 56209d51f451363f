"""Voxelisation: OpenScene / ME semantics (floor, shift, first point wins, inverse map) and seeded augmentation."""
import math

import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.geometry import AugmentConfig, voxelize
from sas_engine.geometry.voxelize import axis_rotation, fnv1a_hash

NO_RANDOM = AugmentConfig(rotation_bounds=((0, 0), (0, 0), (0, 0)), scale_bounds=None, flip_prob=0.0)


def test_hand_built_first_point_wins_and_inverse():
    pts = np.array([[0.01, 0, 0], [0.005, 0, 0], [0.03, 0, 0], [-0.01, 0, 0], [0.035, 0.001, 0]])
    v = voxelize(pts, 0.02, order="input")
    # floor(x / 0.02) = 0, 0, 1, -1, 1 -> shifted 1, 1, 2, 0, 2
    assert v.coords.dtype == np.int32 and v.indices.dtype == np.int64 and v.inverse.dtype == np.int64
    assert v.coords[:, 0].tolist() == [1, 2, 0] and v.indices.tolist() == [0, 2, 3]
    assert v.inverse.tolist() == [0, 0, 1, 2, 1]
    assert (v.coords[:, 1:] == 0).all()


@pytest.mark.parametrize("order", ["fnv", "input"])
def test_semantics_on_random_points(order):
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1.3, 2.1, (5000, 3))
    pts = np.concatenate([pts, pts[:500] + 1e-4])  # duplicates in the same voxels (mostly)
    vs = 0.1
    v = voxelize(torch.from_numpy(pts), vs, order=order)
    q = np.floor(pts * (1.0 / vs)).astype(np.int64)
    q -= q.min(0)
    assert (v.coords.min(0) == 0).all()
    np.testing.assert_array_equal(v.coords[v.inverse], q)  # inverse map sends every point to its voxel
    assert len(np.unique(v.coords, axis=0)) == v.num_voxels  # one voxel per distinct coordinate
    np.testing.assert_array_equal(v.coords, q[v.indices])
    first = np.full(v.num_voxels, len(pts))
    np.minimum.at(first, v.inverse, np.arange(len(pts)))
    np.testing.assert_array_equal(v.indices, first)  # the first point in input order represents the voxel
    if order == "fnv":
        assert (np.diff(fnv1a_hash(v.coords.astype(np.int64)).astype(np.float64)) >= 0).all()
    else:
        assert (np.diff(v.indices) > 0).all()


def test_augmentation_is_seeded_and_within_bounds():
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 3, (3000, 3))
    aug = AugmentConfig()
    a, b = voxelize(pts, 0.05, aug, seed=7), voxelize(pts, 0.05, aug, seed=7)
    assert np.array_equal(a.coords, b.coords) and np.array_equal(a.inverse, b.inverse) and a.flipped == b.flipped
    c = voxelize(pts, 0.05, aug, seed=8)
    assert not np.array_equal(a.transform, c.transform)
    zs, flips = [], []
    for s in range(40):
        v = voxelize(pts[:50], 0.05, aug, seed=s)
        m = v.transform[:3, :3]
        scale = abs(np.linalg.det(m)) ** (1 / 3) * 0.05
        assert 0.9 <= scale <= 1.1
        r = m / (scale / 0.05)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
        assert r[2, 2] > math.cos(2 * math.pi / 64)  # x/y tilts of at most pi/64 each
        zs.append(math.atan2(r[1, 0], r[0, 0]))
        flips.append(v.flipped)
    assert min(zs) < -1.5 and max(zs) > 1.5  # rotation about z spans [-pi, pi]
    assert any(f[0] for f in flips) and any(not f[0] for f in flips) and not any(f[2] for f in flips)


def test_rotation_scale_and_flip_follow_the_transform():
    pts = np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 2.0, 0], [0.3, 0.3, 1.0]])
    quarter = AugmentConfig(rotation_bounds=((0, 0), (0, 0), (math.pi / 2, math.pi / 2)), scale_bounds=(2.0, 2.0),
                            flip_prob=0.0)
    v = voxelize(pts, 0.1, quarter, seed=0, order="input")
    expect = np.floor(pts @ (axis_rotation(2, math.pi / 2) * 20.0).T + 1e-9)
    expect -= expect.min(0)
    np.testing.assert_array_equal(v.coords, expect.astype(np.int32))
    assert v.coords[1].tolist() == [40, 20, 0]  # x axis -> y axis, scaled by 2 / 0.1, shifted
    flip = AugmentConfig(rotation_bounds=((0, 0), (0, 0), (0, 0)), scale_bounds=None, flip_prob=1.0,
                         flip_axis_prob=1.0)
    plain = voxelize(pts, 0.1, NO_RANDOM, seed=0, order="input")
    f = voxelize(pts, 0.1, flip, seed=0, order="input")
    assert f.flipped == (True, True, False)
    np.testing.assert_array_equal(f.coords[:, 0], plain.coords[:, 0].max() - plain.coords[:, 0])
    np.testing.assert_array_equal(f.coords[:, 2], plain.coords[:, 2])


def test_elastic_distortion_moves_points_smoothly_and_reproducibly():
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 2, (2000, 3))
    el = AugmentConfig(rotation_bounds=((0, 0), (0, 0), (0, 0)), scale_bounds=None, flip_prob=0.0,
                       elastic=((0.2, 0.4), (0.8, 1.6)), elastic_prob=1.0)
    a, b = voxelize(pts, 0.02, el, seed=3), voxelize(pts, 0.02, el, seed=3)
    assert np.array_equal(a.coords, b.coords)
    assert not np.array_equal(a.coords, voxelize(pts, 0.02, NO_RANDOM).coords)


def test_bad_input():
    with pytest.raises(SASInputError):
        voxelize(np.zeros((0, 3)), 0.02)
    with pytest.raises(SASInputError, match="voxel_size"):
        voxelize(np.zeros((3, 3)), 0.0)
    with pytest.raises(SASInputError, match="NaN"):
        voxelize(np.array([[np.nan, 0, 0]]), 0.02)
