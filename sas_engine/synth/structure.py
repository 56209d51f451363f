"""The room's shell (walls with openings, floor, ceiling) and the items set into or hung on walls.

Wall items are built in the wall-local frame: x along the wall (0 = the item's centre), y into the room (the wall
surface is y = 0), z up from the floor. Doors and windows cut exact rectangular holes into the wall panel; the hole
is lined (reveal), framed, and closed by a recessed door leaf or an emissive window pane, so no ray leaves the room.
"""
from __future__ import annotations

import numpy as np

from .furniture import Mk, curtain_panel
from .layout import Plan
from .primitives import Primitive, box, facing_panel, rod, ycylinder

WALL_THICKNESS = 0.12
"""Depth of door and window reveals behind the wall surface, metres."""


def wall_panels(plan: Plan, holes: dict[int, list[tuple[float, float, float, float]]], material: int
                ) -> list[list[Primitive]]:
    """One panel per wall (inner surface), with ``holes[wall] = [(u0, u1, z0, z1)]`` cut out."""
    out = []
    for wi, w in enumerate(plan.walls):
        d3 = np.array([w.dir[0], w.dir[1], 0.0])
        n3 = np.array([w.normal[0], w.normal[1], 0.0])
        rot = np.stack([-d3, np.array([0.0, 0.0, 1.0]), n3], 1)  # local x = -dir keeps the frame right-handed
        mid = (w.p0 + w.p1) / 2
        L, H = w.length, plan.height
        hl = tuple((L / 2 - u1, L / 2 - u0, z0 - H / 2, z1 - H / 2) for u0, u1, z0, z1 in holes.get(wi, []))
        out.append([Primitive("panel", np.array([mid[0], mid[1], H / 2]), np.array([L, H, 0.0]), rot, material,
                              holes=hl)])
    return out


def floor_and_ceiling(plan: Plan, floor_mat: int, ceil_mat: int) -> tuple[list[Primitive], list[Primitive]]:
    """Floor (normal up) and ceiling (normal down) panels over the bounding box with the L's notch cut out."""
    W, D, H = plan.width, plan.depth, plan.height
    hole = ()
    if plan.notch is not None:
        x0, y0, x1, y1 = plan.notch
        hole = ((x0 - W / 2, x1 - W / 2, y0 - D / 2, y1 - D / 2),)
    floor = Primitive("panel", np.array([W / 2, D / 2, 0.0]), np.array([W, D, 0.0]), np.eye(3), floor_mat,
                      holes=hole)
    flip = np.diag([1.0, -1.0, -1.0])
    hole_c = tuple((a, b, -d, -c) for a, b, c, d in hole)  # local y is mirrored on the ceiling
    ceil = Primitive("panel", np.array([W / 2, D / 2, H]), np.array([W, D, 0.0]), flip, ceil_mat, holes=hole_c)
    return [floor], [ceil]


def _reveal(w: float, z0: float, z1: float, mat: int, bottom: bool) -> list[Primitive]:
    t = WALL_THICKNESS
    out = [box(-w / 2, -w / 2 + 0.01, -t, 0.0, z0, z1, mat), box(w / 2 - 0.01, w / 2, -t, 0.0, z0, z1, mat),
           box(-w / 2, w / 2, -t, 0.0, z1 - 0.01, z1, mat)]
    if bottom:
        out.append(box(-w / 2, w / 2, -t, 0.0, z0, z0 + 0.01, mat))
    return out


def door(rng, mk: Mk, w: float, h: float) -> list[Primitive]:
    """Door in its frame: casing on the wall, lined opening, recessed leaf with a handle."""
    m = mk("white" if rng.random() < 0.55 else "wood2")
    casing = mk("white") if rng.random() < 0.7 else m
    c = float(rng.uniform(0.05, 0.09))
    prims = [box(-w / 2 - c, -w / 2, 0.0, 0.018, 0.0, h + c, casing, skip=("-z",)),
             box(w / 2, w / 2 + c, 0.0, 0.018, 0.0, h + c, casing, skip=("-z",)),
             box(-w / 2 - c, w / 2 + c, 0.0, 0.018, h, h + c, casing)]
    prims += _reveal(w, 0.0, h, casing, bottom=False)
    prims.append(box(-w / 2, w / 2, -WALL_THICKNESS, 0.0, -0.02, 0.0, casing, skip=("-z",)))  # threshold
    prims.append(box(-w / 2 + 0.01, w / 2 - 0.01, -0.07, -0.03, 0.0, h - 0.005, m, skip=("-z",)))
    if rng.random() < 0.5:  # panelled leaf
        for z0, z1 in ((0.25, h * 0.45), (h * 0.52, h - 0.2)):
            prims.append(box(-w / 2 + 0.12, w / 2 - 0.12, -0.03, -0.02, z0, z1, m))
    hm = mk("metal")
    hx = w / 2 - 0.09
    prims += [ycylinder(hx, -0.03, -0.01, 1.0, 0.03, hm),
              box(hx - 0.11, hx + 0.01, 0.03, 0.05, 0.99, 1.01, hm),
              box(hx - 0.01, hx + 0.01, -0.01, 0.05, 0.99, 1.01, hm)]
    return prims


