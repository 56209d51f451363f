"""Room plans and non-intersecting placement.

A :class:`Plan` is a rectangle or an L (the bounding box minus a corner notch), walls listed counter-clockwise with
inward normals. The :class:`Placer` keeps the floor footprints (axis-aligned rectangles, the objects stand at
multiples of 90 degrees) and the occupied spans along each wall (``u`` along the wall, ``z`` height), and places
objects by rejection sampling: against a wall, in a corner, free in the room, or relative to a parent object.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .furniture import Shape
from .primitives import Primitive, yaw_matrix


class Retry(Exception):
    """A required object could not be placed; the layout is redrawn with the next attempt's generator."""


@dataclass
class Wall:
    """A straight wall from ``p0`` to ``p1`` (metres, floor plane); ``normal`` points into the room."""

    p0: np.ndarray
    p1: np.ndarray

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.p1 - self.p0))

    @property
    def dir(self) -> np.ndarray:
        return (self.p1 - self.p0) / self.length

    @property
    def normal(self) -> np.ndarray:
        d = self.dir
        return np.array([-d[1], d[0]])

    @property
    def yaw(self) -> float:
        """Yaw that turns an object's local +y (its front) to face into the room."""
        n = self.normal
        return math.atan2(-n[0], n[1])

    def point(self, u: float, dist: float = 0.0) -> np.ndarray:
        """Floor point ``u`` metres along the wall and ``dist`` metres into the room."""
        return self.p0 + self.dir * u + self.normal * dist


@dataclass
class Plan:
    """Rectangular or L-shaped room: bounding box [0, W] x [0, D], optional notch rectangle, ceiling height."""

    width: float
    depth: float
    height: float
    notch: Optional[tuple[float, float, float, float]] = None
    walls: list[Wall] = field(default_factory=list)

    @property
    def polygon(self) -> np.ndarray:
        """float [V, 2] corners, counter-clockwise."""
        return np.array([w.p0 for w in self.walls])

    def contains_rect(self, r, margin: float = 0.0) -> bool:
        x0, y0, x1, y1 = r
        if x0 < margin or y0 < margin or x1 > self.width - margin or y1 > self.depth - margin:
            return False
        return self.notch is None or not _overlap(r, self.notch, margin)

    def contains_point(self, p, margin: float = 0.0) -> bool:
        return self.contains_rect((p[0], p[1], p[0], p[1]), margin)

    def area(self) -> float:
        a = self.width * self.depth
        if self.notch is not None:
            a -= (self.notch[2] - self.notch[0]) * (self.notch[3] - self.notch[1])
        return a


def make_plan(rng: np.random.Generator, room_type: str) -> Plan:
    """Draw a plan: sizes per room type, L-shaped with a room-type dependent probability."""
    sizes = {"bedroom": ((3.2, 4.6), (3.4, 4.8)), "living_room": ((4.2, 6.0), (3.8, 5.4)),
             "office": ((3.6, 5.6), (3.4, 5.0)), "kitchen": ((3.0, 4.4), (3.0, 4.2)),
             "bathroom": ((2.3, 3.0), (2.4, 3.2)), "mixed": ((5.2, 6.8), (4.6, 6.0))}[room_type]
    w, d = float(rng.uniform(*sizes[0])), float(rng.uniform(*sizes[1]))
    h = float(rng.uniform(2.5, 2.85))
    p_l = {"bathroom": 0.0, "kitchen": 0.15, "mixed": 0.6}.get(room_type, 0.25)
    pts = [(0, 0), (w, 0), (w, d), (0, d)]
    notch = None
    if rng.random() < p_l:
        a, b = w * float(rng.uniform(0.25, 0.4)), d * float(rng.uniform(0.25, 0.4))
        pts = [(0, 0), (w, 0), (w, d - b), (w - a, d - b), (w - a, d), (0, d)]
        k = int(rng.integers(4))  # rotate the L by k * 90 degrees about the origin, then shift into the quadrant
        for _ in range(k):
            pts = [(-y, x) for x, y in pts]
        arr = np.array(pts, float)
        arr -= arr.min(0)
        pts = [tuple(p) for p in arr]
        w, d = float(arr[:, 0].max()), float(arr[:, 1].max())
        # the notch is the bounding-box cell not covered by the polygon
        xs, ys = sorted(set(np.round(arr[:, 0], 9))), sorted(set(np.round(arr[:, 1], 9)))
        for cx0, cx1 in zip(xs[:-1], xs[1:]):
            for cy0, cy1 in zip(ys[:-1], ys[1:]):
                c = ((cx0 + cx1) / 2, (cy0 + cy1) / 2)
                if not _point_in_poly(c, arr):
                    notch = (cx0, cy0, cx1, cy1)
    arr = np.array(pts, float)
    walls = [Wall(arr[i].copy(), arr[(i + 1) % len(arr)].copy()) for i in range(len(arr))]
    return Plan(w, d, h, notch, walls)


