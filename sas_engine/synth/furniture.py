"""Furniture built from primitives, in an object-local frame.

Frame: origin at the centre of the footprint on the floor, x across the object's width, y along its depth with the
back at ``-d/2`` and the front (the side a person uses) at ``+d/2``, z up. Each builder takes a random generator and
a material function ``mk(key) -> material index`` (see :meth:`Palette.maker`), draws plausible dimensions, and returns
a :class:`Shape`. Every builder is registered in :data:`BUILDERS` with its raw ScanNet-style label and NYU40 id.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .primitives import Primitive, box, cylinder, facing_panel, rod, yaw_matrix

Mk = Callable[[str], int]


@dataclass
class Shape:
    """An object's primitives in its local frame and its footprint (w along x, d along y) and height."""

    prims: list[Primitive]
    w: float
    d: float
    h: float


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


def _legs(w, d, z1, inset, r, mat, square: bool) -> list[Primitive]:
    out = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (w / 2 - inset), sy * (d / 2 - inset)
            out.append(box(x - r, x + r, y - r, y + r, 0, z1, mat, skip=("-z",)) if square
                       else cylinder(x, y, 0, z1, r, mat, skip=("-z",)))
    return out


def _handle(x, y_front, z0, z1, mat, horizontal=False) -> Primitive:
    if horizontal:
        return box(x - (z1 - z0) / 2, x + (z1 - z0) / 2, y_front, y_front + 0.025, -0.008, 0.008, mat)
    return box(x - 0.008, x + 0.008, y_front, y_front + 0.025, z0, z1, mat)


def _fronts(w, d, z0, z1, n, mat, hmat, drawers: bool) -> list[Primitive]:
    """Door or drawer fronts on the +y face of a carcass, with handles."""
    out = []
    gap = 0.004
    if drawers:
        hs = np.linspace(z0, z1, n + 1)
        for a, b in zip(hs[:-1], hs[1:]):
            out.append(box(-w / 2 + gap, w / 2 - gap, d / 2, d / 2 + 0.018, a + gap, b - gap, mat))
            hnd = _handle(0.0, d / 2 + 0.018, 0, min(0.25, w * 0.4), hmat, horizontal=True)
            hnd.center = hnd.center + np.array([0.0, 0.0, (a + b) / 2 + (b - a) * 0.25])
            out.append(hnd)
    else:
        xs = np.linspace(-w / 2, w / 2, n + 1)
        for i, (a, b) in enumerate(zip(xs[:-1], xs[1:])):
            out.append(box(a + gap, b - gap, d / 2, d / 2 + 0.018, z0 + gap, z1 - gap, mat))
            hx = b - 0.05 if i % 2 == 0 else a + 0.05
            zc = z1 - 0.12 if z1 < 1.2 else (z0 + z1) / 2
            out.append(_handle(hx, d / 2 + 0.018, zc - 0.07, zc + 0.07, hmat))
    return out


# -- seating -------------------------------------------------------------------------------------------------------
def chair(rng, mk: Mk) -> Shape:
    w, d, sh = _u(rng, 0.42, 0.5), _u(rng, 0.44, 0.52), _u(rng, 0.43, 0.48)
    frame = mk("wood" if rng.random() < 0.65 else "metal")
    seat = mk("fabric") if rng.random() < 0.6 else frame
    t = _u(rng, 0.035, 0.06)
    prims = _legs(w, d, sh - t, 0.03, 0.017, frame, square=rng.random() < 0.5)
    prims.append(box(-w / 2, w / 2, -d / 2, d / 2, sh - t, sh, seat))
    bh = sh + _u(rng, 0.35, 0.48)
    prims += [box(-w / 2 + 0.01, -w / 2 + 0.04, -d / 2, -d / 2 + 0.03, sh, bh, frame),
              box(w / 2 - 0.04, w / 2 - 0.01, -d / 2, -d / 2 + 0.03, sh, bh, frame)]
    if rng.random() < 0.5:  # solid backrest
        prims.append(box(-w / 2 + 0.02, w / 2 - 0.02, -d / 2 + 0.005, -d / 2 + 0.03, bh - _u(rng, 0.18, 0.3), bh,
                         seat))
    else:  # slats
        for z in np.linspace(sh + 0.12, bh - 0.03, 3):
            prims.append(box(-w / 2 + 0.04, w / 2 - 0.04, -d / 2 + 0.008, -d / 2 + 0.025, z - 0.025, z + 0.025, frame))
    return Shape(prims, w, d, bh)


