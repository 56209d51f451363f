"""Geometric primitives of the synthetic world and their tessellation into ScanNet-like dense triangle grids.

Every primitive has a local frame (``rot`` maps local to world axes, ``center`` is its origin in world) and full
extents ``size`` along the local axes:

* ``box``: a cuboid; faces listed in ``skip`` (e.g. ``"-z"`` for a bottom resting on the floor) are not emitted.
* ``cylinder``: axis along local z, elliptic cross-section with diameters ``size[0]``, ``size[1]``, height ``size[2]``.
* ``panel``: a one-sided rectangle in the local x-y plane, normal +z, with optional rectangular ``holes``
  (``(x0, x1, y0, y1)`` in local coordinates) cut exactly at their edges (walls with doors and windows).
* ``wavy``: a panel displaced along its normal by ``wave[0] * sin(2 pi x / wave[1])`` (curtains).

Tessellation places vertices on a grid of about ``spacing`` metres and returns, besides world positions and
triangles, each vertex's local coordinates and face axis (for textures) and a patch id (for the segments file).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

_FACES = ("-x", "+x", "-y", "+y", "-z", "+z")


@dataclass
class Primitive:
    """One shape of an object (see module docstring). ``material`` indexes the room's material list."""

    kind: str
    center: np.ndarray
    size: np.ndarray
    rot: np.ndarray
    material: int
    holes: tuple = ()
    wave: tuple = (0.0, 0.1)
    skip: tuple = ()

    def transformed(self, rot: np.ndarray, trans: np.ndarray) -> "Primitive":
        """The primitive moved by the rigid transform ``x -> rot @ x + trans``."""
        return replace(self, center=rot @ self.center + trans, rot=rot @ self.rot)

    def corners(self) -> np.ndarray:
        """float [8, 3] world corners of the local bounding box."""
        s = np.array([[i, j, k] for i in (-.5, .5) for j in (-.5, .5) for k in (-.5, .5)]) * self.size
        if self.kind == "wavy":
            s[:, 2] = np.sign(s[:, 2]) * self.wave[0]
        return s @ self.rot.T + self.center

    @property
    def long_axis(self) -> int:
        """Local axis of the largest extent (grain direction)."""
        return int(np.argmax(self.size))


def box(x0, x1, y0, y1, z0, z1, material: int, skip: tuple = ()) -> Primitive:
    """Axis-aligned box in the caller's frame, given by its bounds."""
    lo, hi = np.array([x0, y0, z0], float), np.array([x1, y1, z1], float)
    return Primitive("box", (lo + hi) / 2, np.abs(hi - lo), np.eye(3), material, skip=skip)


def cylinder(cx, cy, z0, z1, rx, material: int, ry=None, skip: tuple = ()) -> Primitive:
    """Vertical cylinder (elliptic when ``ry`` differs from ``rx``) standing on ``z0``."""
    ry = rx if ry is None else ry
    return Primitive("cylinder", np.array([cx, cy, (z0 + z1) / 2], float), np.array([2 * rx, 2 * ry, abs(z1 - z0)]),
                     np.eye(3), material, skip=skip)


def rod(x0, x1, y, z, r, material: int) -> Primitive:
    """Horizontal cylinder along x from ``x0`` to ``x1`` (curtain rods, handles)."""
    rot = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float)  # local z -> world x
    return Primitive("cylinder", np.array([(x0 + x1) / 2, y, z], float), np.array([2 * r, 2 * r, abs(x1 - x0)]), rot,
                     material)


def ycylinder(cx, y0, y1, cz, r, material: int) -> Primitive:
    """Cylinder with its axis along y from ``y0`` to ``y1`` (door roses, knobs)."""
    rot = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)  # local z -> world y
    return Primitive("cylinder", np.array([cx, (y0 + y1) / 2, cz], float), np.array([2 * r, 2 * r, abs(y1 - y0)]),
                     rot, material)


_FACING_Y = np.array([[-1, 0, 0], [0, 0, 1], [0, 1, 0]], float)  # local x -> -x, local y -> up, normal -> +y


def facing_panel(cx, y, cz, w, h, material: int, wave: tuple | None = None) -> Primitive:
    """Vertical rectangle of width ``w`` (along x) and height ``h`` centred at (cx, y, cz), facing +y; local y is up.

    With ``wave = (amplitude, wavelength)`` the panel has folds (curtains)."""
    kind = "panel" if wave is None else "wavy"
    return Primitive(kind, np.array([cx, y, cz], float), np.array([w, h, 0.0]), _FACING_Y.copy(), material,
                     wave=wave or (0.0, 0.1))


