"""Materials and procedural textures of the synthetic world.

A :class:`Material` is a base colour, a secondary colour and a texture kind. Textures are *solid* functions of a
point's coordinates in its primitive's local frame (metres), so the same function gives the mesh's per-vertex albedo
(sampled at the vertices, like a scan's colour) and the rendered images' per-pixel albedo (sampled at every ray hit,
so images show finer detail than the mesh, as real captures do).

Textures: ``paint`` (plain, faint mottling), ``wood`` (growth-ring stripes along the board), ``fabric`` (mottled weave),
``carpet`` (strong fine noise), ``stone`` (speckled counter tops), ``tiles`` (grout grid, per-tile shade), ``planks``
(floor boards with staggered joints), ``canvas`` (picture content: abstract, landscape or colour blocks), ``sky``
(window view: sky gradient, clouds, skyline; emissive), ``metal`` (brushed), ``ceramic``, ``screen`` (dark glossy).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

TEXTURES = ("paint", "wood", "fabric", "carpet", "stone", "tiles", "planks", "canvas", "sky", "metal", "ceramic",
            "screen")
"""Texture kinds, in the order of their integer ids."""
_TEX_ID = {t: i for i, t in enumerate(TEXTURES)}


@dataclass(frozen=True)
class Material:
    """Surface appearance of a primitive.

    Attributes:
        texture: one of :data:`TEXTURES`.
        color: base RGB in [0, 1].
        color2: secondary RGB (grain, grout, sky...).
        scale: texture scale in metres (ring spacing, tile or plank size).
        variant: pattern variant (canvas: 0 abstract, 1 landscape, 2 colour blocks).
        offset: 3D offset added to coordinates so that instances of one material differ.
        emissive: shown at full brightness without shading (window panes).
    """

    texture: str
    color: tuple[float, float, float]
    color2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 0.02
    variant: int = 0
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    emissive: bool = False


def jitter(mat: Material, rng: np.random.Generator, amount: float = 0.07) -> Material:
    """A per-instance variation of ``mat``: brightness and tint jittered, new texture offset."""
    gain = 1.0 + rng.normal(0.0, amount)
    tint = 1.0 + rng.normal(0.0, amount * 0.5, 3)
    col = tuple(float(x) for x in np.clip(np.asarray(mat.color) * gain * tint, 0.0, 1.0))
    off = tuple(float(x) for x in rng.uniform(-50.0, 50.0, 3))
    return replace(mat, color=col, offset=off)


class MaterialTable:
    """Per-material parameter arrays, gathered per point for vectorised texture evaluation."""

    def __init__(self, materials: list[Material]):
        self.materials = list(materials)
        self.tex = np.array([_TEX_ID[m.texture] for m in materials], dtype=np.int64)
        self.color = np.array([m.color for m in materials], dtype=np.float32).reshape(-1, 3)
        self.color2 = np.array([m.color2 for m in materials], dtype=np.float32).reshape(-1, 3)
        self.scale = np.array([m.scale for m in materials], dtype=np.float32)
        self.variant = np.array([m.variant for m in materials], dtype=np.int64)
        self.offset = np.array([m.offset for m in materials], dtype=np.float32).reshape(-1, 3)
        self.emissive = np.array([m.emissive for m in materials], dtype=bool)

    def albedo(self, mat: np.ndarray, local: np.ndarray, long_axis: np.ndarray, normal_axis: np.ndarray) -> np.ndarray:
        """Albedo float32 [n, 3] in [0, 1] (emissive materials may exceed 1).

        Args:
            mat: int [n] material index per point.
            local: float [n, 3] coordinates in the primitive's local frame (metres, origin at its centre).
            long_axis: int [n] local axis along the primitive's longest extent (wood grain direction).
            normal_axis: int [n] local axis of the surface normal (0, 1, 2), or -1 on curved surfaces.
        """
        out = np.zeros((len(mat), 3), dtype=np.float32)
        tex = self.tex[mat]
        for t in np.unique(tex):
            sel = np.nonzero(tex == t)[0]
            m = mat[sel]
            p = local[sel].astype(np.float32) + self.offset[m]
            out[sel] = _FUNCS[TEXTURES[t]](p, long_axis[sel], normal_axis[sel], self.color[m], self.color2[m],
                                          self.scale[m][:, None], self.variant[m])
        return out


# -- noise -------------------------------------------------------------------------------------------------------
def _hash(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray) -> np.ndarray:
    """Integer lattice hash -> float in [0, 1)."""
    h = (ix.astype(np.int64) * 73856093) ^ (iy.astype(np.int64) * 19349663) ^ (iz.astype(np.int64) * 83492791)
    h = h & 0xFFFFFFFF
    h = (h ^ (h >> 13)) * 0x5BD1E995 & 0xFFFFFFFF
    h = h ^ (h >> 15)
    return (h & 0xFFFFFF).astype(np.float32) / float(0x1000000)


def _noise_loop(p, out):  # pragma: no cover - compiled by numba; same arithmetic as _hash / value_noise_numpy
    for n in range(p.shape[0]):
        fx, fy, fz = np.floor(p[n, 0]), np.floor(p[n, 1]), np.floor(p[n, 2])
        tx, ty, tz = p[n, 0] - fx, p[n, 1] - fy, p[n, 2] - fz
        wx, wy, wz = tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty), tz * tz * (3.0 - 2.0 * tz)
        ix, iy, iz = np.int64(fx), np.int64(fy), np.int64(fz)
        acc = 0.0
        for dx in range(2):
            ax = wx if dx else 1.0 - wx
            for dy in range(2):
                ay = wy if dy else 1.0 - wy
                for dz in range(2):
                    az = wz if dz else 1.0 - wz
                    h = ((ix + dx) * 73856093) ^ ((iy + dy) * 19349663) ^ ((iz + dz) * 83492791)
                    h = h & 0xFFFFFFFF
                    h = ((h ^ (h >> 13)) * 0x5BD1E995) & 0xFFFFFFFF
                    h = h ^ (h >> 15)
                    acc += ax * ay * az * (np.float32(h & 0xFFFFFF) / np.float32(16777216.0))
        out[n] = acc


_KERNEL: list = []


def _kernel():
    """The numba-compiled noise loop (compiled once, cached on disk), or None without numba."""
    if not _KERNEL:
        try:
            import numba

            _KERNEL.append(numba.njit(cache=True, nogil=True)(_noise_loop))
        except Exception:  # numba missing or unable to compile: numpy path
            _KERNEL.append(None)
    return _KERNEL[0]


def value_noise(p: np.ndarray) -> np.ndarray:
    """Smooth 3D value noise in [0, 1], float32 [n], of points ``p`` [n, 3] (unit lattice).

    Uses a numba kernel when available; :func:`value_noise_numpy` computes the same values."""
    k = _kernel()
    if k is None:
        return value_noise_numpy(p)
    out = np.empty(len(p), dtype=np.float32)
    k(np.ascontiguousarray(p, dtype=np.float32), out)
    return out


def value_noise_numpy(p: np.ndarray) -> np.ndarray:
    """Pure-numpy :func:`value_noise`."""
    p = np.asarray(p, dtype=np.float32)
    f = np.floor(p)
    t = (p - f).astype(np.float32)
    w = t * t * (3.0 - 2.0 * t)
    i = f.astype(np.int64)
    out = np.zeros(len(p), dtype=np.float32)
    for dx in (0, 1):
        wx = w[:, 0] if dx else 1.0 - w[:, 0]
        for dy in (0, 1):
            wy = w[:, 1] if dy else 1.0 - w[:, 1]
            for dz in (0, 1):
                wz = w[:, 2] if dz else 1.0 - w[:, 2]
                out += wx * wy * wz * _hash(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz)
    return out


def fbm(p: np.ndarray, octaves: int = 3) -> np.ndarray:
    """Fractal sum of :func:`value_noise` octaves, normalised to [0, 1]."""
    out = np.zeros(len(p), dtype=np.float32)
    amp, tot = 1.0, 0.0
    for o in range(octaves):
        out += amp * value_noise(p * (2.0 ** o) + 17.0 * o)
        tot += amp
        amp *= 0.5
    return out / tot


def _smooth(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _axes(p: np.ndarray, long_axis: np.ndarray):
    """(a, b, c): coordinate along the long axis and the two across it."""
    idx = np.arange(len(p))
    a = p[idx, long_axis]
    b = p[idx, (long_axis + 1) % 3]
    c = p[idx, (long_axis + 2) % 3]
    return a, b, c


def _plane(p: np.ndarray, normal_axis: np.ndarray):
    """In-plane coordinates (u, v) of a flat face: the two local axes other than the normal (u the lower index)."""
    n = np.where(normal_axis < 0, 2, normal_axis)
    idx = np.arange(len(p))
    u = p[idx, np.where(n == 0, 1, 0)]
    v = p[idx, np.where(n == 2, 1, 2)]
    return u, v


def _lerp(c0: np.ndarray, c1: np.ndarray, t: np.ndarray) -> np.ndarray:
    return c0 + (c1 - c0) * t[:, None]


# -- textures ------------------------------------------------------------------------------------------------------
def _paint(p, la, na, c1, c2, s, var):
    return c1 * (0.97 + 0.06 * value_noise(p * 5.0))[:, None]


def _wood(p, la, na, c1, c2, s, var):
    a, b, c = _axes(p, la)
    r = np.sqrt((b + 0.35) ** 2 + (c + 0.21) ** 2)
    r = r + 0.012 * value_noise(np.stack([a * 1.5, b * 8.0, c * 8.0], 1))
    t = (r / s[:, 0]) % 1.0
    band = _smooth(0.45, 0.9, t) * (1.0 - _smooth(0.9, 1.0, t))
    streak = value_noise(np.stack([a * 2.0, b * 70.0, c * 70.0], 1))
    col = _lerp(c1, c2, 0.6 * band + 0.25 * streak)
    return col * (0.93 + 0.1 * value_noise(p * 3.0))[:, None]


def _fabric(p, la, na, c1, c2, s, var):
    mott = fbm(p * 18.0, 2)
    fine = value_noise(p * 160.0)
    col = _lerp(c1, c2, 0.25 * _smooth(0.4, 0.8, value_noise(p * 4.0)))
    return col * (0.84 + 0.2 * mott + 0.08 * fine)[:, None]


def _carpet(p, la, na, c1, c2, s, var):
    return _lerp(c1, c2, 0.3 * fbm(p * 6.0, 2)) * (0.72 + 0.45 * value_noise(p * 220.0))[:, None]


def _stone(p, la, na, c1, c2, s, var):
    speck = _smooth(0.62, 0.7, value_noise(p * 90.0))
    return _lerp(c1, c2, 0.7 * speck) * (0.92 + 0.12 * fbm(p * 6.0, 2))[:, None]


def _tiles(p, la, na, c1, c2, s, var):
    u, v = _plane(p, na)
    size = s[:, 0]
    iu, iv = np.floor(u / size), np.floor(v / size)
    du = np.minimum(u / size - iu, iu + 1 - u / size) * size
    dv = np.minimum(v / size - iv, iv + 1 - v / size) * size
    grout = np.minimum(du, dv) < 0.004
    col = c1 * (0.93 + 0.12 * _hash(iu, iv, np.zeros_like(iu)))[:, None]
    col = col * (0.98 + 0.04 * value_noise(p * 12.0))[:, None]
    col[grout] = c2[grout]
    return col


def _planks(p, la, na, c1, c2, s, var):
    u, v = _plane(p, na)
    w = s[:, 0]
    length = 1.2
    j = np.floor(v / w)
    shift = _hash(j, j * 3 + 1, np.ones_like(j)) * length
    k = np.floor((u + shift) / length)
    board = (0.82 + 0.3 * _hash(j, k, np.full_like(j, 7)))
    grain = value_noise(np.stack([u * 1.2, v * 55.0 + j * 13.0, k], 1))
    col = _lerp(c1, c2, 0.5 * grain) * board[:, None]
    dv = np.minimum(v / w - j, j + 1 - v / w) * w
    du = np.minimum((u + shift) / length - k, k + 1 - (u + shift) / length) * length
    seam = (dv < 0.002) | (du < 0.002)
    col[seam] *= 0.45
    return col


def _canvas(p, la, na, c1, c2, s, var):
    _x, _y = p[:, 0], p[:, 1]
    out = np.empty((len(p), 3), dtype=np.float32)
    third = np.clip(1.0 - c1 * 0.8 + 0.1, 0, 1)
    # 0: abstract colour fields
    m0 = var == 0
    if m0.any():
        n1 = fbm(p[m0] * 2.5, 3)
        n2 = value_noise(p[m0] * 5.0 + 31.0)
        col = _lerp(c1[m0], c2[m0], _smooth(0.35, 0.65, n1))
        out[m0] = _lerp(col, third[m0], _smooth(0.6, 0.68, n2))
    # 1: landscape (sky over land with a wavy horizon): reads like a view through a window
    m1 = var == 1
    if m1.any():
        q = p[m1]
        hor = 0.25 * (value_noise(np.stack([q[:, 0] * 3.0, q[:, 2], q[:, 2]], 1)) - 0.5)
        sky = _lerp(c2[m1], np.ones_like(c2[m1]) * 0.95, 0.7 * _smooth(0.55, 0.75, fbm(q * 4.0, 2)))
        land = c1[m1] * (0.7 + 0.5 * fbm(q * 12.0, 2))[:, None]
        out[m1] = np.where((q[:, 1] > hor)[:, None], sky, land)
    # 2: colour blocks
    m2 = ~(m0 | m1)
    if m2.any():
        q = p[m2]
        bx, by = np.floor(q[:, 0] / 0.13), np.floor(q[:, 1] / 0.11)
        h = _hash(bx, by, np.full_like(bx, 3))
        col = np.where((h < 0.33)[:, None], c1[m2], np.where((h < 0.66)[:, None], c2[m2], third[m2]))
        line = (np.abs(q[:, 0] / 0.13 - np.round(q[:, 0] / 0.13)) < 0.06) | \
               (np.abs(q[:, 1] / 0.11 - np.round(q[:, 1] / 0.11)) < 0.07)
        col = col.copy()
        col[line] = 0.08
        out[m2] = col
    return out * (0.95 + 0.08 * value_noise(p * 40.0))[:, None]


def _sky(p, la, na, c1, c2, s, var):
    x, y = p[:, 0], p[:, 1]
    t = np.clip(0.5 + y / 1.2, 0.0, 1.0)
    col = _lerp(c1, c2, t)
    clouds = _smooth(0.55, 0.8, fbm(np.stack([x * 2.0, y * 4.0, p[:, 2] + 3.0], 1), 3))
    col = _lerp(col, np.full_like(col, 1.0), 0.8 * clouds)
    sky_line = -0.15 + 0.3 * (value_noise(np.stack([np.floor(x * 6.0), var.astype(np.float32), p[:, 2]], 1)) - 0.4)
    below = y < sky_line
    col[below] = (np.array([0.32, 0.36, 0.3], np.float32) * (0.7 + 0.6 * fbm(p[below] * 15.0, 2))[:, None])
    return col * 1.1


def _metal(p, la, na, c1, c2, s, var):
    a, b, c = _axes(p, la)
    brushed = value_noise(np.stack([a * 2.0, b * 150.0, c * 150.0], 1))
    return c1 * (0.88 + 0.14 * brushed + 0.06 * value_noise(p * 2.0))[:, None]


def _ceramic(p, la, na, c1, c2, s, var):
    return c1 * (0.98 + 0.03 * value_noise(p * 8.0))[:, None]


def _screen(p, la, na, c1, c2, s, var):
    return _lerp(c1, c2, 0.4 * fbm(p * 1.5, 2))


_FUNCS = {
    "paint": _paint, "wood": _wood, "fabric": _fabric, "carpet": _carpet, "stone": _stone, "tiles": _tiles,
    "planks": _planks, "canvas": _canvas, "sky": _sky, "metal": _metal, "ceramic": _ceramic, "screen": _screen,
}