def office_chair(rng, mk: Mk) -> Shape:
    w, d, sh = _u(rng, 0.5, 0.6), _u(rng, 0.5, 0.58), _u(rng, 0.45, 0.52)
    fab, metal = mk("fabric" if rng.random() < 0.5 else "dark"), mk("metal" if rng.random() < 0.5 else "dark")
    prims = []
    for k in range(5):  # star base
        leg = box(0.0, 0.3, -0.02, 0.02, 0.04, 0.08, metal)
        r = yaw_matrix(2 * math.pi * k / 5 + 0.3)
        prims.append(leg.transformed(r, np.zeros(3)))
        c = r @ np.array([0.28, 0.0, 0.0])
        prims.append(cylinder(c[0], c[1], 0.0, 0.04, 0.025, metal, skip=("-z",)))
    prims.append(cylinder(0, 0, 0.08, sh - 0.08, 0.025, metal))
    prims.append(box(-w / 2, w / 2, -d / 2, d / 2, sh - 0.08, sh, fab))
    bh = sh + _u(rng, 0.45, 0.6)
    prims.append(box(-0.03, 0.03, -d / 2 - 0.01, -d / 2 + 0.02, sh - 0.06, sh + 0.15, metal))
    prims.append(box(-w / 2 + 0.03, w / 2 - 0.03, -d / 2 - 0.03, -d / 2 + 0.03, sh + 0.12, bh, fab))
    if rng.random() < 0.6:
        for sx in (-1, 1):
            x = sx * (w / 2 - 0.02)
            prims += [box(x - 0.015, x + 0.015, -0.05, 0.05, sh, sh + 0.2, metal),
                      box(x - 0.03, x + 0.03, -0.15, 0.1, sh + 0.2, sh + 0.23, mk("dark"))]
    return Shape(prims, w + 0.1, d + 0.06, bh)


def armchair(rng, mk: Mk) -> Shape:
    w, d, h = _u(rng, 0.7, 0.9), _u(rng, 0.72, 0.85), _u(rng, 0.75, 0.95)
    return _upholstered(rng, mk, w, d, h, seats=1)


def sofa(rng, mk: Mk) -> Shape:
    seats = int(rng.integers(2, 4))
    w, d, h = _u(rng, 0.75, 0.85) * seats + 0.35, _u(rng, 0.82, 0.95), _u(rng, 0.75, 0.9)
    return _upholstered(rng, mk, w, d, h, seats)


def _upholstered(rng, mk: Mk, w, d, h, seats) -> Shape:
    fab = mk("fabric" if rng.random() < 0.7 else "fabric2")
    legs = mk("wood2" if rng.random() < 0.5 else "dark")
    arm_w, arm_h, base = _u(rng, 0.12, 0.22), _u(rng, 0.55, 0.68), _u(rng, 0.08, 0.14)
    seat_h = _u(rng, 0.40, 0.46)
    back_t = _u(rng, 0.16, 0.24)
    prims = _legs(w, d, base, 0.06, 0.02, legs, square=rng.random() < 0.5)
    prims.append(box(-w / 2, w / 2, -d / 2, d / 2, base, seat_h - 0.1, fab))
    inner = w - 2 * arm_w
    xs = np.linspace(-inner / 2, inner / 2, seats + 1)
    for a, b in zip(xs[:-1], xs[1:]):
        prims.append(box(a + 0.005, b - 0.005, -d / 2 + back_t, d / 2 - 0.01, seat_h - 0.1, seat_h, fab))
        prims.append(box(a + 0.01, b - 0.01, -d / 2 + 0.04, -d / 2 + back_t + 0.04, seat_h, h - 0.03, fab))
    prims.append(box(-w / 2, w / 2, -d / 2, -d / 2 + back_t * 0.5, seat_h - 0.1, h, fab))
    for sx in (-1, 1):
        x0 = sx * w / 2
        prims.append(box(min(x0, x0 - sx * arm_w), max(x0, x0 - sx * arm_w), -d / 2, d / 2, base, arm_h, fab))
    return Shape(prims, w, d, h)