def yaw_matrix(yaw: float) -> np.ndarray:
    """Rotation about world z by ``yaw`` radians."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], float)


# -- tessellation ------------------------------------------------------------------------------------------------
@dataclass
class Tess:
    """Tessellation of one primitive: world vertices, local coordinates, normals, triangles, patch ids."""

    verts: np.ndarray
    local: np.ndarray
    normal_axis: np.ndarray
    normals: np.ndarray
    tris: np.ndarray
    patch: np.ndarray
    extra: dict = field(default_factory=dict)


def _n(length: float, spacing: float, minimum: int = 1) -> int:
    return max(minimum, int(math.ceil(length / spacing - 1e-6)))


def _axis_breaks(lo: float, hi: float, spacing: float, cuts=()) -> np.ndarray:
    """Grid coordinates from lo to hi at ~spacing, including the exact cut positions."""
    base = np.linspace(lo, hi, _n(hi - lo, spacing) + 1)
    cuts = np.unique(np.asarray([c for c in cuts if lo + 1e-9 < c < hi - 1e-9], float))
    if not cuts.size:
        return base
    near = np.abs(base[:, None] - cuts[None, :]).min(1) <= spacing * 0.25  # grid lines replaced by the cuts
    near[0] = near[-1] = False
    return np.unique(np.concatenate([base[~near], cuts]))


def _grid(us: np.ndarray, vs: np.ndarray, cell_ok: np.ndarray | None = None):
    """Vertex grid (len(us) x len(vs)); returns (u, v, tris) with CCW triangles in the (u, v) plane."""
    nu, nv = len(us), len(vs)
    uu, vv = np.meshgrid(us, vs, indexing="ij")
    idx = np.arange(nu * nv).reshape(nu, nv)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    if cell_ok is None:
        cell_ok = np.ones(a.shape, bool)
    a, b, c, d = a[cell_ok], b[cell_ok], c[cell_ok], d[cell_ok]
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return uu.ravel(), vv.ravel(), tris


def _patch_ids(u, v, u0, u1, v0, v1, seg: float, base: int) -> np.ndarray:
    nu = max(1, int(round((u1 - u0) / seg)))
    nv = max(1, int(round((v1 - v0) / seg)))
    iu = np.clip(((u - u0) / max(u1 - u0, 1e-9) * nu).astype(np.int64), 0, nu - 1)
    iv = np.clip(((v - v0) / max(v1 - v0, 1e-9) * nv).astype(np.int64), 0, nv - 1)
    return base + iu * nv + iv


def _compact(tess_parts, prim: Primitive) -> Tess:
    """Concatenate face parts, drop unused vertices, map to world."""
    loc, nax, nrm, tris, patch = [], [], [], [], []
    off = 0
    for lp, na, ln, tr, pa in tess_parts:
        used = np.zeros(len(lp), bool)
        used[tr.ravel()] = True
        remap = np.cumsum(used) - 1
        loc.append(lp[used]); nax.append(na[used]); nrm.append(ln[used]); patch.append(pa[used])
        tris.append(remap[tr] + off)
        off += int(used.sum())
    local = np.concatenate(loc)
    verts = local @ prim.rot.T + prim.center
    normals = np.concatenate(nrm) @ prim.rot.T
    return Tess(verts, local, np.concatenate(nax), normals, np.concatenate(tris), np.concatenate(patch))


def tessellate(prim: Primitive, spacing: float, seg: float = 0.4) -> Tess:
    """Dense triangle grid of ``prim`` with vertices about ``spacing`` metres apart."""
    if prim.kind == "box":
        return _compact(_box_parts(prim, spacing, seg), prim)
    if prim.kind == "cylinder":
        return _compact(_cylinder_parts(prim, spacing, seg), prim)
    if prim.kind in ("panel", "wavy"):
        return _compact(_panel_parts(prim, spacing, seg), prim)
    raise ValueError(f"unknown primitive kind {prim.kind!r}")


def count_vertices(prim: Primitive, spacing: float) -> int:
    """Approximate vertex count of :func:`tessellate` at ``spacing`` (no geometry built)."""
    sx, sy, sz = prim.size
    if prim.kind == "box":
        tot = 0
        for k, name in enumerate(_FACES):
            if name in prim.skip:
                continue
            a, b = [prim.size[j] for j in range(3) if j != k // 2]
            tot += (_n(a, spacing) + 1) * (_n(b, spacing) + 1)
        return tot
    if prim.kind == "cylinder":
        circ = math.pi * (sx + sy) / 2
        nseg = _n(circ, spacing, 8)
        side = (nseg + 1) * (_n(sz, spacing) + 1)
        caps = sum(1 for f in ("-z", "+z") if f not in prim.skip) * (1 + nseg * _n(max(sx, sy) / 2, spacing))
        return side + caps
    sp = min(spacing, prim.wave[1] / 8) if prim.kind == "wavy" else spacing
    return (_n(sx, sp) + 1) * (_n(sy, spacing) + 1)


def _box_parts(prim: Primitive, spacing: float, seg: float):
    parts = []
    half = prim.size / 2
    for k, name in enumerate(_FACES):
        if name in prim.skip:
            continue
        ax, sign = k // 2, (1.0 if name[0] == "+" else -1.0)
        i, j = (ax + 1) % 3, (ax + 2) % 3  # (u, v) cyclic after the normal axis: u x v = +normal
        if sign < 0:
            i, j = j, i
        us = np.linspace(-half[i], half[i], _n(prim.size[i], spacing) + 1)
        vs = np.linspace(-half[j], half[j], _n(prim.size[j], spacing) + 1)
        u, v, tris = _grid(us, vs)
        lp = np.zeros((len(u), 3))
        lp[:, i], lp[:, j], lp[:, ax] = u, v, sign * half[ax]
        ln = np.zeros((len(u), 3))
        ln[:, ax] = sign
        pa = _patch_ids(u, v, -half[i], half[i], -half[j], half[j], seg, k * 1_000_000)
        parts.append((lp, np.full(len(u), ax, np.int8), ln, tris, pa))
    return parts


def _cylinder_parts(prim: Primitive, spacing: float, seg: float):
    rx, ry, h = prim.size[0] / 2, prim.size[1] / 2, prim.size[2]
    circ = math.pi * (rx + ry)
    nseg = _n(circ, spacing, 8)
    th = np.linspace(0, 2 * math.pi, nseg + 1)
    zs = np.linspace(-h / 2, h / 2, _n(h, spacing) + 1)
    t, z, tris = _grid(th, zs)
    lp = np.stack([rx * np.cos(t), ry * np.sin(t), z], 1)
    ln = np.stack([np.cos(t) / rx, np.sin(t) / ry, np.zeros_like(t)], 1)
    ln /= np.linalg.norm(ln, axis=1, keepdims=True)
    pa = _patch_ids(t, z, 0, 2 * math.pi, -h / 2, h / 2, seg, 0)
    parts = [(lp, np.full(len(t), -1, np.int8), ln, tris, pa)]
    nr = _n(max(rx, ry), spacing)
    for name, sign in (("-z", -1.0), ("+z", 1.0)):
        if name in prim.skip:
            continue
        fr = np.repeat(np.arange(1, nr + 1) / nr, nseg)
        ang = np.tile(th[:-1], nr)
        lp = np.concatenate([[[0.0, 0.0, sign * h / 2]], np.stack([rx * fr * np.cos(ang), ry * fr * np.sin(ang),
                                                                 np.full(len(fr), sign * h / 2)], 1)])
        ring = lambda k, i: 1 + k * nseg + (i % nseg)  # noqa: E731
        tr = [np.stack([np.zeros(nseg, int), ring(0, np.arange(nseg)), ring(0, np.arange(1, nseg + 1))], 1)]
        for k in range(nr - 1):
            i = np.arange(nseg)
            a, b, c, d = ring(k, i), ring(k + 1, i), ring(k + 1, i + 1), ring(k, i + 1)
            tr += [np.stack([a, b, c], 1), np.stack([a, c, d], 1)]
        tr = np.concatenate(tr)
        if sign < 0:
            tr = tr[:, ::-1]
        ln = np.zeros((len(lp), 3))
        ln[:, 2] = sign
        pa = np.full(len(lp), (2 if sign > 0 else 1) * 1_000_000, np.int64)
        parts.append((lp, np.full(len(lp), 2, np.int8), ln, tr, pa))
    return parts


def _panel_parts(prim: Primitive, spacing: float, seg: float):
    sx, sy = prim.size[0], prim.size[1]
    amp, lam = prim.wave
    sp_x = min(spacing, lam / 8) if prim.kind == "wavy" else spacing
    cut_x = [c for hole in prim.holes for c in hole[:2]]
    cut_y = [c for hole in prim.holes for c in hole[2:]]
    us = _axis_breaks(-sx / 2, sx / 2, sp_x, cut_x)
    vs = _axis_breaks(-sy / 2, sy / 2, spacing, cut_y)
    ok = np.ones((len(us) - 1, len(vs) - 1), bool)
    if prim.holes:
        cu, cv = (us[:-1] + us[1:]) / 2, (vs[:-1] + vs[1:]) / 2
        for x0, x1, y0, y1 in prim.holes:
            ok &= ~(((cu > x0) & (cu < x1))[:, None] & ((cv > y0) & (cv < y1))[None, :])
    u, v, tris = _grid(us, vs, ok)
    lp = np.stack([u, v, np.zeros_like(u)], 1)
    ln = np.zeros_like(lp)
    ln[:, 2] = 1.0
    if prim.kind == "wavy":
        k = 2 * math.pi / lam
        lp[:, 2] = amp * np.sin(k * u)
        ln = np.stack([-amp * k * np.cos(k * u), np.zeros_like(u), np.ones_like(u)], 1)
        ln /= np.linalg.norm(ln, axis=1, keepdims=True)
    pa = _patch_ids(u, v, -sx / 2, sx / 2, -sy / 2, sy / 2, seg, 0)
    return [(lp, np.full(len(u), 2, np.int8), ln, tris, pa)]
