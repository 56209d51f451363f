"""Colours for the viewer: class palettes, heat-maps, superpoints, teacher disagreement; HTML legends and colour bars.

Class colours follow :mod:`sas_engine.io.colors` (the ScanNet benchmark colours) so a class has the same colour in
the viewer, in every mode and in exported PLY files; names outside ScanNet-20 get well-separated colours in order.
"""
from __future__ import annotations

import colorsys
import html
from typing import Optional, Sequence

import numpy as np

from sas_engine.io.colors import SCANNET20_COLORS
from sas_engine.labels import SCANNET20

NO_FEATURE = np.array([70, 70, 70], np.uint8)
"""Colour of points without a feature (seen by no camera) in every feature-based mode."""

BACKGROUND_SWATCH = np.array([150, 150, 150], np.uint8)
"""Legend swatch of comma-list points that match none of the names (shown in a greyed version of their colour)."""

AGREE = np.array([200, 200, 200], np.uint8)
"""Colour of points where the teachers agree (disagreement mode)."""

TEACHER_COLORS = np.array([(255, 127, 14), (31, 119, 180), (44, 160, 44), (214, 39, 40), (148, 103, 189)], np.uint8)
"""One colour per teacher column in the disagreement mode (orange, blue, green, red, purple)."""

_FIXED = {n: i for i, n in enumerate(SCANNET20)}
_FIXED.update({"other": 19, "other furniture": 19, "ceiling": 20})
_HEAT_LUT: Optional[np.ndarray] = None
_HEAT_LUT32: Optional[np.ndarray] = None