def bed(rng, mk: Mk) -> Shape:
    w = _u(rng, 0.9, 1.0) if rng.random() < 0.35 else _u(rng, 1.4, 1.8)
    length = _u(rng, 2.0, 2.15)
    frame = mk("wood" if rng.random() < 0.6 else "fabric2")
    fz, mz = _u(rng, 0.25, 0.35), _u(rng, 0.18, 0.25)
    prims = _legs(w, length, 0.1, 0.05, 0.03, frame, square=True)
    prims.append(box(-w / 2, w / 2, -length / 2 + 0.05, length / 2, 0.1, fz, frame))
    top = fz + mz
    prims.append(box(-w / 2 + 0.02, w / 2 - 0.02, -length / 2 + 0.07, length / 2 - 0.02, fz, top, mk("bedding")))
    duvet_y = -length / 2 + length * _u(rng, 0.28, 0.36)
    prims.append(box(-w / 2 - 0.015, w / 2 + 0.015, duvet_y, length / 2 + 0.01, top - 0.12, top + 0.05, mk("fabric")))
    n_pillows = 1 if w < 1.2 else 2
    pw = (w - 0.15) / n_pillows
    for i in range(n_pillows):
        x0 = -w / 2 + 0.07 + i * pw
        prims.append(box(x0 + 0.02, x0 + pw - 0.02, -length / 2 + 0.1, -length / 2 + 0.45, top, top + 0.13,
                         mk("bedding")))
    hb = _u(rng, 0.85, 1.2)
    prims.append(box(-w / 2 - 0.02, w / 2 + 0.02, -length / 2, -length / 2 + 0.06, 0.0, hb, frame, skip=("-z",)))
    return Shape(prims, w + 0.04, length, hb)


# -- tables --------------------------------------------------------------------------------------------------------
def table(rng, mk: Mk, kind: str = "dining") -> Shape:
    if kind == "coffee":
        w, d, h = _u(rng, 0.9, 1.3), _u(rng, 0.5, 0.7), _u(rng, 0.38, 0.48)
    elif kind == "meeting":
        w, d, h = _u(rng, 1.8, 2.4), _u(rng, 0.9, 1.1), _u(rng, 0.73, 0.76)
    else:
        w, d, h = _u(rng, 1.1, 1.7), _u(rng, 0.75, 0.95), _u(rng, 0.73, 0.77)
    top = mk("wood" if rng.random() < 0.75 else "white")
    legm = top if rng.random() < 0.6 else mk("metal")
    t = _u(rng, 0.025, 0.05)
    prims = [box(-w / 2, w / 2, -d / 2, d / 2, h - t, h, top)]
    if kind == "dining" and rng.random() < 0.25:  # round pedestal table
        d = w = min(w, 1.2)
        prims = [cylinder(0, 0, h - t, h, w / 2, top), cylinder(0, 0, 0.04, h - t, 0.05, legm),
                 cylinder(0, 0, 0, 0.04, 0.25, legm, skip=("-z",))]
        return Shape(prims, w, d, h)
    prims += _legs(w, d, h - t, 0.06, 0.025, legm, square=rng.random() < 0.6)
    if kind == "coffee" and rng.random() < 0.5:
        prims.append(box(-w / 2 + 0.05, w / 2 - 0.05, -d / 2 + 0.05, d / 2 - 0.05, 0.1, 0.12, top))
    return Shape(prims, w, d, h)