def _point_in_poly(p, poly) -> bool:
    x, y = p
    inside = False
    n = len(poly)
    for i in range(n):
        (x0, y0), (x1, y1) = poly[i], poly[(i + 1) % n]
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def _overlap(a, b, margin: float = 0.0) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


@dataclass
class Placement:
    """Where an object stands: floor position of its local origin, yaw, lift, footprint rectangle, wall index."""

    x: float
    y: float
    yaw: float
    shape: Shape
    rect: tuple
    z: float = 0.0
    wall: Optional[int] = None
    tag: int = -1
    """Owner tag of its floor rectangle in the :class:`Placer` (-1: not registered)."""

    def world_prims(self) -> list[Primitive]:
        rot = yaw_matrix(self.yaw)
        t = np.array([self.x, self.y, self.z])
        return [p.transformed(rot, t) for p in self.shape.prims]

    def to_world(self, lx: float, ly: float) -> np.ndarray:
        return yaw_matrix(self.yaw)[:2, :2] @ np.array([lx, ly]) + np.array([self.x, self.y])


def footprint(x, y, yaw, w, d) -> tuple:
    """Axis-aligned bounding rectangle of a w x d footprint centred at (x, y) turned by ``yaw``."""
    c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
    hw, hd = (w * c + d * s) / 2, (w * s + d * c) / 2
    return (x - hw, y - hd, x + hw, y + hd)


