"""Room recipes: which objects a room type holds and how they are arranged.

:func:`make_layout` draws a plan, a palette, doors and windows (cut into the walls), curtains, the furniture of the
room type (against walls, in corners, around tables, in front of or on parents; never intersecting), pictures
and boards on free wall spans, and ceiling lights. The result is a :class:`Layout`: a list of
:class:`SynthObject` (one instance each, world-frame primitives, raw label, NYU40 id) plus the materials and lights.
Everything is deterministic given ``seed``: a layout whose required objects do not fit is redrawn from
``default_rng([seed, attempt])``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import structure as st
from .config import ROOM_TYPES
from .furniture import BUILDERS, Shape, basin, cabinet, counter, cylinder
from .layout import Placement, Placer, Plan, Retry, footprint, make_plan
from .materials import Material
from .palette import Palette
from .primitives import Primitive, yaw_matrix


@dataclass
class SynthObject:
    """One object instance: raw category (ScanNet aggregation style), NYU40 id, world-frame primitives."""

    name: str
    nyu40: int
    prims: list[Primitive]
    kind: str
    front: Optional[tuple[float, float]] = None
    """Unit floor direction the object faces (its front, or the wall normal for wall items); None for floor and
    ceiling."""


def _front(yaw: float) -> tuple[float, float]:
    return (-math.sin(yaw), math.cos(yaw))


@dataclass
class Layout:
    """A generated room before meshing."""

    seed: int
    room_type: str
    plan: Plan
    objects: list[SynthObject]
    materials: list[Material]
    lights: np.ndarray
    """float [L, 4]: x, y, z, relative power."""


class _Room:
    def __init__(self, rng: np.random.Generator, room_type: str):
        self.rng, self.room_type = rng, room_type
        self.plan = make_plan(rng, room_type)
        self.pal = Palette(rng, room_type)
        self.placer = Placer(self.plan, rng)
        self.objects: list[SynthObject] = []
        self.holes: dict[int, list] = {}
        self.windows: list[tuple] = []

    def u(self, lo, hi) -> float:
        return float(self.rng.uniform(lo, hi))

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def shape(self, key: str) -> Shape:
        return BUILDERS[key].build(self.rng, self.pal.maker(self.rng))

    def add(self, key: str, pl: Optional[Placement], required: bool = False, occupy: bool = True,
            name: Optional[str] = None, nyu40: Optional[int] = None) -> Optional[Placement]:
        if pl is None:
            if required:
                raise Retry(key)
            return None
        kind = BUILDERS.get(key)
        self.objects.append(SynthObject(name or kind.raw, nyu40 if nyu40 is not None else kind.nyu40,
                                        pl.world_prims(), key, _front(pl.yaw)))
        if occupy:
            pl.tag = self.placer.occupy(pl.rect, 0.0, pl.z + pl.shape.h)
        return pl

    def add_group(self, parts: list[tuple[str, int, list[Primitive]]], yaw: float, trans) -> None:
        rot = yaw_matrix(yaw)
        for name, nyu, prims in parts:
            self.objects.append(SynthObject(name, nyu, [p.transformed(rot, trans) for p in prims], name, _front(yaw)))

    # -- placement shortcuts ------------------------------------------------------------------------------------
    def wall(self, key: str, required: bool = False, corner: bool = False) -> Optional[Placement]:
        return self.add(key, self.placer.against_wall(self.shape(key), corner=corner), required)

    def free(self, key: str, required: bool = False, margin: float = 0.6) -> Optional[Placement]:
        return self.add(key, self.placer.free(self.shape(key), margin=margin), required)

    def on(self, parent: Placement, key: str, ly: Optional[float] = None) -> Optional[Placement]:
        s = self.shape(key)
        pw, pd = parent.shape.w, parent.shape.d
        if s.w > pw or s.d > pd:
            return None
        lx = self.u(-(pw - s.w) / 2, (pw - s.w) / 2) if key == "lamp" else self.u(-0.1, 0.1) * pw
        ly = ly if ly is not None else self.u(-(pd - s.d) / 2, (pd - s.d) / 2)
        p = parent.to_world(lx, ly)
        pl = Placement(float(p[0]), float(p[1]), parent.yaw, s, footprint(p[0], p[1], parent.yaw, s.w, s.d),
                       z=parent.z + parent.shape.h)
        return self.add(key, pl, occupy=False)

    def around(self, tab: Placement, key: str = "chair", p_seat: float = 0.75) -> int:
        """Chairs along the long sides (and sometimes the ends) of a table, facing it."""
        n = 0
        w, d = tab.shape.w, tab.shape.d
        per_side = max(1, int(w // 0.62))
        seats = [(x, s * d / 2, 0.0 if s < 0 else math.pi) for s in (-1, 1)
                 for x in np.linspace(-w / 2, w / 2, per_side + 2)[1:-1]]
        if w > 1.3:
            seats += [(s * w / 2, 0.0, s * math.pi / 2) for s in (-1, 1)]
        for lx, ly, dyaw in seats:
            if not self.chance(p_seat):
                continue
            s = self.shape(key)
            off = s.d / 2 - 0.12
            ox, oy = (math.copysign(off, lx) if ly == 0 else 0.0), (math.copysign(off, ly) if ly else 0.0)
            pl = self.placer.relative(tab, s, lx + ox, ly + oy, dyaw, ignore={tab.tag}, jitter_yaw=0.12)
            n += self.add(key, pl) is not None
        return n

    # -- wall items ---------------------------------------------------------------------------------------------
    def _wall_item(self, wi, u, prims, name, nyu, dist=0.0):
        rot, t = self.placer.wall_frame(wi, u, dist)
        n = self.plan.walls[wi].normal
        self.objects.append(SynthObject(name, nyu, [p.transformed(rot, t) for p in prims], name,
                                        (float(n[0]), float(n[1]))))

    def door(self) -> None:
        H = self.plan.height
        w, h = self.u(0.8, 0.95), self.u(1.98, min(2.12, H - 0.25))
        slot = self.placer.wall_slot(w + 0.2, 0.0, h + 0.1, end_margin=0.12)
        if slot is None:
            raise Retry("door")
        wi, u = slot
        wall = self.plan.walls[wi]
        self._wall_item(wi, u, st.door(self.rng, self.pal.maker(self.rng), w, h), "door", 8)
        self.holes.setdefault(wi, []).append((u - w / 2, u + w / 2, 0.0, h))
        a, b = wall.point(u - w / 2 - 0.12, 0.0), wall.point(u + w / 2 + 0.12, 0.95)
        rect = (min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1]))
        self.placer.occupy(rect, 0.0, h + 0.1, wall_span=(wi, u - w / 2 - 0.1, u + w / 2 + 0.1, 0.0, h + 0.1))

    def window(self, required: bool = False) -> Optional[tuple]:
        H = self.plan.height
        small = self.room_type == "bathroom"
        sill = self.u(1.3, 1.5) if small else self.u(1.0, 1.15) if self.room_type == "kitchen" else self.u(0.75, 1.0)
        w = self.u(0.5, 0.8) if small else self.u(0.7, 1.8)
        h = min(self.u(0.9, 1.5), H - 0.3 - sill) if not small else min(self.u(0.5, 0.8), H - 0.3 - sill)
        slot = self.placer.wall_slot(w + 0.15, sill - 0.05, sill + h + 0.1)
        if slot is None:
            if required:
                raise Retry("window")
            return None
        wi, u = slot
        self._wall_item(wi, u, st.window(self.rng, self.pal.maker(self.rng), w, sill, h), "window", 9)
        self.holes.setdefault(wi, []).append((u - w / 2, u + w / 2, sill, sill + h))
        self.placer.occupy(wall_span=(wi, u - w / 2 - 0.08, u + w / 2 + 0.08, sill - 0.05, sill + h + 0.1))
        win = (wi, u, w, sill, h)
        self.windows.append(win)
        return win

    def curtains(self, win: tuple, required: bool = False) -> bool:
        wi, u, w, sill, h = win
        H = self.plan.height
        pw = self.u(0.3, 0.6)
        top = min(H - 0.05, sill + h + self.u(0.1, 0.25))
        long = self.chance(0.7)
        bottom = 0.02 if long else max(0.3, sill - 0.12)
        span = (u - w / 2 - pw - 0.1, u + w / 2 + pw + 0.1)
        sides = [(span[0], u - w / 2 - 0.11), (u + w / 2 + 0.11, span[1])]
        if not all(self.placer.span_free(wi, a, b, bottom, top, 0.02) for a, b in sides):
            if required:
                raise Retry("curtain")
            return False
        wall = self.plan.walls[wi]
        if long:
            a, b = wall.point(span[0], 0.0), wall.point(span[1], 0.2)
            rect = (min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1]))
            if not self.placer.floor_free(rect, margin=0.0):
                if required:
                    raise Retry("curtain")
                return False
            self.placer.occupy(rect, 0.0, top)
        self.placer.occupy(wall_span=(wi, span[0], span[1], bottom, top))
        prims = st.curtains(self.rng, self.pal.maker(self.rng), w + 0.1, top, bottom, pw, closed=self.u(0.0, 0.35))
        self._wall_item(wi, u, prims, "curtain", 16)
        return True

    def pictures(self, n: int, above: Optional[list[Placement]] = None) -> None:
        H = self.plan.height
        above = list(above or [])
        for i in range(n):
            w, h = self.u(0.35, 1.0), self.u(0.3, 0.8)
            zc = self.u(1.35, 1.7)
            slot = None
            if i < len(above) and above[i] is not None and above[i].wall is not None:
                par = above[i]
                wall = self.plan.walls[par.wall]
                u = float((np.array([par.x, par.y]) - wall.p0) @ wall.dir)
                zc = max(zc, par.shape.h + 0.2 + h / 2)
                if self.placer.span_free(par.wall, u - w / 2, u + w / 2, zc - h / 2, zc + h / 2, 0.05):
                    slot = (par.wall, u)
            if zc + h / 2 > H - 0.15:
                continue
            slot = slot or self.placer.wall_slot(w, zc - h / 2, zc + h / 2)
            if slot is None:
                continue
            wi, u = slot
            self.placer.occupy(wall_span=(wi, u - w / 2, u + w / 2, zc - h / 2, zc + h / 2))
            self._wall_item(wi, u, st.picture(self.rng, self.pal.maker(self.rng), w, zc, h), "picture", 11)

    def board(self, key: str, w: float, h: float, zc: float, slot=None) -> bool:
        slot = slot or self.placer.wall_slot(w, zc - h / 2, zc + h / 2)
        if slot is None or not self.placer.span_free(slot[0], slot[1] - w / 2, slot[1] + w / 2, zc - h / 2,
                                                     zc + h / 2, 0.02):
            return False
        wi, u = slot
        self.placer.occupy(wall_span=(wi, u - w / 2, u + w / 2, zc - h / 2, zc + h / 2))
        nyu = {"whiteboard": 30, "mirror": 19}[key]
        self._wall_item(wi, u, st.board(self.rng, self.pal.maker(self.rng), w, zc, h, key), key, nyu)
        return True

    # -- groups -------------------------------------------------------------------------------------------------
    def kitchen_run(self, length=(1.6, 3.2), required: bool = True) -> Optional[Placement]:
        """Lower cabinets + counter top with a sink + upper cabinets where the wall is free."""
        d, z = 0.62, self.u(0.88, 0.92)
        pl = None
        for _ in range(4):
            L = self.u(*length)
            pl = self.placer.against_wall(Shape([], L, d, z), corner=self.chance(0.7), tries=30)
            if pl is not None:
                break
        if pl is None:
            if required:
                raise Retry("counter")
            return None
        L, rng = pl.shape.w, self.rng
        mk = self.pal.maker(rng)
        parts = []
        cuts = [-L / 2, L / 2] if L < 1.9 else [-L / 2, self.u(-0.3, 0.3) * L, L / 2]
        cab_top = 0.0
        for a, b in zip(cuts[:-1], cuts[1:]):
            cab = cabinet(rng, mk, "kitchen", width=b - a - 0.004)
            cab_top = max(cab_top, cab.h)
            off = np.array([(a + b) / 2, -d / 2 + cab.d / 2, 0.0])
            parts.append(("kitchen cabinet", 3, [p.transformed(np.eye(3), off) for p in cab.prims]))
        sw, sd = self.u(0.45, 0.7), self.u(0.36, 0.42)
        sx = self.u(-L / 2 + sw / 2 + 0.15, L / 2 - sw / 2 - 0.15)
        sy = 0.02
        top = counter(rng, mk, L, d, z, sink=(sx - sw / 2, sx + sw / 2, sy - sd / 2, sy + sd / 2),
                      thickness=z - cab_top)
        parts.append(("kitchen counter", 12, top.prims))
        sink = basin(rng, self.pal.maker(rng), sw, sd, z)
        parts.append(("sink", 34, [p.transformed(np.eye(3), np.array([sx, sy, 0.0])) for p in sink.prims]))
        pl.tag = self.placer.occupy(pl.rect, 0.0, z + 0.25)
        # upper cabinets on the same wall where no window is in the way
        wall = self.plan.walls[pl.wall]
        u_mid = float((np.array([pl.x, pl.y]) - wall.p0) @ wall.dir)
        for a, b in ([(-L / 2, L / 2)] if self.chance(0.5) else [(-L / 2, 0.0), (0.0, L / 2)]):
            if b - a < 0.5 or not self.chance(0.8):
                continue
            z0 = self.u(1.42, 1.5)
            up = cabinet(rng, mk, "upper", width=b - a - 0.004)
            if z0 + up.h > self.plan.height - 0.05:
                continue
            if not self.placer.span_free(pl.wall, u_mid - b, u_mid - a, z0, z0 + up.h, 0.02):
                continue
            self.placer.occupy(wall_span=(pl.wall, u_mid - b, u_mid - a, z0, z0 + up.h))
            off = np.array([(a + b) / 2, -d / 2 + up.d / 2, z0])
            parts.append(("kitchen cabinet", 3, [p.transformed(np.eye(3), off) for p in up.prims]))
        self.add_group(parts, pl.yaw, np.array([pl.x, pl.y, 0.0]))
        return pl

    def vanity(self) -> Placement:
        """Bathroom sink: a vanity (cabinet + counter top + basin) or a pedestal sink; a mirror above it."""
        rng, mk = self.rng, self.pal.maker(self.rng)
        if self.chance(0.75):
            cab = cabinet(rng, mk, "vanity")
            w, d, z = cab.w, cab.d + 0.04, cab.h + 0.03
            pl = self.placer.against_wall(Shape([], w + 0.02, d, z))
            if pl is None:
                raise Retry("vanity")
            sw, sd = min(w - 0.15, self.u(0.4, 0.55)), self.u(0.3, 0.36)
            parts = [("bathroom vanity", 3, [p.transformed(np.eye(3), np.array([0, -d / 2 + cab.d / 2, 0]))
                                              for p in cab.prims]),
                     ("bathroom counter", 12, counter(rng, mk, w + 0.02, d, z, sink=(-sw / 2, sw / 2, -sd / 2 + 0.02,
                                                                                    sd / 2 + 0.02), thickness=0.03).prims),
                     ("sink", 34, [p.transformed(np.eye(3), np.array([0, 0.02, 0]))
                                   for p in basin(rng, self.pal.maker(rng), sw, sd, z, depth=0.13).prims])]
            pl.tag = self.placer.occupy(pl.rect, 0.0, z + 0.25)
            self.add_group(parts, pl.yaw, np.array([pl.x, pl.y, 0.0]))
        else:
            s = basin(rng, mk, self.u(0.45, 0.55), self.u(0.35, 0.42), self.u(0.8, 0.86), pedestal=True)
            s.prims = [p.transformed(np.eye(3), np.array([0, 0.06, 0])) for p in s.prims]
            pl = self.placer.against_wall(s)
            if pl is None:
                raise Retry("sink")
            pl.tag = self.placer.occupy(pl.rect, 0.0, s.h)
            self.objects.append(SynthObject("sink", 34, pl.world_prims(), "sink", _front(pl.yaw)))
        wall = self.plan.walls[pl.wall]
        u = float((np.array([pl.x, pl.y]) - wall.p0) @ wall.dir)
        if self.chance(0.8):
            self.board("mirror", min(pl.shape.w, self.u(0.5, 0.9)), self.u(0.6, 0.8), self.u(1.55, 1.65), (pl.wall, u))
        return pl

    def bathtub(self) -> None:
        s = self.shape("bathtub")
        pl = self.add("bathtub", self.placer.against_wall(s, corner=True), required=True)
        prims = st.shower_curtain(self.rng, self.pal.maker(self.rng), s.w - 0.04, min(1.95, self.plan.height - 0.3),
                                  s.h - 0.15, self.u(0.3, 0.8))
        rot, t = yaw_matrix(pl.yaw), np.array([pl.x, pl.y, 0.0])
        off = np.array([0.0, s.d / 2 - 0.04, 0.0])
        self.objects.append(SynthObject("shower curtain", 28, [p.transformed(rot, rot @ off + t) for p in prims],
                                        "shower_curtain", _front(pl.yaw)))

    def lights(self) -> np.ndarray:
        area = self.plan.area()
        n = 1 if area < 10 else 2 if area < 24 else 3
        out = []
        for k in range(n):
            for _ in range(100):
                x, y = self.u(0.8, self.plan.width - 0.8), self.u(0.8, self.plan.depth - 0.8)
                if self.plan.contains_point((x, y), 0.6) and all(math.hypot(x - a, y - b) > 1.2 for a, b, *_ in out):
                    break
            H = self.plan.height
            out.append((x, y, H - 0.18, 1.0))
            m = self.pal.maker(self.rng)
            r = self.u(0.12, 0.22)
            self.objects.append(SynthObject("ceiling lamp", 35, [cylinder(x, y, H - 0.07, H - 0.002, r,
                                                                          m("bedding"), skip=("+z",))], "lamp"))
        return np.array(out, dtype=np.float64)

    def finish(self, seed: int) -> Layout:
        lights = self.lights()
        mk = self.pal.maker(self.rng, jitter_amount=0.02)
        fl, ce = st.floor_and_ceiling(self.plan, mk("floor"), mk("ceiling"))
        shell = [SynthObject("floor", 2, fl, "floor"), SynthObject("ceiling", 22, ce, "ceiling")]
        wall_mat = mk("wall")
        for w, prims in zip(self.plan.walls, st.wall_panels(self.plan, self.holes, wall_mat)):
            shell.append(SynthObject("wall", 1, prims, "wall", (float(w.normal[0]), float(w.normal[1]))))
        return Layout(seed, self.room_type, self.plan, shell + self.objects, self.pal.materials, lights)


# -- recipes ---------------------------------------------------------------------------------------------------
def _openings(r: _Room, n_windows: tuple[int, int], p_curtain: float, need_curtain: bool = False) -> None:
    r.door()
    n = int(r.rng.integers(n_windows[0], n_windows[1] + 1))
    got_curtain = False
    for i in range(n):
        win = r.window(required=(i == 0 and n_windows[0] > 0))
        if win is not None and (r.chance(p_curtain) or (need_curtain and not got_curtain)):
            got_curtain |= r.curtains(win, required=need_curtain and not got_curtain)


def _bedroom(r: _Room) -> None:
    _openings(r, (1, 2), 0.8, need_curtain=True)
    bed = r.wall("bed", required=True)
    for side in (-1, 1):
        if r.chance(0.75):
            s = r.shape("nightstand")
            ns = r.add("nightstand", r.placer.relative(bed, s, side * (bed.shape.w / 2 + s.w / 2 + 0.05),
                                                       -bed.shape.d / 2 + s.d / 2, 0.0))
            if ns is not None and r.chance(0.7):
                r.on(ns, "lamp")
    if r.wall("wardrobe") is None:
        r.wall("low_cabinet", required=True)
    if r.chance(0.5):
        dk = r.wall("desk")
        if dk is not None:
            _desk_chair(r, dk, "chair")
    if r.chance(0.3):
        r.wall("bookshelf")
    if r.chance(0.3):
        r.free("armchair")
    if r.chance(0.6):
        r.wall("laundry_basket" if r.chance(0.5) else "trash_can")
    r.pictures(int(r.rng.integers(1, 4)), above=[bed])


def _desk_chair(r: _Room, dk: Placement, key: str) -> None:
    s = r.shape(key)
    r.add(key, r.placer.relative(dk, s, r.u(-0.15, 0.15) * dk.shape.w, dk.shape.d / 2 + s.d / 2 - 0.18, math.pi,
                                 ignore={dk.tag}, jitter_yaw=0.25))
    if r.chance(0.7):
        r.on(dk, "monitor", ly=-dk.shape.d / 2 + 0.2)


def _living_room(r: _Room) -> None:
    _openings(r, (1, 2), 0.8)
    sofa = r.wall("sofa", required=True)
    s = r.shape("coffee_table")
    ct = r.add("coffee_table", r.placer.relative(sofa, s, 0.0, sofa.shape.d / 2 + r.u(0.35, 0.5) + s.d / 2, 0.0))
    if ct is None:
        ct = r.free("coffee_table", required=True)
    for side in (-1, 1):
        if r.chance(0.55):
            a = r.shape("armchair")
            r.add("armchair", r.placer.relative(ct, a, side * (ct.shape.w / 2 + 0.4 + a.d / 2), 0.0,
                                                side * math.pi / 2, jitter_yaw=0.15))
    tvs = r.wall("tv_stand")
    if tvs is not None and r.chance(0.8):
        r.on(tvs, "tv", ly=-tvs.shape.d / 2 + 0.12)
    r.wall("bookshelf", required=r.chance(0.7))
    if r.chance(0.4):
        r.wall("bookshelf")
    r.free("ottoman", required=False) if r.chance(0.6) else r.wall("trash_can")
    if r.chance(0.5):
        r.wall("floor_lamp")
    if r.plan.area() > 22 and r.chance(0.5):
        t = r.free("table", margin=0.9)
        if t is not None:
            r.around(t)
    r.pictures(int(r.rng.integers(1, 4)), above=[sofa, tvs])


def _office(r: _Room) -> None:
    _openings(r, (1, 2), 0.35)
    n = int(r.rng.integers(1, 4))
    for i in range(n):
        dk = r.wall("desk", required=(i == 0))
        if dk is not None:
            _desk_chair(r, dk, "office_chair" if r.chance(0.8) else "chair")
    r.wall("bookshelf", required=r.chance(0.7))
    for _ in range(int(r.rng.integers(1, 3))):
        r.wall("file_cabinet")
    if r.plan.area() > 17 and r.chance(0.6):
        t = r.free("meeting_table", margin=0.9)
        if t is not None:
            r.around(t, "office_chair" if r.chance(0.5) else "chair")
    elif r.chance(0.4):
        r.wall("table")
    r.wall("trash_can", required=True)
    if r.chance(0.4):
        r.wall("coat_rack", corner=True)
    if r.chance(0.4):
        r.board("whiteboard", r.u(1.2, 1.8), r.u(0.9, 1.2), r.u(1.45, 1.6))
    r.pictures(int(r.rng.integers(0, 3)))


def _kitchen(r: _Room) -> None:
    _openings(r, (1, 1), 0.3)
    r.kitchen_run()
    r.wall("refrigerator", required=True)
    t = r.free("table", required=True, margin=0.7)
    if r.around(t, p_seat=0.7) == 0:
        r.around(t, p_seat=1.0)
    if r.chance(0.8):
        r.wall("trash_can")
    if r.chance(0.3):
        r.wall("low_cabinet")
    r.pictures(int(r.rng.integers(0, 2)))


def _bathroom(r: _Room) -> None:
    _openings(r, (0, 1), 0.25)
    r.bathtub()
    r.wall("toilet", required=True)
    r.vanity()
    if r.chance(0.6):
        r.wall("trash_can" if r.chance(0.6) else "laundry_basket")
    if r.chance(0.3):
        r.wall("low_cabinet")
    r.pictures(int(r.rng.integers(0, 2)))


def _mixed(r: _Room) -> None:
    _openings(r, (2, 3), 0.6)
    bed = r.wall("bed", required=True)
    s = r.shape("nightstand")
    r.add("nightstand", r.placer.relative(bed, s, bed.shape.w / 2 + s.w / 2 + 0.05, -bed.shape.d / 2 + s.d / 2, 0.0))
    sofa = r.wall("sofa", required=True)
    s = r.shape("coffee_table")
    r.add("coffee_table", r.placer.relative(sofa, s, 0.0, sofa.shape.d / 2 + 0.4 + s.d / 2, 0.0))
    r.kitchen_run(length=(1.4, 2.2), required=r.chance(0.7))
    r.wall("refrigerator")
    dk = r.wall("desk")
    if dk is not None:
        _desk_chair(r, dk, "office_chair" if r.chance(0.5) else "chair")
    r.wall("bookshelf")
    if r.chance(0.5):
        t = r.free("table", margin=0.9)
        if t is not None:
            r.around(t, p_seat=0.6)
    if r.chance(0.5):
        r.wall("wardrobe")
    r.wall(["trash_can", "ottoman", "coat_rack"][int(r.rng.integers(3))])
    r.pictures(int(r.rng.integers(2, 4)), above=[bed, sofa])


RECIPES = {"bedroom": _bedroom, "living_room": _living_room, "office": _office, "kitchen": _kitchen,
           "bathroom": _bathroom, "mixed": _mixed}
"""Plain registry: room type -> recipe filling a room."""


def room_type_for_seed(seed: int) -> str:
    """The room type a seed draws when none is given."""
    return ROOM_TYPES[int(np.random.default_rng([seed, 7919]).integers(len(ROOM_TYPES)))]


def make_layout(seed: int, room_type: Optional[str] = None, max_attempts: int = 40) -> Layout:
    """Generate the objects of one room, deterministic by ``seed`` (and ``room_type``, drawn from the seed if None)."""
    room_type = room_type or room_type_for_seed(seed)
    if room_type not in RECIPES:
        from ..errors import SASInputError

        raise SASInputError(None, f"unknown room type {room_type!r}; known: {', '.join(RECIPES)}")
    for attempt in range(max_attempts):
        r = _Room(np.random.default_rng([seed, attempt]), room_type)
        try:
            RECIPES[room_type](r)
        except Retry:
            continue
        return r.finish(seed)
    raise RuntimeError(f"could not lay out a {room_type} for seed {seed} in {max_attempts} attempts")