def desk(rng, mk: Mk) -> Shape:
    w, d, h = _u(rng, 1.1, 1.7), _u(rng, 0.6, 0.78), _u(rng, 0.72, 0.76)
    top = mk("wood" if rng.random() < 0.7 else "white")
    t = _u(rng, 0.025, 0.04)
    prims = [box(-w / 2, w / 2, -d / 2, d / 2, h - t, h, top)]
    if rng.random() < 0.5:  # panel sides
        prims += [box(-w / 2, -w / 2 + 0.03, -d / 2, d / 2, 0, h - t, top, skip=("-z",)),
                  box(w / 2 - 0.03, w / 2, -d / 2, d / 2, 0, h - t, top, skip=("-z",)),
                  box(-w / 2 + 0.03, w / 2 - 0.03, -d / 2, -d / 2 + 0.02, h * 0.35, h - t, top)]
    else:
        prims += _legs(w, d, h - t, 0.04, 0.02, mk("metal"), square=True)
    if rng.random() < 0.7:  # drawer unit
        uw = _u(rng, 0.38, 0.45)
        x0 = w / 2 - uw - 0.03 if rng.random() < 0.5 else -w / 2 + 0.03
        unit = [box(-uw / 2, uw / 2, -d / 2 + 0.02, d / 2 - 0.02, 0, h - t, top, skip=("-z",))]
        unit += _fronts(uw, d - 0.04, 0.05, h - t - 0.02, 3, top, mk("metal"), drawers=True)
        prims += [p.transformed(np.eye(3), np.array([x0 + uw / 2, 0.0, 0.0])) for p in unit]
    return Shape(prims, w, d, h)


# -- storage -------------------------------------------------------------------------------------------------------
def bookshelf(rng, mk: Mk) -> Shape:
    w, d, h = _u(rng, 0.6, 1.2), _u(rng, 0.28, 0.38), _u(rng, 1.2, 2.1)
    m = mk("wood" if rng.random() < 0.7 else "white")
    t = 0.02
    prims = [box(-w / 2, -w / 2 + t, -d / 2, d / 2, 0, h, m, skip=("-z",)),
             box(w / 2 - t, w / 2, -d / 2, d / 2, 0, h, m, skip=("-z",)),
             box(-w / 2 + t, w / 2 - t, -d / 2, d / 2, h - t, h, m),
             box(-w / 2 + t, w / 2 - t, -d / 2, -d / 2 + 0.01, 0, h - t, m, skip=("-z",)),
             box(-w / 2 + t, w / 2 - t, -d / 2 + 0.01, d / 2 - 0.01, 0, 0.08, m, skip=("-z",))]
    n = max(2, int(round((h - 0.1) / _u(rng, 0.3, 0.4))))
    levels = np.linspace(0.08, h - t, n + 1)
    for i, z in enumerate(levels[:-1]):
        if i > 0:
            prims.append(box(-w / 2 + t, w / 2 - t, -d / 2 + 0.01, d / 2, z - t, z, m))
        gap = levels[i + 1] - z - (t if i + 1 < n else 0)
        x = -w / 2 + t + 0.005
        end = w / 2 - t - _u(rng, 0.0, 0.35) * w
        while True:
            bw = _u(rng, 0.018, 0.05)
            if x + bw > end:
                break
            bh, bd = min(gap - 0.02, _u(rng, 0.15, 0.3)), min(d - 0.04, _u(rng, 0.15, 0.25))
            if bh > 0.08:
                prims.append(box(x, x + bw, -d / 2 + 0.015, -d / 2 + 0.015 + bd, z, z + bh, mk("book")))
            x += bw + (0.002 if rng.random() < 0.85 else _u(rng, 0.03, 0.12))
    return Shape(prims, w, d, h)


