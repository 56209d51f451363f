"""Single-object renders with exact masks: the annotation-free image source for capability construction.

:func:`render_object_views` draws, for one vocabulary class, ``m`` images of an instance of that class from a
generated room: either alone on a plain background (``context="plain"``) or inside its furnished room
(``context="cluttered"``, other objects may occlude it). The mask is the rendered instance image of that object,
so it is exact (occlusions included). Structural classes (wall, floor, ceiling) are always shown in their room.
Rooms are meshed coarsely (textures are evaluated per pixel, so images keep their detail) and reused for a few
views each.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..errors import SASInputError
from ..labels import NYU40
from .config import SynthConfig, intrinsics_matrix
from .render import Renderer, look_at_target, object_boxes
from .room import SynthRoom, build_mesh, scene_id_for
from .rooms import Layout, make_layout
from .splits import CAPABILITY_SEED_BASE

_ALIASES = {"otherfurniture": 39, "other furniture": 39, "other": 39, "fridge": 24, "couch": 6, "shelf": 10,
            "bookcase": 10, "tub": 36, "painting": 11, "nightstand": 32}
_ROOMS = {4: ("bedroom", "mixed"), 6: ("living_room", "mixed"), 7: ("kitchen", "living_room", "office"),
          10: ("living_room", "office", "mixed"), 12: ("kitchen", "bathroom"), 14: ("office", "bedroom", "mixed"),
          16: ("bedroom", "living_room", "mixed"), 24: ("kitchen", "mixed"), 28: ("bathroom",), 33: ("bathroom",),
          34: ("kitchen", "bathroom"), 36: ("bathroom",), 5: ("office", "kitchen", "living_room"),
          39: ("office", "bathroom", "kitchen", "living_room"), 30: ("office",), 19: ("bathroom",),
          32: ("bedroom",), 25: ("living_room",), 20: ("living_room",)}
_ANY = ("bedroom", "living_room", "office", "kitchen", "bathroom", "mixed")
_STRUCTURE = {1, 2, 22}
_WALL_ITEMS = {8, 9, 11, 16, 19, 30}
VIEWS_PER_ROOM = 2
"""Views drawn from one generated room before the next is generated."""


def class_nyu40(class_name: str) -> int:
    """NYU40 id of a vocabulary class name (ScanNet/NYU40 names and a few aliases); unknown names raise."""
    key = class_name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    if key in NYU40:
        nyu = NYU40.index(key) + 1
        if nyu in _ROOMS or nyu in _STRUCTURE or nyu in _WALL_ITEMS or nyu in (3, 35):
            return nyu
    known = sorted(set(NYU40[i - 1] for i in list(_ROOMS) + list(_STRUCTURE) + list(_WALL_ITEMS) + [3, 35])
                   | set(_ALIASES))
    raise SASInputError(None, f"the synthetic world has no objects of class {class_name!r}; known: {', '.join(known)}")


def _bounds(prims) -> tuple[np.ndarray, np.ndarray]:
    c = np.concatenate([p.corners() for p in prims])
    return c.min(0), c.max(0)


def _camera(rng, obj, room: SynthRoom, nyu: int, context: str, K, size) -> Optional[np.ndarray]:
    plan = room.layout.plan
    lo, hi = _bounds(obj.prims)
    c = (lo + hi) / 2
    if nyu in (2, 22):  # floor / ceiling: look down / up from a point in the room
        for _ in range(30):
            p = np.array([rng.uniform(0.5, plan.width - 0.5), rng.uniform(0.5, plan.depth - 0.5)])
            if plan.contains_point(p, 0.4):
                break
        z = rng.uniform(1.2, 1.7)
        if _in_furniture(room, np.array([p[0], p[1], z])):
            return None
        ang = rng.uniform(0, 2 * math.pi)
        dz = -z if nyu == 2 else plan.height - z
        tgt = np.array([p[0] + math.cos(ang) * 0.9, p[1] + math.sin(ang) * 0.9, z + dz])
        return look_at_target([p[0], p[1], z], tgt, rng.normal(0, 0.03))
    front = np.array(obj.front if obj.front is not None else (1.0, 0.0))
    fov = 2 * math.atan(size[1] / 2 / K[1, 1])
    if nyu == 1:  # a wall: stand in front of a random part of it
        d3 = np.array([-front[1], front[0]])
        span = float(np.linalg.norm((hi - lo)[:2]))
        c = c.copy()
        c[:2] += d3 * rng.uniform(-0.3, 0.3) * span
        c[2] = rng.uniform(0.9, 1.6)
        radius = rng.uniform(0.8, 1.5)
    else:
        radius = 0.5 * float(np.linalg.norm(hi - lo))
    fill = rng.uniform(0.8, 1.1) if context == "plain" else rng.uniform(0.65, 1.0)
    dist = max(0.5, radius / math.tan(fov / 2 * fill))
    spread = 0.9 if nyu in _WALL_ITEMS or nyu == 1 else 1.4
    az = math.atan2(front[1], front[0]) + rng.uniform(-spread, spread) * 0.75
    z = float(np.clip(rng.uniform(0.9, 1.8) if nyu not in _WALL_ITEMS else c[2] + rng.uniform(-0.4, 0.3), 0.4,
                      plan.height - 0.2))
    eye = np.array([c[0] + math.cos(az) * dist, c[1] + math.sin(az) * dist, z])
    if context == "cluttered":  # keep the camera inside the room, out of furniture, not too close
        for _ in range(40):
            if plan.contains_point(eye[:2], 0.15):
                break
            eye[:2] = c[:2] + (eye[:2] - c[:2]) * 0.9
        if not plan.contains_point(eye[:2], 0.1) or np.linalg.norm(eye - c) < 0.6 * dist or _in_furniture(room, eye):
            return None
    return look_at_target(eye, c, rng.normal(0, 0.03))


def _in_furniture(room: SynthRoom, eye: np.ndarray, margin: float = 0.1) -> bool:
    b = object_boxes(room)
    return bool(((b[:, :3] - margin < eye) & (eye < b[:, 3:] + margin)).all(1).any())


def _solo_room(room: SynthRoom, oi: int) -> SynthRoom:
    """A room holding only object ``oi`` (plain-background renders)."""
    lay = room.layout
    solo = Layout(lay.seed, lay.room_type, lay.plan, [lay.objects[oi]], lay.materials, lay.lights)
    mesh = build_mesh(solo, room.cfg, spacing=room.spacing, colors=False)
    return SynthRoom(scene_id=room.scene_id + "_solo", seed=room.seed, room_type=room.room_type, cfg=room.cfg,
                     layout=solo, **mesh)


def render_object_views(class_name: str, m: int, seed: int = 0, size: tuple[int, int] = (320, 240),
                        context: str = "plain", min_area: float = 0.02, progress: bool = False
                        ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``m`` images of one instance of ``class_name`` each, with its exact mask.

    Args:
        class_name: vocabulary class (ScanNet-20 / NYU40 name, e.g. ``"shower curtain"``, ``"other furniture"``).
        m: number of images. seed: makes the set reproducible.
        size: (width, height). context: ``"plain"`` (object alone, plain background) or ``"cluttered"`` (in its room).
        min_area: minimum mask area as a fraction of the image; views below it are redrawn.

    Returns:
        list of (image uint8 [H, W, 3], mask bool [H, W]).
    """
    if context not in ("plain", "cluttered"):
        raise SASInputError(None, f"context must be 'plain' or 'cluttered', got {context!r}")
    if m < 0:
        raise SASInputError(None, f"m must be >= 0, got {m}")
    nyu = class_nyu40(class_name)
    cfg = SynthConfig(image_size=tuple(size))
    K = intrinsics_matrix(cfg)
    rooms = _ROOMS.get(nyu, _ANY)
    rng = np.random.default_rng([int(seed), nyu, 1 if context == "plain" else 2])
    out: list[tuple[np.ndarray, np.ndarray]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=m, desc=f"views {class_name}", unit="img", leave=False)
    room_no, tries = 0, 0
    while len(out) < m:
        rseed = CAPABILITY_SEED_BASE + int(rng.integers(1 << 29))  # the capability world: no split's rooms
        rt = rooms[int(rng.integers(len(rooms)))]
        layout = make_layout(rseed, rt)
        cands = [i for i, o in enumerate(layout.objects) if o.nyu40 == nyu]
        room_no += 1
        if room_no > 20 * max(1, m):
            raise RuntimeError(f"could not render {m} views of {class_name!r}")
        if not cands:
            continue
        mesh = build_mesh(layout, cfg, spacing=0.15, colors=False)
        room = SynthRoom(scene_id=scene_id_for(rseed, rt), seed=rseed, room_type=rt, cfg=cfg, layout=layout, **mesh)
        full = Renderer(room)
        order = rng.permutation(cands)
        for k in range(VIEWS_PER_ROOM):
            if len(out) >= m:
                break
            oi = int(order[k % len(order)])
            plain = context == "plain" and nyu not in _STRUCTURE
            pose = None
            for tries in range(8):
                pose = _camera(rng, layout.objects[oi], room, nyu, "plain" if plain else "cluttered", K, size)
                if pose is not None:
                    break
            if pose is None:
                continue
            if plain:
                solo = Renderer(_solo_room(room, oi))
                bg = tuple(rng.uniform(0.55, 0.95) * np.ones(3) * rng.uniform(0.9, 1.05, 3))
                fr = solo.render(pose, K, size, rng, cfg, background=bg)
                mask = fr.instances == 0
            else:
                fr = full.render(pose, K, size, rng, cfg)
                mask = fr.instances == oi
            if mask.mean() < min_area:
                continue
            out.append((fr.color, mask))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return out