def window(rng, mk: Mk, w: float, z0: float, h: float) -> list[Primitive]:
    """Window: lined opening, frame with optional mullion/transom, sky pane behind, window board below."""
    fm = mk("frame")
    f = float(rng.uniform(0.045, 0.07))
    z1 = z0 + h
    prims = _reveal(w, z0, z1, fm, bottom=True)
    ys = (-0.075, -0.035)
    prims += [box(-w / 2, -w / 2 + f, *ys, z0, z1, fm), box(w / 2 - f, w / 2, *ys, z0, z1, fm),
              box(-w / 2, w / 2, *ys, z0, z0 + f, fm), box(-w / 2, w / 2, *ys, z1 - f, z1, fm)]
    if w > 0.9 or rng.random() < 0.3:
        prims.append(box(-f / 2, f / 2, *ys, z0, z1, fm))
    if rng.random() < 0.35:
        zt = z0 + h * float(rng.uniform(0.6, 0.75))
        prims.append(box(-w / 2, w / 2, *ys, zt - f / 2, zt + f / 2, fm))
    prims.append(facing_panel(0.0, -0.055, (z0 + z1) / 2, w, h, mk("sky")))
    c = float(rng.uniform(0.04, 0.07))  # casing on the wall surface
    prims += [box(-w / 2 - c, -w / 2, 0.0, 0.015, z0, z1 + c, fm), box(w / 2, w / 2 + c, 0.0, 0.015, z0, z1 + c, fm),
              box(-w / 2 - c, w / 2 + c, 0.0, 0.015, z1, z1 + c, fm)]
    prims.append(box(-w / 2 - 0.06, w / 2 + 0.06, -0.02, float(rng.uniform(0.05, 0.1)), z0 - 0.025, z0,
                     mk("white") if rng.random() < 0.6 else fm))
    return prims


def picture(rng, mk: Mk, w: float, zc: float, h: float) -> list[Primitive]:
    """Framed canvas on the wall (a framed rectangle like a window; some canvases are landscapes)."""
    fm = mk("frame")
    f = float(rng.uniform(0.02, 0.06))
    t = float(rng.uniform(0.02, 0.04))
    z0, z1 = zc - h / 2, zc + h / 2
    prims = []
    if rng.random() < 0.85:
        prims += [box(-w / 2, -w / 2 + f, 0.0, t, z0, z1, fm), box(w / 2 - f, w / 2, 0.0, t, z0, z1, fm),
                  box(-w / 2, w / 2, 0.0, t, z0, z0 + f, fm), box(-w / 2, w / 2, 0.0, t, z1 - f, z1, fm)]
        prims.append(box(-w / 2 + f, w / 2 - f, 0.0, t * 0.5, z0 + f, z1 - f, fm))
        prims.append(facing_panel(0.0, t * 0.5 + 0.002, zc, w - 2 * f, h - 2 * f, mk("canvas")))
    else:  # unframed canvas on a stretcher
        cm = mk("canvas")
        prims += [box(-w / 2, w / 2, 0.0, t, z0, z1, fm), facing_panel(0.0, t + 0.002, zc, w, h, cm)]
    return prims


def board(rng, mk: Mk, w: float, zc: float, h: float, key: str) -> list[Primitive]:
    """Whiteboard or mirror: a thin framed plate on the wall."""
    fm = mk("metal")
    plate = mk(key) if key != "whiteboard" else mk("white")
    return [box(-w / 2, w / 2, 0.0, 0.015, zc - h / 2, zc + h / 2, fm),
            facing_panel(0.0, 0.017, zc, w - 0.03, h - 0.03, plate)]


def curtains(rng, mk: Mk, w: float, z_top: float, z_bottom: float, panel_w: float, key: str = "curtain",
             closed: float = 0.0) -> list[Primitive]:
    """Rod over a window of width ``w`` and two folded panels hanging beside it, ``closed`` = fraction of the
    window each panel covers."""
    rm = mk("metal" if rng.random() < 0.5 else "wood2")
    y = float(rng.uniform(0.08, 0.12))
    prims = [rod(-w / 2 - panel_w - 0.08, w / 2 + panel_w + 0.08, y, z_top + 0.03, 0.012, rm)]
    cover = closed * w / 2
    for sx in (-1, 1):
        a, b = w / 2 - cover, w / 2 + panel_w
        xc = sx * (a + b) / 2
        for p in curtain_panel(rng, mk, b - a, z_bottom, z_top, key):
            p.center = p.center + np.array([xc, y, 0.0])
            prims.append(p)
    return prims


def shower_curtain(rng, mk: Mk, length: float, z_top: float, z_bottom: float, frac: float) -> list[Primitive]:
    """Rod along a bathtub's open side (local x) and a folded curtain covering ``frac`` of it, hung at y = 0."""
    rm = mk("metal")
    prims = [rod(-length / 2, length / 2, 0.0, z_top + 0.04, 0.012, rm)]
    cw = max(0.25, length * frac)
    x0 = -length / 2 if rng.random() < 0.5 else length / 2 - cw
    key = "curtain" if rng.random() < 0.5 else "plastic"
    for p in curtain_panel(rng, mk, cw, z_bottom, z_top, key):
        p.center = p.center + np.array([x0 + cw / 2, 0.0, 0.0])
        prims.append(p)
    return prims