def _extra_color(i: int) -> tuple[int, int, int]:
    h = (0.11 + i * 0.618033988749895) % 1.0
    s = 0.6 + 0.3 * (i % 2)
    v = 0.95 - 0.2 * ((i // 2) % 2)
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def class_palette(names: Sequence[str]) -> np.ndarray:
    """uint8 [K, 3]: the ScanNet benchmark colour for ScanNet-20 names (and ceiling), distinct generated colours for
    other names."""
    out = np.zeros((len(names), 3), np.uint8)
    used = set()
    extra = 0
    for i, n in enumerate(names):
        j = _FIXED.get(str(n).strip().lower())
        if j is not None and j not in used:
            out[i] = SCANNET20_COLORS[j]
            used.add(j)
            continue
        out[i] = _extra_color(extra)
        extra += 1
    return out


def label_colors(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """uint8 [N, 3] colours of int labels; values outside ``0..K-1`` (no feature, ignore) get :data:`NO_FEATURE`."""
    lab = np.asarray(labels).astype(np.int64)
    k = len(palette)
    table = np.concatenate([np.asarray(palette, np.uint8).reshape(-1, 3), NO_FEATURE[None]], 0)
    return table[np.where((lab >= 0) & (lab < k), lab, k)]


def heat_lut() -> np.ndarray:
    """uint8 [256, 3] look-up table of the heat-map colour map (matplotlib 'turbo')."""
    global _HEAT_LUT
    if _HEAT_LUT is None:
        import matplotlib

        cmap = matplotlib.colormaps["turbo"]
        _HEAT_LUT = np.round(cmap(np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return _HEAT_LUT


def pack_rgb(colors) -> np.ndarray:
    """uint8 [..., 3] colours -> uint32 [...] (one word per colour, for fast 1-D gathers and selects)."""
    c = np.asarray(colors, np.uint8)
    flat = c.reshape(-1, 3)
    p = np.zeros((len(flat), 4), np.uint8)
    p[:, :3] = flat
    return p.view(np.uint32).reshape(c.shape[:-1])


def unpack_rgb(words: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb`: uint32 [N] -> contiguous uint8 [N, 3]."""
    return np.ascontiguousarray(np.asarray(words, np.uint32).view(np.uint8).reshape(-1, 4)[:, :3])


def dimmed_rgb(base_rgb: np.ndarray) -> np.ndarray:
    """Packed grey version of a scene's colours (luminance / 2 + 40) shown below the heat-map threshold."""
    grey = (np.asarray(base_rgb, np.uint16).sum(1) // 6 + 40).astype(np.uint8)
    return pack_rgb(np.repeat(grey[:, None], 3, 1))


def heat_colors(heat: np.ndarray, threshold: float, base_rgb: Optional[np.ndarray] = None, *,
                dimmed: Optional[np.ndarray] = None) -> np.ndarray:
    """Heat-map colours: points with normalised similarity >= ``threshold`` get the colour map, the rest a dimmed grey
    version of their RGB colour (context stays visible), points without a feature :data:`NO_FEATURE`.

    Args:
        heat: float32 [N] normalised similarity in [0, 1], NaN = no feature.
        threshold: in [0, 1].
        base_rgb: uint8 [N, 3] the scene's own colours (or pass ``dimmed``).
        dimmed: :func:`dimmed_rgb` of the scene's colours, precomputed once per scene (the fast path).
    """
    global _HEAT_LUT32
    heat = np.asarray(heat, np.float32)
    if dimmed is None:
        dimmed = dimmed_rgb(base_rgb)
    if _HEAT_LUT32 is None:
        _HEAT_LUT32 = pack_rgb(heat_lut())
    fin = np.isfinite(heat)
    idx = (np.nan_to_num(heat, nan=0.0) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    words = np.where(fin & (heat < float(threshold)), dimmed, _HEAT_LUT32[idx])
    words[~fin] = pack_rgb(NO_FEATURE)
    return unpack_rgb(words)


def id_colors(ids: np.ndarray) -> np.ndarray:
    """uint8 [N, 3] a distinct, deterministic colour per integer id (superpoints, instances)."""
    ids = np.asarray(ids).astype(np.int64)
    u, inv = np.unique(ids, return_inverse=True)
    h = (u.astype(np.float64) * 0.618033988749895 + 0.07) % 1.0
    s = 0.45 + 0.5 * ((u * 2654435761) % 97) / 96.0
    v = 0.6 + 0.4 * ((u * 40503) % 89) / 88.0
    rgb = np.array([colorsys.hsv_to_rgb(a, b, c) for a, b, c in zip(h, s, v)]).reshape(-1, 3)
    return np.round(rgb * 255).astype(np.uint8)[inv]


def _swatch(rgb) -> str:
    r, g, b = (int(x) for x in rgb)
    return (f'<span style="display:inline-block;width:0.9em;height:0.9em;background:rgb({r},{g},{b});'
            f'border:1px solid #555;margin-right:4px;vertical-align:middle"></span>')


def legend_html(title: str, entries: Sequence[tuple[str, Sequence[int], int]], max_entries: int = 40) -> str:
    """HTML legend: a title and one swatch + name + point count per entry (entries with 0 points are skipped), the
    entries wrapped into rows so a 20-class legend takes a few lines under the 3D view."""
    rows = []
    shown = [e for e in entries if e[2] > 0]
    for name, rgb, count in shown[:max_entries]:
        rows.append(f"<span style='font-size:0.85em;white-space:nowrap'>{_swatch(rgb)}{html.escape(str(name))}"
                    f" <span style='color:#888'>({count:,})</span></span>")
    if len(shown) > max_entries:
        rows.append(f"<span style='font-size:0.85em;color:#888'>... {len(shown) - max_entries} more</span>")
    return (f"<div class='sas-legend'><div style='font-weight:600;margin:2px 0'>{html.escape(title)}</div>"
            "<div style='display:flex;flex-wrap:wrap;gap:1px 12px'>" + "".join(rows) + "</div></div>")


def colorbar_html(vmin: float, vmax: float, threshold: float, label: str = "cosine similarity") -> str:
    """HTML colour bar of the heat-map from ``vmin`` to ``vmax`` with the threshold marked."""
    lut = heat_lut()
    stops = ", ".join(f"rgb({r},{g},{b}) {int(i / 255 * 100)}%" for i, (r, g, b) in list(enumerate(lut))[::32] +
                      [(255, lut[255])])
    thr = min(max(float(threshold), 0.0), 1.0) * 100
    tval = vmin + (vmax - vmin) * float(threshold)
    return (
        "<div class='sas-colorbar' style='margin:4px 0'>"
        f"<div style='font-size:0.85em'>{html.escape(label)}: below the threshold ({tval:.3f}) points keep a grey "
        "version of their colour</div>"
        "<div style='position:relative;height:14px;border:1px solid #555;"
        f"background:linear-gradient(to right, {stops})'>"
        f"<div style='position:absolute;left:{thr:.1f}%;top:-3px;bottom:-3px;width:2px;background:#fff;"
        "box-shadow:0 0 2px #000'></div></div>"
        "<div style='display:flex;justify-content:space-between;font-size:0.8em'>"
        f"<span>{vmin:.3f}</span><span>{(vmin + vmax) / 2:.3f}</span><span>{vmax:.3f}</span></div></div>"
    )
