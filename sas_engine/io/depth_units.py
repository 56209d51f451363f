"""Depth units of RGB-D captures: one convention, two accepted spellings, and a check that the units are plausible.

``depth_scale`` is raw depth units per metre (ScanNet / Open3D 1000 = millimetres, TUM 5000);
``depth_unit_scale_factor`` is metres per raw unit (nerfstudio's, 1e-3 = millimetres), the reciprocal. Where both are
given they must agree. :func:`check_depth_units` reads the first frames with depth and refuses a median depth outside
:data:`DEPTH_RANGE`, naming the file, the value read and the likely fix.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import SASInputError
from .files import image_size as file_image_size
from .files import read_depth
from .frames import ASPECT_TOLERANCE, FrameSpec

log = logging.getLogger(__name__)

DEFAULT_DEPTH_SCALE = 1000.0
"""Raw depth units per metre when a capture does not say (millimetres: ScanNet, Open3D, most sensors' uint16 PNGs)."""
DEPTH_RANGE = (0.05, 30.0)
"""Plausible median depth of a capture frame, metres; outside it :func:`check_depth_units` refuses the units."""


@dataclass
class DepthUnits:
    """A capture's depth units and where they were read, so a message can quote the user's own spelling.

    Attributes:
        scale: raw depth units per metre (what :class:`FrameSpec` takes).
        where: the file that says so ("" = nothing did; the default applies).
        key: the spelling used there: ``depth_scale`` (units per metre) or ``depth_unit_scale_factor`` (metres per
            unit).
        value: the number as written.
    """

    scale: float = DEFAULT_DEPTH_SCALE
    where: str = ""
    key: str = "depth_scale"
    value: float = DEFAULT_DEPTH_SCALE

    def describe(self) -> str:
        unit = "units per metre" if self.key == "depth_scale" else "metres per unit"
        if not self.where:
            return f"no depth scale is given, so the default {self.value:g} {unit} (millimetres) applies"
        return f"{Path(self.where).name} says {self.key} {self.value:g} {unit}"

    def spelled(self, scale: float) -> str:
        """``scale`` (units per metre) as the number to write in this capture's own spelling."""
        return f"{1.0 / scale:g}" if self.key == "depth_unit_scale_factor" else f"{scale:g}"

    def other_spelling(self) -> str:
        if self.key == "depth_unit_scale_factor":
            return "depth_scale is the units-per-metre spelling"
        return "depth_unit_scale_factor is the metres-per-unit spelling"


def depth_units(given: Sequence[tuple[str, str, object]], default: float = DEFAULT_DEPTH_SCALE) -> DepthUnits:
    """Resolve a capture's depth units from ``(where, key, value)`` triples, ``key`` being ``depth_scale`` (units
    per metre) or ``depth_unit_scale_factor`` (metres per unit). Values must be positive numbers; several must agree
    (within 0.1 %). None given: ``default`` units per metre."""
    found: list[DepthUnits] = []
    for where, key, value in given:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise SASInputError(where, f"{key} is not a number ({value!r})") from None
        if not math.isfinite(v) or v <= 0:
            raise SASInputError(where, f"{key} must be a positive number, got {v:g}")
        found.append(DepthUnits(v if key == "depth_scale" else 1.0 / v, where, key, v))
    if not found:
        return DepthUnits(float(default), "", "depth_scale", float(default))
    for other in found[1:]:
        if abs(other.scale / found[0].scale - 1.0) > 1e-3:
            raise SASInputError(other.where, f"depth units disagree: {other.describe()} = {other.scale:g} units per "
                                             f"metre, but {found[0].describe()} = {found[0].scale:g} units per metre "
                                             "(depth_scale is units per metre, depth_unit_scale_factor metres per "
                                             "unit: one is the reciprocal of the other); keep one")
    return found[0]


def _read_number(p: Path) -> float:
    try:
        return float(p.read_text().split()[0])
    except (ValueError, IndexError, UnicodeDecodeError):
        raise SASInputError(p, "is not a number") from None


def folder_depth_units(folder: Path, given: Sequence[tuple[str, str, object]] = ()) -> DepthUnits:
    """Depth units of a capture folder: ``depth_scale.txt`` (units per metre) and/or ``depth_unit_scale_factor.txt``
    (metres per unit), plus any ``given`` elsewhere (e.g. an Open3D config); they must agree."""
    found = list(given)
    for key in ("depth_scale", "depth_unit_scale_factor"):
        p = folder / f"{key}.txt"
        if p.is_file():
            found.append((str(p), key, _read_number(p)))
    return depth_units(found)


def _likely_scale(raw_median: float, units: DepthUnits) -> Optional[float]:
    """A depth scale (units per metre) that puts ``raw_median`` at a room-like depth: the reciprocal of what was given
    (the two spellings swapped), else a common sensor unit."""
    for c in (1.0 / units.scale, 1000.0, 5000.0, 10000.0, 4000.0, 100.0, 1.0):
        if abs(c / units.scale - 1.0) > 1e-6 and 0.2 <= raw_median / c <= 15.0:
            return c
    return None


def check_depth_units(specs: Sequence[FrameSpec], units: DepthUnits, max_tries: int = 5) -> None:
    """Refuse implausible depth units early, from the first frame with valid depth (one image read; up to
    ``max_tries`` frames when the first ones have no valid pixel).

    Also checks that frame's depth and colour images have the same aspect ratio (headers only). Raises
    :class:`SASInputError` naming the depth file, the median depth read and the likely fix when the median valid
    depth is outside :data:`DEPTH_RANGE`.
    """
    lo, hi = DEPTH_RANGE
    tried = 0
    for s in specs:
        if s.depth is None:
            continue
        if tried == 0:
            dw, dh = file_image_size(s.depth)
            cw, ch = file_image_size(s.color)
            if abs((dw / dh) / (cw / ch) - 1.0) > ASPECT_TOLERANCE:
                raise SASInputError(s.depth, f"depth image is {dw}x{dh} but its colour image {s.color.name} is "
                                             f"{cw}x{ch}: aspect ratios differ, they cannot be registered (a lower "
                                             "depth resolution of the same aspect ratio is fine)")
        tried += 1
        d = read_depth(s.depth, s.depth_scale)
        valid = d[d > 0]
        if valid.size:
            med = float(np.median(valid))
            if lo <= med <= hi:
                return
            msg = f"median depth of this frame is {med:.4g} m, outside the plausible {lo:g}-{hi:g} m: "
            if s.depth.suffix == ".npy" and np.load(s.depth, mmap_mode="r", allow_pickle=False).dtype.kind == "f":
                raise SASInputError(s.depth, msg + "float .npy depth is read as metres (no depth scale applies); "
                                                   "save metres, or integer units with a depth scale")
            raw = med * s.depth_scale
            c = _likely_scale(raw, units)
            if c is not None and not units.where:
                fix = (f"if the depth is not in millimetres, give its units: depth_scale {c:g} (units per metre) or "
                       f"depth_unit_scale_factor {1.0 / c:g} (metres per unit) reads the raw median {raw:g} as "
                       f"{raw / c:.3g} m")
            elif c is not None:
                fix = (f"did you mean {units.spelled(c)}? ({units.other_spelling()}; that reads the raw median "
                       f"{raw:g} as {raw / c:.3g} m)")
            else:
                fix = (f"check the depth images' units (raw median {raw:g}; depth_scale is units per metre, e.g. 1000 "
                       "for millimetres, 5000 for TUM; depth_unit_scale_factor is metres per unit)")
            raise SASInputError(s.depth, msg + f"{units.describe()}; {fix}")
        if tried >= max_tries:
            return


def require_depth_for_tsdf(specs: Sequence[FrameSpec], source: Path, how: str) -> None:
    """Without a mesh the scene is reconstructed by TSDF fusion, which needs depth for every frame."""
    missing = [s.frame_id for s in specs if s.depth is None]
    if missing:
        raise SASInputError(source, f"{len(missing)} of {len(specs)} frames have no depth (e.g. frame {missing[0]}) "
                                    f"and no mesh is given, so the scene would be reconstructed by TSDF fusion, which "
                                    f"needs a depth image for every frame: {how}")
