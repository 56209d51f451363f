"""Per-room material palettes: a few base materials shared across object classes, jittered per instance.

Sharing is deliberate (the confusions of the SAS paper's Figure 1): tables, desks, bookshelves and bed frames draw
from the same wood; chairs, sofas, ottomans and beds from the same fabrics; cabinets, counters, doors and
refrigerators from the same white paint; picture frames and window frames from one frame material; curtains and
shower curtains from one curtain fabric.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .materials import Material, jitter

_WOODS = [((0.62, 0.45, 0.28), (0.45, 0.30, 0.17)), ((0.40, 0.26, 0.16), (0.27, 0.16, 0.09)),
          ((0.75, 0.62, 0.45), (0.60, 0.46, 0.30)), ((0.55, 0.38, 0.25), (0.36, 0.22, 0.13)),
          ((0.82, 0.76, 0.66), (0.70, 0.62, 0.50))]
_FABRICS = [(0.45, 0.47, 0.50), (0.30, 0.36, 0.52), (0.62, 0.55, 0.45), (0.35, 0.45, 0.35), (0.55, 0.25, 0.22),
            (0.70, 0.68, 0.64), (0.25, 0.25, 0.27), (0.55, 0.50, 0.62)]
_WALLS = [(0.90, 0.89, 0.86), (0.88, 0.84, 0.76), (0.80, 0.84, 0.86), (0.82, 0.86, 0.80), (0.86, 0.82, 0.80),
          (0.93, 0.93, 0.93)]
_WHITES = [(0.92, 0.92, 0.90), (0.88, 0.88, 0.86), (0.95, 0.94, 0.92), (0.85, 0.86, 0.88)]
_BOOKS = [(0.70, 0.15, 0.12), (0.15, 0.30, 0.60), (0.85, 0.75, 0.30), (0.15, 0.45, 0.25), (0.90, 0.88, 0.82),
          (0.20, 0.20, 0.22), (0.55, 0.30, 0.50), (0.85, 0.45, 0.15)]


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


class Palette:
    """The room's material list plus its shared base materials.

    ``materials`` grows as objects ask for per-instance variants; primitives index into it.
    """

    def __init__(self, rng: np.random.Generator, room_type: str):
        self.materials: list[Material] = []
        w1, w2 = _pick(rng, _WOODS), _pick(rng, _WOODS)
        white = _pick(rng, _WHITES)
        f1, f2 = _pick(rng, _FABRICS), _pick(rng, _FABRICS)
        curtain = _pick(rng, _FABRICS + [(0.92, 0.92, 0.90), (0.85, 0.80, 0.70)])
        frame = [Material("paint", white), Material("wood", w2[0], w2[1], 0.012), Material("paint", (0.12, 0.12, 0.12))]
        wall_col = _pick(rng, _WALLS)
        if room_type == "bathroom":
            wall = Material("tiles", _pick(rng, _WHITES + [(0.75, 0.85, 0.90), (0.86, 0.82, 0.72)]), (0.7, 0.7, 0.68),
                            float(rng.choice([0.15, 0.2, 0.3])))
            floor = Material("tiles", _pick(rng, [(0.55, 0.55, 0.55), (0.75, 0.72, 0.66), (0.35, 0.38, 0.42)]),
                             (0.3, 0.3, 0.3), float(rng.choice([0.3, 0.45])))
        else:
            wall = Material("paint", wall_col)
            kinds = {"kitchen": ["tiles", "planks"], "office": ["carpet", "planks", "tiles"],
                     "bedroom": ["planks", "carpet"]}.get(room_type, ["planks", "planks", "carpet", "tiles"])
            kind = _pick(rng, kinds)
            wf = _pick(rng, _WOODS)
            floor = {"planks": Material("planks", wf[0], wf[1], float(rng.uniform(0.12, 0.2))),
                     "carpet": Material("carpet", _pick(rng, _FABRICS), (0.5, 0.5, 0.5)),
                     "tiles": Material("tiles", _pick(rng, [(0.78, 0.76, 0.72), (0.60, 0.58, 0.55), (0.85, 0.85, 0.85)]),
                                       (0.35, 0.35, 0.35), float(rng.choice([0.3, 0.4, 0.6])))}[kind]
        self.base: dict[str, Material] = {
            "wall": wall, "floor": floor, "ceiling": Material("paint", (0.95, 0.95, 0.94)),
            "wood": Material("wood", w1[0], w1[1], float(rng.uniform(0.01, 0.025))),
            "wood2": Material("wood", w2[0], w2[1], float(rng.uniform(0.01, 0.025))),
            "fabric": Material("fabric", f1, tuple(np.clip(np.array(f1) * 0.8, 0, 1))),
            "fabric2": Material("fabric", f2, tuple(np.clip(np.array(f2) * 1.15, 0, 1))),
            "white": Material("paint", white),
            "stone": Material("stone", _pick(rng, [(0.85, 0.84, 0.80), (0.30, 0.30, 0.32), (0.70, 0.66, 0.60)]),
                              (0.5, 0.5, 0.5)),
            "metal": Material("metal", (0.72, 0.73, 0.75)),
            "dark": Material("paint", (0.15, 0.15, 0.16)),
            "ceramic": Material("ceramic", (0.95, 0.95, 0.95)),
            "frame": _pick(rng, frame),
            "curtain": Material("fabric", curtain, tuple(np.clip(np.array(curtain) * 0.85, 0, 1))),
            "screen": Material("screen", (0.05, 0.06, 0.08), (0.20, 0.22, 0.28)),
            "mirror": Material("screen", (0.60, 0.66, 0.72), (0.85, 0.88, 0.92)),
            "bedding": Material("fabric", _pick(rng, _WHITES), (0.8, 0.8, 0.8)),
            "carpet": Material("carpet", _pick(rng, _FABRICS), _pick(rng, _FABRICS)),
        }

    def add(self, mat: Material) -> int:
        """Append a material; returns its index."""
        self.materials.append(mat)
        return len(self.materials) - 1

    def maker(self, rng: np.random.Generator, jitter_amount: float = 0.07) -> Callable[[str], int]:
        """A per-object material function: ``mk(key)`` -> index of this object's variant of base material ``key``.

        Special keys: ``"book"`` (a new random book colour each call), ``"canvas"`` (a new picture canvas),
        ``"sky"`` (a window view), ``"plastic"`` (a random colour, fixed for the object).
        """
        cache: dict[str, int] = {}

        def mk(key: str) -> int:
            if key == "book":
                return self.add(jitter(Material("paint", _pick(rng, _BOOKS)), rng, 0.12))
            if key in cache:
                return cache[key]
            if key == "canvas":
                c1, c2 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.2, 1.0, 3)
                variant = int(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2]))
                if variant == 1:  # landscape: land below, sky above
                    c1, c2 = np.array([0.3, 0.45, 0.25]) * rng.uniform(0.7, 1.3, 3), np.array([0.55, 0.7, 0.9])
                mat = Material("canvas", tuple(np.clip(c1, 0, 1)), tuple(np.clip(c2, 0, 1)), variant=variant,
                               offset=(float(rng.uniform(-50, 50)), 0.0, 0.0))
            elif key == "sky":
                mat = Material("sky", (0.85, 0.88, 0.9), tuple(np.array([0.45, 0.62, 0.88]) * rng.uniform(0.9, 1.1)),
                               variant=int(rng.integers(100)), offset=(float(rng.uniform(-9, 9)), 0.0, 0.0),
                               emissive=True)
            elif key == "plastic":
                mat = Material("paint", tuple(rng.uniform(0.15, 0.9, 3)))
            else:
                mat = jitter(self.base[key], rng, jitter_amount)
            cache[key] = self.add(mat)
            return cache[key]

        return mk