def cabinet(rng, mk: Mk, kind: str = "low", width: float | None = None) -> Shape:
    """Cabinets: ``wardrobe``, ``low`` (sideboard / TV stand / dresser), ``file``, ``kitchen`` (under a counter, no
    top), ``upper`` (wall-mounted, origin at its bottom), ``vanity`` (bathroom, no top)."""
    dims = {"wardrobe": ((0.9, 1.8), (0.55, 0.62), (1.9, 2.2)), "low": ((0.8, 1.8), (0.4, 0.5), (0.5, 0.8)),
            "file": ((0.4, 0.5), (0.5, 0.6), (0.7, 1.3)), "kitchen": ((0.6, 3.0), (0.56, 0.58), (0.84, 0.86)),
            "upper": ((0.6, 3.0), (0.32, 0.36), (0.65, 0.75)), "vanity": ((0.6, 1.0), (0.45, 0.5), (0.78, 0.82))}[kind]
    w = width if width is not None else _u(rng, *dims[0])
    d, h = _u(rng, *dims[1]), _u(rng, *dims[2])
    m = mk("white" if rng.random() < 0.65 else "wood")
    hm = mk("metal")
    plinth = 0.08 if kind in ("kitchen", "vanity", "wardrobe", "low") else 0.0
    skip = (("-z",) if plinth == 0 else ()) + (("+z",) if kind in ("kitchen", "vanity") else ())  # top: counter
    prims = [box(-w / 2, w / 2, -d / 2, d / 2 - 0.02, plinth, h, m, skip=skip)]
    if plinth:
        prims.append(box(-w / 2 + 0.01, w / 2 - 0.01, -d / 2, d / 2 - 0.07, 0, plinth, mk("dark"), skip=("-z",)))
    if kind == "file":
        prims += _fronts(w, d - 0.04, plinth, h, max(2, int(h / 0.32)), m, hm, drawers=True)
    elif kind == "low" and rng.random() < 0.5:
        prims += _fronts(w, d - 0.04, plinth, h, 3, m, hm, drawers=True)
    else:
        n = max(1, int(round(w / _u(rng, 0.4, 0.6))))
        prims += _fronts(w, d - 0.04, plinth, h, n, m, hm, drawers=False)
    return Shape(prims, w, d, h)


def counter(rng, mk: Mk, width: float, depth: float, z: float, sink: tuple | None = None,
            thickness: float | None = None) -> Shape:
    """Counter top slab with its top at height ``z`` and an optional rectangular opening ``sink = (x0, x1, y0, y1)``."""
    t = thickness if thickness is not None else _u(rng, 0.03, 0.04)
    m = mk("stone" if rng.random() < 0.7 else "wood")
    x0, x1, y0, y1 = -width / 2, width / 2, -depth / 2, depth / 2
    if sink is None:
        prims = [box(x0, x1, y0, y1, z - t, z, m)]
    else:
        a, b, c, e = sink
        prims = [box(x0, a, y0, y1, z - t, z, m), box(b, x1, y0, y1, z - t, z, m),
                 box(a, b, y0, c, z - t, z, m), box(a, b, e, y1, z - t, z, m)]
    return Shape(prims, width, depth, z)


def basin(rng, mk: Mk, w: float, d: float, z: float, depth: float = 0.16, pedestal: bool = False) -> Shape:
    """A sink: open basin (bottom + four walls) whose rim is at height ``z``, with a faucet behind it."""
    m = mk("ceramic" if rng.random() < 0.6 or pedestal else "metal")
    t = 0.012
    zb = z - depth
    prims = [box(-w / 2, w / 2, -d / 2, d / 2, zb - t, zb, m),
             box(-w / 2 - t, -w / 2, -d / 2, d / 2, zb - t, z, m), box(w / 2, w / 2 + t, -d / 2, d / 2, zb - t, z, m),
             box(-w / 2 - t, w / 2 + t, -d / 2 - t, -d / 2, zb - t, z, m), box(-w / 2 - t, w / 2 + t, d / 2, d / 2 + t,
                                                                                 zb - t, z, m)]
    if pedestal:
        prims += [box(-w / 2 - 0.04, w / 2 + 0.04, -d / 2 - 0.06, d / 2 + 0.04, z - 0.02, z + 0.015, m),
                  cylinder(0, -0.05, 0, zb - t, 0.09, m, ry=0.07, skip=("-z",))]
    fm = mk("metal")
    yb = -d / 2 - 0.05
    prims += [cylinder(0, yb, z, z + 0.2, 0.015, fm), box(-0.012, 0.012, yb, yb + 0.13, z + 0.17, z + 0.2, fm)]
    return Shape(prims, w + 0.1, d + 0.12, z + 0.2)


