"""Primitives, tessellation and procedural textures of the synthetic world."""
import numpy as np
import pytest

from sas_engine.synth.materials import Material, MaterialTable, value_noise, value_noise_numpy
from sas_engine.synth.primitives import box, count_vertices, cylinder, facing_panel, tessellate, yaw_matrix


def _tri_normals(t):
    v = t.verts[t.tris]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def test_box_tessellation_is_closed_outward_and_dense():
    p = box(0, 1.0, 0, 0.5, 0, 0.3, material=0)
    p = p.transformed(yaw_matrix(0.7), np.array([2.0, 1.0, 0.0]))
    t = tessellate(p, spacing=0.05)
    assert len(t.verts) == count_vertices(p, 0.05)
    # all vertices on the box surface: in local coords one |coordinate| equals its half extent
    loc = (t.verts - p.center) @ p.rot
    on_face = np.isclose(np.abs(loc), p.size / 2, atol=1e-6).any(1)
    assert on_face.all()
    # triangle winding gives outward normals: normal . (centroid - center) > 0
    cen = t.verts[t.tris].mean(1)
    assert (np.einsum("ij,ij->i", _tri_normals(t), cen - p.center) > 0).all()
    # grid spacing respected: no triangle edge longer than spacing * sqrt(2) (+ rounding)
    v = t.verts[t.tris]
    edges = np.linalg.norm(v - np.roll(v, 1, axis=1), axis=2)
    assert edges.max() <= 0.05 * np.sqrt(2) + 1e-6
    # surface area of the triangles equals the box's
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum()
    assert area == pytest.approx(2 * (0.5 + 0.3 + 0.15), rel=1e-6)


def test_box_skip_faces_and_cylinder_surface():
    t = tessellate(box(0, 1, 0, 1, 0, 1, 0, skip=("-z",)), 0.25)
    assert t.verts[:, 2].min() == pytest.approx(0.0) and len(t.verts) == 5 * 25
    c = cylinder(0.0, 0.0, 0.0, 0.8, 0.2, 0, ry=0.1)
    t = tessellate(c, 0.04)
    side = t.normal_axis == -1
    r = (t.verts[side, 0] / 0.2) ** 2 + (t.verts[side, 1] / 0.1) ** 2
    assert np.allclose(r, 1.0, atol=1e-6)
    cen = t.verts[t.tris].mean(1) - c.center
    assert (np.einsum("ij,ij->i", _tri_normals(t), cen) > 0).mean() > 0.99


def test_panel_holes_are_cut_exactly():
    p = facing_panel(0.0, 0.0, 1.0, 2.0, 2.0, material=0)
    p.holes = ((-0.3, 0.4, -0.5, 0.2),)
    t = tessellate(p, 0.1)
    loc = (t.verts - p.center) @ p.rot
    cen = (t.verts[t.tris].mean(1) - p.center) @ p.rot
    inside = (cen[:, 0] > -0.3) & (cen[:, 0] < 0.4) & (cen[:, 1] > -0.5) & (cen[:, 1] < 0.2)
    assert not inside.any()
    v = t.verts[t.tris]
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum()
    assert area == pytest.approx(4.0 - 0.7 * 0.7, rel=1e-6)
    # the hole's corners are vertices (exact edges)
    for x, y in [(-0.3, -0.5), (0.4, 0.2)]:
        assert np.isclose(loc[:, :2], [x, y], atol=1e-9).all(1).any()


def test_value_noise_numba_matches_numpy_and_is_smooth():
    p = np.random.default_rng(0).normal(size=(5000, 3)).astype(np.float32) * 7
    a, b = value_noise(p), value_noise_numpy(p)
    assert np.allclose(a, b, atol=1e-5)
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0.1
    q = p + np.float32(1e-3)
    assert np.abs(value_noise(q) - a).max() < 0.02  # continuous


def test_textures_tiles_have_grout_and_wood_has_grain():
    tab = MaterialTable([Material("tiles", (0.9, 0.9, 0.9), (0.2, 0.2, 0.2), 0.2),
                         Material("wood", (0.6, 0.4, 0.2), (0.3, 0.2, 0.1), 0.02),
                         Material("paint", (0.5, 0.6, 0.7))])
    g = np.stack(np.meshgrid(np.linspace(0.013, 1.993, 200), np.linspace(0.011, 1.991, 200)), -1).reshape(-1, 2)
    loc = np.concatenate([g, np.zeros((len(g), 1))], 1).astype(np.float32)
    n = len(loc)
    z = np.zeros(n, np.int64)
    tiles = tab.albedo(z, loc, z, np.full(n, 2))
    grout = (tiles < 0.3).all(1).mean()
    assert 0.02 < grout < 0.15  # 4 mm grout of 20 cm tiles on both axes: ~8 %
    wood = tab.albedo(np.ones(n, np.int64), loc, z, np.full(n, 2))
    assert wood[:, 0].std() > 0.02
    paint = tab.albedo(np.full(n, 2), loc, z, np.full(n, 2))
    assert np.abs(paint.mean(0) - [0.5, 0.6, 0.7]).max() < 0.03 and paint.std(0).max() < 0.02