class Placer:
    """Occupancy of the floor and the walls, and the placement strategies."""

    NEAR_WALL = 0.15

    def __init__(self, plan: Plan, rng: np.random.Generator):
        self.plan, self.rng = plan, rng
        self.rects: list[tuple[tuple, int]] = []  # (rect, owner tag)
        self.spans: list[list[tuple[float, float, float, float]]] = [[] for _ in plan.walls]
        self._tag = 0

    # -- occupancy --------------------------------------------------------------------------------------------
    def _wall_projection(self, wi: int, rect) -> Optional[tuple[float, float]]:
        """(u0, u1) of ``rect`` along wall ``wi`` when the rect lies within NEAR_WALL of it, else None."""
        w = self.plan.walls[wi]
        cs = np.array([[rect[0], rect[1]], [rect[2], rect[1]], [rect[0], rect[3]], [rect[2], rect[3]]])
        rel = cs - w.p0
        dist = rel @ w.normal
        if dist.min() > self.NEAR_WALL or dist.max() < -0.01:
            return None
        u = rel @ w.dir
        u0, u1 = max(float(u.min()), 0.0), min(float(u.max()), w.length)
        return (u0, u1) if u1 > u0 else None

    def floor_free(self, rect, ignore=(), margin: float = 0.04) -> bool:
        if not self.plan.contains_rect(rect, 0.01):
            return False
        return not any(_overlap(rect, r, margin) for r, tag in self.rects if tag not in ignore)

    def walls_free(self, rect, z0: float, z1: float, margin: float = 0.05) -> bool:
        for wi in range(len(self.plan.walls)):
            uu = self._wall_projection(wi, rect)
            if uu is not None and not self.span_free(wi, uu[0], uu[1], z0, z1, margin):
                return False
        return True

    def span_free(self, wi: int, u0: float, u1: float, z0: float, z1: float, margin: float = 0.05) -> bool:
        if u0 < 0 or u1 > self.plan.walls[wi].length:
            return False
        return not any(u0 < b + margin and a < u1 + margin and z0 < d and c < z1 for a, b, c, d in self.spans[wi])

    def occupy(self, rect=None, z0: float = 0.0, z1: float = 0.0, wall_span=None) -> int:
        """Register a floor rect (also projected on nearby walls over z0..z1) and/or ``wall_span = (wi, u0, u1,
        z0, z1)``; returns the owner tag."""
        self._tag += 1
        if rect is not None:
            self.rects.append((rect, self._tag))
            for wi in range(len(self.plan.walls)):
                uu = self._wall_projection(wi, rect)
                if uu is not None:
                    self.spans[wi].append((uu[0], uu[1], z0, z1))
        if wall_span is not None:
            wi, u0, u1, a, b = wall_span
            self.spans[wi].append((u0, u1, a, b))
        return self._tag

    # -- strategies -------------------------------------------------------------------------------------------
    def against_wall(self, shape: Shape, tries: int = 60, corner: bool = False, walls=None, gap: float = 0.02,
                     check_walls: bool = True) -> Optional[Placement]:
        """Back against a random wall (optionally pushed into a corner of it)."""
        cand = [i for i in (walls if walls is not None else range(len(self.plan.walls)))
                if self.plan.walls[i].length > shape.w + 0.1]
        if not cand:
            return None
        for _ in range(tries):
            wi = cand[int(self.rng.integers(len(cand)))]
            wall = self.plan.walls[wi]
            lo, hi = shape.w / 2 + 0.01, wall.length - shape.w / 2 - 0.01
            u = (lo if self.rng.random() < 0.5 else hi) if corner else float(self.rng.uniform(lo, hi))
            p = wall.point(u, shape.d / 2 + gap)
            rect = footprint(p[0], p[1], wall.yaw, shape.w, shape.d)
            if self.floor_free(rect) and (not check_walls or self.walls_free(rect, 0.0, shape.h)):
                return Placement(float(p[0]), float(p[1]), wall.yaw, shape, rect, wall=wi)
        return None

    def free(self, shape: Shape, tries: int = 80, margin: float = 0.6, yaw: Optional[float] = None,
             ignore=()) -> Optional[Placement]:
        """Anywhere in the room, at least ``margin`` from the walls."""
        for _ in range(tries):
            x = float(self.rng.uniform(margin, self.plan.width - margin))
            y = float(self.rng.uniform(margin, self.plan.depth - margin))
            a = yaw if yaw is not None else float(self.rng.integers(4)) * math.pi / 2
            rect = footprint(x, y, a, shape.w, shape.d)
            if self.plan.contains_rect(rect, margin * 0.8) and self.floor_free(rect, ignore):
                return Placement(x, y, a, shape, rect)
        return None

    def relative(self, parent: Placement, shape: Shape, lx: float, ly: float, dyaw: float, ignore=(),
                 jitter_yaw: float = 0.0) -> Optional[Placement]:
        """At local offset (lx, ly) of ``parent``'s frame, turned by ``dyaw`` relative to it."""
        p = parent.to_world(lx, ly)
        yaw = parent.yaw + dyaw + (float(self.rng.normal(0, jitter_yaw)) if jitter_yaw else 0.0)
        rect = footprint(p[0], p[1], yaw, shape.w, shape.d)
        if self.floor_free(rect, ignore, margin=0.02) and self.walls_free(rect, 0.0, shape.h):
            return Placement(float(p[0]), float(p[1]), yaw, shape, rect)
        return None

    def wall_slot(self, width: float, z0: float, z1: float, tries: int = 60, walls=None,
                  end_margin: float = 0.2) -> Optional[tuple[int, float]]:
        """A free (wall, centre u) for a wall item of ``width`` occupying heights z0..z1."""
        cand = [i for i in (walls if walls is not None else range(len(self.plan.walls)))
                if self.plan.walls[i].length > width + 2 * end_margin]
        if not cand:
            return None
        for _ in range(tries):
            wi = cand[int(self.rng.integers(len(cand)))]
            u = float(self.rng.uniform(width / 2 + end_margin, self.plan.walls[wi].length - width / 2 - end_margin))
            if self.span_free(wi, u - width / 2, u + width / 2, z0, z1, 0.1):
                return wi, u
        return None

    def wall_frame(self, wi: int, u: float, dist: float = 0.0, z: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(rotation, translation) of the wall-local frame at ``u``: x along the wall, y into the room, z up."""
        wall = self.plan.walls[wi]
        p = wall.point(u, dist)
        return yaw_matrix(wall.yaw), np.array([p[0], p[1], z])