def refrigerator(rng, mk: Mk) -> Shape:
    w, d, h = _u(rng, 0.6, 0.9), _u(rng, 0.65, 0.75), _u(rng, 1.7, 1.95)
    m = mk("white" if rng.random() < 0.6 else "metal")
    prims = [box(-w / 2, w / 2, -d / 2, d / 2 - 0.04, 0.0, h, m, skip=("-z",))]
    split = h * (_u(rng, 0.62, 0.7) if rng.random() < 0.6 else _u(rng, 0.3, 0.36))
    hm = mk("metal" if rng.random() < 0.5 else "dark")
    for z0, z1 in ((0.02, split - 0.005), (split + 0.005, h - 0.005)):
        prims.append(box(-w / 2 + 0.005, w / 2 - 0.005, d / 2 - 0.04, d / 2, z0, z1, m))
        zc = z1 - 0.15 if z1 < h - 0.1 else z0 + 0.15
        zc = min(max(zc, z0 + 0.1), z1 - 0.1)
        prims.append(box(w / 2 - 0.07, w / 2 - 0.05, d / 2, d / 2 + 0.04, max(z0 + 0.05, zc - 0.25),
                         min(z1 - 0.05, zc + 0.25), hm))
    return Shape(prims, w, d, h)


# -- bathroom ------------------------------------------------------------------------------------------------------
def toilet(rng, mk: Mk) -> Shape:
    m = mk("ceramic")
    w, d = _u(rng, 0.38, 0.44), _u(rng, 0.66, 0.74)
    zs = _u(rng, 0.38, 0.42)
    yb = -d / 2 + 0.2
    prims = [box(-w / 2, w / 2, -d / 2, -d / 2 + 0.19, zs, zs + _u(rng, 0.35, 0.42), m),
             box(-w / 2 - 0.01, w / 2 + 0.01, -d / 2 - 0.005, -d / 2 + 0.2, zs + 0.36, zs + 0.39, m),
             cylinder(0, yb + 0.2, 0, zs - 0.1, 0.13, m, ry=0.18, skip=("-z",)),
             cylinder(0, yb + 0.21, zs - 0.1, zs - 0.02, 0.18, m, ry=0.24),
             cylinder(0, yb + 0.21, zs - 0.02, zs, 0.185, mk("white" if rng.random() < 0.5 else "ceramic"), ry=0.245)]
    return Shape(prims, w + 0.02, d, zs + 0.42)


def bathtub(rng, mk: Mk) -> Shape:
    w, d, h = _u(rng, 1.5, 1.75), _u(rng, 0.7, 0.8), _u(rng, 0.5, 0.58)
    m = mk("ceramic")
    t = _u(rng, 0.06, 0.09)
    prims = [box(-w / 2, w / 2, -d / 2, -d / 2 + t, 0, h, m, skip=("-z",)),
             box(-w / 2, w / 2, d / 2 - t, d / 2, 0, h, m, skip=("-z",)),
             box(-w / 2, -w / 2 + t, -d / 2 + t, d / 2 - t, 0, h, m, skip=("-z",)),
             box(w / 2 - t, w / 2, -d / 2 + t, d / 2 - t, 0, h, m, skip=("-z",)),
             box(-w / 2 + t, w / 2 - t, -d / 2 + t, d / 2 - t, 0, 0.12, m, skip=("-z",))]
    fm = mk("metal")
    prims += [rod(-w / 2 + t, -w / 2 + t + 0.12, -d / 2 + 0.25, h + 0.12, 0.012, fm)]
    return Shape(prims, w, d, h)


def curtain_panel(rng, mk: Mk, width: float, z0: float, z1: float, key: str = "curtain") -> list[Primitive]:
    """A hanging curtain panel in the local x-z plane at y = 0 (normal +y), folds of random wavelength."""
    amp, lam = _u(rng, 0.02, 0.045), _u(rng, 0.1, 0.18)
    return [facing_panel(0.0, 0.0, (z0 + z1) / 2, width, z1 - z0, mk(key), wave=(amp, lam))]


# -- small things --------------------------------------------------------------------------------------------------
def trash_can(rng, mk: Mk) -> Shape:
    r, h = _u(rng, 0.12, 0.18), _u(rng, 0.3, 0.5)
    m = mk("metal" if rng.random() < 0.4 else "plastic")
    return Shape([cylinder(0, 0, 0, h, r, m, skip=("-z",)), cylinder(0, 0, h, h + 0.02, r + 0.008, m)],
                 2 * r, 2 * r, h + 0.02)


def ottoman(rng, mk: Mk) -> Shape:
    w, h = _u(rng, 0.4, 0.7), _u(rng, 0.38, 0.45)
    m = mk("fabric" if rng.random() < 0.6 else "fabric2")
    if rng.random() < 0.5:
        return Shape([cylinder(0, 0, 0, h, w / 2, m, skip=("-z",))], w, w, h)
    d = _u(rng, 0.4, 0.6)
    return Shape([box(-w / 2, w / 2, -d / 2, d / 2, 0.03, h, m), *_legs(w, d, 0.03, 0.04, 0.015, mk("dark"), True)],
                 w, d, h)


def coat_rack(rng, mk: Mk) -> Shape:
    h = _u(rng, 1.6, 1.85)
    m = mk("wood2" if rng.random() < 0.6 else "metal")
    prims = [cylinder(0, 0, 0, 0.03, 0.2, m, skip=("-z",)), cylinder(0, 0, 0.03, h, 0.018, m)]
    for k in range(4):
        hook = box(0.0, 0.12, -0.01, 0.01, h - 0.2, h - 0.17, m)
        prims.append(hook.transformed(yaw_matrix(k * math.pi / 2), np.zeros(3)))
    return Shape(prims, 0.4, 0.4, h)


def laundry_basket(rng, mk: Mk) -> Shape:
    r, h = _u(rng, 0.18, 0.25), _u(rng, 0.4, 0.55)
    return Shape([cylinder(0, 0, 0, h, r, mk("plastic"), ry=r * 0.8, skip=("-z",))], 2 * r, 1.6 * r, h)


def nightstand(rng, mk: Mk) -> Shape:
    w, d, h = _u(rng, 0.4, 0.55), _u(rng, 0.35, 0.45), _u(rng, 0.48, 0.6)
    m = mk("wood" if rng.random() < 0.6 else "white")
    prims = [box(-w / 2, w / 2, -d / 2, d / 2 - 0.02, 0.05, h, m)] + _legs(w, d - 0.02, 0.05, 0.03, 0.015, m, True)
    prims += _fronts(w, d - 0.04, 0.05, h - 0.03, 2, m, mk("metal"), drawers=True)
    return Shape(prims, w, d, h)


def lamp(rng, mk: Mk, floor: bool = False) -> Shape:
    m, shade = mk("metal" if rng.random() < 0.5 else "dark"), mk("bedding")
    if floor:
        h = _u(rng, 1.4, 1.7)
        prims = [cylinder(0, 0, 0, 0.03, 0.15, m, skip=("-z",)), cylinder(0, 0, 0.03, h - 0.3, 0.012, m),
                 cylinder(0, 0, h - 0.32, h, 0.2, shade)]
        return Shape(prims, 0.4, 0.4, h)
    h = _u(rng, 0.35, 0.5)
    prims = [cylinder(0, 0, 0, 0.03, 0.07, m), cylinder(0, 0, 0.03, h - 0.18, 0.01, m),
             cylinder(0, 0, h - 0.2, h, 0.12, shade)]
    return Shape(prims, 0.24, 0.24, h)


def screen(rng, mk: Mk, tv: bool) -> Shape:
    w = _u(rng, 0.9, 1.4) if tv else _u(rng, 0.48, 0.62)
    h = w * 0.58
    m, base = mk("screen"), mk("dark")
    z0 = 0.06 if tv else 0.12
    prims = [box(-w / 2, w / 2, -0.03, 0.01, z0, z0 + h, base), box(-w / 2 + 0.01, w / 2 - 0.01, 0.01, 0.015,
                                                                    z0 + 0.01, z0 + h - 0.01, m),
             box(-0.03, 0.03, -0.05, -0.03, 0.01, z0 + 0.1, base), box(-0.12, 0.12, -0.1, 0.08, 0, 0.015, base)]
    if not tv:  # keyboard
        prims.append(box(-0.22, 0.22, 0.15, 0.3, 0, 0.02, mk("dark")))
    return Shape(prims, w, 0.3 if not tv else 0.2, z0 + h)


def rug(rng, mk: Mk) -> Shape:
    w, d = _u(rng, 1.4, 2.4), _u(rng, 1.0, 1.8)
    return Shape([box(-w / 2, w / 2, -d / 2, d / 2, 0, 0.012, mk("carpet"), skip=("-z",))], w, d, 0.012)


@dataclass(frozen=True)
class Kind:
    """A buildable object kind: builder, raw category (as in ScanNet aggregation files) and NYU40 id."""

    build: Callable[..., Shape]
    raw: str
    nyu40: int


BUILDERS: dict[str, Kind] = {
    "chair": Kind(chair, "chair", 5),
    "office_chair": Kind(office_chair, "office chair", 5),
    "armchair": Kind(armchair, "armchair", 5),
    "sofa": Kind(sofa, "sofa", 6),
    "bed": Kind(bed, "bed", 4),
    "table": Kind(table, "table", 7),
    "coffee_table": Kind(lambda r, m: table(r, m, "coffee"), "coffee table", 7),
    "meeting_table": Kind(lambda r, m: table(r, m, "meeting"), "conference table", 7),
    "desk": Kind(desk, "desk", 14),
    "bookshelf": Kind(bookshelf, "bookshelf", 10),
    "wardrobe": Kind(lambda r, m: cabinet(r, m, "wardrobe"), "wardrobe cabinet", 3),
    "low_cabinet": Kind(lambda r, m: cabinet(r, m, "low"), "cabinet", 3),
    "tv_stand": Kind(lambda r, m: cabinet(r, m, "low"), "tv stand", 3),
    "file_cabinet": Kind(lambda r, m: cabinet(r, m, "file"), "file cabinet", 3),
    "refrigerator": Kind(refrigerator, "refrigerator", 24),
    "toilet": Kind(toilet, "toilet", 33),
    "bathtub": Kind(bathtub, "bathtub", 36),
    "trash_can": Kind(trash_can, "trash can", 39),
    "ottoman": Kind(ottoman, "ottoman", 39),
    "coat_rack": Kind(coat_rack, "coat rack", 39),
    "laundry_basket": Kind(laundry_basket, "laundry basket", 39),
    "nightstand": Kind(nightstand, "nightstand", 32),
    "lamp": Kind(lamp, "lamp", 35),
    "floor_lamp": Kind(lambda r, m: lamp(r, m, True), "lamp", 35),
    "tv": Kind(lambda r, m: screen(r, m, True), "tv", 25),
    "monitor": Kind(lambda r, m: screen(r, m, False), "monitor", 40),
    "rug": Kind(rug, "rug", 20),
}
"""Plain registry of free-standing object kinds (wall-mounted items and kitchen runs are built by the layout)."""
