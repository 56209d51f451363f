"""Gravity alignment: find the up direction of a capture and move it into a canonical z-up frame.

The engine's world frame is **z up, metres, floor at z = 0** (see :mod:`sas_engine.scene`); the 3D student, the
viewer and the synthetic world all assume it. ScanNet, Matterport and OpenScene files already are z up. A capture's
world frame usually is not: most SLAM / SfM tools (nerfstudio, COLMAP, Open3D's reconstruction system, plain pose
folders) use the first camera's frame, whose y axis points *down* (OpenCV) or up (OpenGL), so "up" can be any
direction. Loading such a capture as it is makes the room lie on its side.

Conventions:
    * ``up``: a unit 3-vector in the **source** frame (the coordinates the user's files hold) pointing away from
      the floor, against gravity.
    * poses are 4x4 camera-to-world matrices in the OpenCV convention (camera x right, y down in the image, z
      forward), so a camera's own up direction in the world is ``-pose[:3, 1]``.
    * ``aligned_from_source`` (:func:`gravity_transform`) is a rigid 4x4 matrix ``T``: ``p_aligned = T[:3, :3] @
      p_source + T[:3, 3]``. Its rotation takes ``up`` to +z, then turns about z so the dominant wall normals lie on
      the x / y axes ("Manhattan yaw": the smallest such turn, within +-45 degrees); its translation is ``(0, 0, -h)``
      where ``h`` is the floor's height along ``up``, so the floor sits at z = 0. The x / y translation is left at 0
      on purpose: the aligned frame is the source frame turned about its own origin, so nothing but the floor shift
      depends on the point distribution beyond the orientation. No scaling: the source's unit is kept (metres for
      every supported layout).
    * the transform is kept on the scene (:attr:`sas_engine.scene.Scene.world_from_source`) and
      :meth:`sas_engine.scene.Scene.to_source_frame` maps aligned coordinates back, which the PLY exports use so a
      result overlays the user's original capture. Point order never changes.

How the up vector is found (:func:`estimate_up`), on a density-equalised sample (points thinned on a grid of 1/150
of the scene's diagonal, so each sample stands for about the same surface area; at most ``MAX_SAMPLES``):

1. **dominant plane orientations**: normals (given, or estimated by local PCA when absent) are grouped greedily,
   RANSAC-style: the candidate direction (one of 256 random sample normals) with the most normals within 10 degrees
   (either sign) wins, is refined to the sign-aligned mean of those normals, and its normals are removed; repeated
   while an orientation holds at least 3% of the samples (at most 6).
2. **with camera poses**: start from the normalised mean camera up vector; when a dominant orientation lies within
   30 degrees of it and its lowest large plane (the floor candidate) has most (80%) points above it, the up vector
   snaps to that plane normal (more precise than the cameras, which tilt as the user holds them). Cameras pointing
   every which way (mean up shorter than 0.3) give no prior. When no plane lies near the camera up vector but one
   lies within 30 degrees of the reversed mean viewing direction, the cameras looked down on it (a top-down scan of
   a floor or table, phone held flat: the cameras' up vectors are horizontal) and its normal is the up vector. When
   neither holds, the geometry decides as without poses (3); the mean camera up is the last resort for scenes
   without planes. Known limit: a scan of a single wall with no floor in view reads as a top-down scan of it.
3. **without poses**: the axis is the one of the three largest orientations that wins a vote of four cues
   (:func:`_axis_scores`): the largest single plane across it (floor or ceiling), the skew of the point mass between
   its two extreme planes (furniture stands on the floor), how many of the normals that belong to no dominant
   orientation are perpendicular to it (the sides of legs, lamps, bins: round things stand upright), and a small
   extent along it (rooms are lower than they are wide). The sign puts the floor at the low end: the points between
   the two extreme planes have their mass below the middle.
4. a snapped or plane-derived up vector is finally refined by a least-squares plane fit to the floor's points.

Without poses the result is a heuristic (each cue alone fails on some of the synthetic rooms; together they pass
all of them, with and without ceilings, with 1 cm noise on the points); a corridor or a bathroom narrower than
its height with little furniture can still come out on its side. ``--up`` overrides the detection
(:func:`parse_up`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Optional, Sequence

import numpy as np

from ..errors import SASInputError

UP_CHOICES = ("auto", "none", "x", "-x", "y", "-y", "z", "-z")
"""Named values of ``up``; three comma-separated numbers (a vector in the source frame) are accepted too."""
AXES = {"x": (1.0, 0.0, 0.0), "-x": (-1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "-y": (0.0, -1.0, 0.0),
        "z": (0.0, 0.0, 1.0), "-z": (0.0, 0.0, -1.0)}
MAX_SAMPLES = 40_000
"""Most samples the estimators look at (after the density-equalising grid)."""
GRID_DIVISIONS = 150
"""The thinning grid (and the plane-offset histogram bin) is the scene's diagonal over this."""
MODE_TOL_DEG = 10.0
"""Normals within this angle of an orientation (either sign) support it."""
PLANE_TOL_DEG = 15.0
"""Normals within this angle of an orientation count towards its planes."""
CAMERA_SNAP_DEG = 30.0
"""Largest angle between the mean camera up vector and a plane normal it snaps to."""


# -- the up option ---------------------------------------------------------------------------------------------------
def parse_up(up) -> str | np.ndarray:
    """``"auto"``, ``"none"`` or a float64 unit 3-vector from an ``up`` option value.

    Accepts the names of :data:`UP_CHOICES` (case-insensitive, ``+x`` = ``x``), ``"a,b,c"`` (also space-separated)
    and a 3-sequence. ``None`` means ``"auto"``.

    Raises:
        SASInputError: anything else, a zero or non-finite vector.
    """
    if up is None:
        return "auto"
    if isinstance(up, str):
        s = up.strip().lower()
        if s in ("auto", "none"):
            return s
        if s.startswith("+") and s[1:] in AXES:
            s = s[1:]
        if s in AXES:
            return np.array(AXES[s], dtype=np.float64)
        parts = [t for t in s.replace(",", " ").split() if t]
        if len(parts) != 3:
            raise SASInputError(None, f"--up {up!r} is not understood: use one of {', '.join(UP_CHOICES)} or three "
                                      "comma-separated numbers, e.g. 0,-1,0")
        try:
            v = np.array([float(t) for t in parts], dtype=np.float64)
        except ValueError:
            raise SASInputError(None, f"--up {up!r}: the three components must be numbers") from None
    else:
        try:
            v = np.asarray(up, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise SASInputError(None, f"up must be a name or a 3-vector, got {up!r}") from None
        if v.shape != (3,):
            raise SASInputError(None, f"up must be a 3-vector, got {v.size} values")
    n = float(np.linalg.norm(v)) if np.isfinite(v).all() else float("nan")
    if not np.isfinite(n) or n < 1e-9:
        raise SASInputError(None, f"--up {up!r} is not a finite non-zero vector")
    return v / n


# -- sampling and normals --------------------------------------------------------------------------------------------
def _prepare(points, normals, seed: int) -> tuple[np.ndarray, np.ndarray, float, np.random.Generator]:
    """Density-equalised float64 sample of the points and their unit normals (by PCA when ``normals`` is None);
    returns (P, N, grid cell, the seeded generator)."""
    P = np.asarray(points, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3 or len(P) == 0:
        raise SASInputError(None, f"points must be a non-empty [N, 3] array, got shape {list(P.shape)}")
    N = None
    if normals is not None:
        N = np.asarray(normals, dtype=np.float64)
        if N.shape != P.shape:
            raise SASInputError(None, f"normals have shape {list(N.shape)}, expected {list(P.shape)}")
    rng = np.random.default_rng(seed)
    ok = np.isfinite(P).all(1)
    if N is not None:
        ok &= np.isfinite(N).all(1) & (np.linalg.norm(N, axis=1) > 1e-6)
    idx = np.flatnonzero(ok)
    if len(idx) < 10:
        raise SASInputError(None, "too few valid points to find the up direction")
    if len(idx) > 4 * MAX_SAMPLES:
        idx = np.sort(rng.choice(idx, 4 * MAX_SAMPLES, replace=False))
    lo, hi = np.percentile(P[idx], [1, 99], axis=0)
    cell = max(float(np.linalg.norm(hi - lo)) / GRID_DIVISIONS, 1e-6)
    keys = np.clip(np.floor((P[idx] - lo) / cell).astype(np.int64) + 2 * GRID_DIVISIONS, 0, 8 * GRID_DIVISIONS)
    _, first = np.unique((keys[:, 0] * (8 * GRID_DIVISIONS + 1) + keys[:, 1]) * (8 * GRID_DIVISIONS + 1) + keys[:, 2],
                         return_index=True)
    idx = idx[np.sort(first)]
    if len(idx) > MAX_SAMPLES:
        idx = np.sort(rng.choice(idx, MAX_SAMPLES, replace=False))
    Ps = P[idx]
    Ns = pca_normals(Ps) if N is None else N[idx] / np.linalg.norm(N[idx], axis=1, keepdims=True)
    return Ps, Ns, cell, rng


def pca_normals(points: np.ndarray, k: int = 10) -> np.ndarray:
    """Unoriented unit normals float64 [N, 3] by PCA of each point's ``k`` nearest neighbours."""
    from scipy.spatial import cKDTree

    P = np.asarray(points, dtype=np.float64)
    k = int(min(k, len(P)))
    _, nb = cKDTree(P).query(P, k=k)
    Q = P[nb] - P[nb].mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", Q, Q)
    _, vecs = np.linalg.eigh(cov)
    return vecs[:, :, 0]


def face_normals_to_vertices(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals float32 [N, 3] of a triangle mesh (zeros for unreferenced vertices)."""
    P = np.asarray(points, dtype=np.float64)
    F = np.asarray(faces, dtype=np.int64)
    fn = np.cross(P[F[:, 1]] - P[F[:, 0]], P[F[:, 2]] - P[F[:, 0]])
    n = np.zeros_like(P)
    for c in range(3):
        np.add.at(n, F[:, c], fn)
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(ln > 1e-12, n / np.maximum(ln, 1e-12), 0.0).astype(np.float32)


# -- orientations and planes -----------------------------------------------------------------------------------------
def _dominant_orientations(N: np.ndarray, rng: np.random.Generator, max_modes: int = 6,
                           min_share: float = 0.03) -> list[tuple[np.ndarray, float]]:
    """Greedy RANSAC on normals: [(unit direction (sign arbitrary), share of samples)], largest first."""
    cos_in = math.cos(math.radians(MODE_TOL_DEG))
    cos_rm = math.cos(math.radians(2 * MODE_TOL_DEG))
    remaining = np.ones(len(N), dtype=bool)
    total = float(len(N))
    modes: list[tuple[np.ndarray, float]] = []
    for _ in range(max_modes):
        rem = np.flatnonzero(remaining)
        if len(rem) < max(3, min_share * total):
            break
        Nr = N[rem]
        cand = Nr[rng.choice(len(rem), min(256, len(rem)), replace=False)]
        score = (np.abs(Nr.astype(np.float32) @ cand.T.astype(np.float32)) > cos_in).sum(0)
        c = cand[int(np.argmax(score))]
        for _ in range(5):  # mean shift: the sign-aligned mean of the supporting normals
            d = Nr @ c
            inl = np.abs(d) > cos_in
            v = (Nr[inl] * np.sign(d[inl])[:, None]).sum(0)
            if np.linalg.norm(v) < 1e-12:
                break
            c = v / np.linalg.norm(v)
        share = float((np.abs(Nr @ c) > cos_in).sum()) / total
        if share < min_share:
            break
        modes.append((c, share))
        remaining[rem[np.abs(Nr @ c) > cos_rm]] = False
    return modes


def _planes(P: np.ndarray, N: np.ndarray, d: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Plane offsets along ``d`` and their masses (share of samples): a histogram of ``p . d`` over the samples whose
    normal is within :data:`PLANE_TOL_DEG` of ``+-d``, bins of ``cell``, each bin summed with its two neighbours."""
    inl = np.abs(N @ d) > math.cos(math.radians(PLANE_TOL_DEG))
    if not inl.any():
        return np.zeros(0), np.zeros(0)
    t = P[inl] @ d
    lo = float(t.min())
    nb = int((float(t.max()) - lo) / cell) + 1
    h = np.bincount(((t - lo) / cell).astype(np.int64), minlength=nb).astype(np.float64)
    hs = h.copy()
    hs[1:] += h[:-1]
    hs[:-1] += h[1:]
    return lo + (np.arange(nb) + 0.5) * cell, hs / len(P)


def _lowest_plane(P, N, d, cell, frac: float = 0.25) -> Optional[float]:
    """Offset along ``d`` of the lowest plane with at least ``frac`` of the largest plane's mass (None if none)."""
    centers, mass = _planes(P, N, d, cell)
    if not len(mass) or mass.max() <= 0:
        return None
    i = int(np.flatnonzero(mass >= frac * mass.max())[0])
    t = P @ d
    near = (np.abs(N @ d) > math.cos(math.radians(PLANE_TOL_DEG))) & (np.abs(t - centers[i]) <= 1.5 * cell)
    return float(np.median(t[near])) if near.any() else float(centers[i])


def _mass_sign(P: np.ndarray, d: np.ndarray) -> float:
    """+1 when the points between the two extreme 8% of the range along ``d`` lie mostly in its lower half (``d``
    points up), -1 otherwise."""
    t = P @ d
    lo, hi = np.percentile(t, [1, 99])
    span = max(float(hi - lo), 1e-9)
    mid = t[(t > lo + 0.08 * span) & (t < hi - 0.08 * span)]
    if not len(mid):
        return 1.0
    return 1.0 if float(np.mean(mid)) <= 0.5 * (lo + hi) else -1.0


def camera_up(poses) -> Optional[np.ndarray]:
    """Normalised mean of the cameras' up vectors ``-pose[:3, 1]`` (OpenCV poses); None without poses or when
    the cameras disagree too much (mean shorter than 0.3)."""
    if poses is None:
        return None
    A = np.asarray(poses, dtype=np.float64)
    if A.ndim != 3 or A.shape[1:] != (4, 4) or len(A) == 0:
        return None
    ups = -A[:, :3, 1]
    ups = ups[np.isfinite(ups).all(1)]
    if not len(ups):
        return None
    ups /= np.maximum(np.linalg.norm(ups, axis=1, keepdims=True), 1e-12)
    m = ups.mean(0)
    n = float(np.linalg.norm(m))
    return m / n if n >= 0.3 else None


def camera_forward(poses) -> Optional[np.ndarray]:
    """Normalised mean viewing direction ``pose[:3, 2]`` of the cameras; None without poses or when they look every
    which way (mean shorter than 0.5)."""
    if poses is None:
        return None
    A = np.asarray(poses, dtype=np.float64)
    if A.ndim != 3 or A.shape[1:] != (4, 4) or len(A) == 0:
        return None
    f = A[:, :3, 2]
    f = f[np.isfinite(f).all(1)]
    if not len(f):
        return None
    m = (f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)).mean(0)
    n = float(np.linalg.norm(m))
    return m / n if n >= 0.5 else None


def _snap(P, N, cell, modes, prior: np.ndarray) -> Optional[np.ndarray]:
    """The dominant orientation nearest ``prior`` (within :data:`CAMERA_SNAP_DEG`, signed like it) whose lowest large
    plane has at least 80% of the points above it; None when there is none."""
    best, best_cos = None, math.cos(math.radians(CAMERA_SNAP_DEG))
    for d, _ in modes:
        c = float(d @ prior)
        dd = d if c >= 0 else -d
        if abs(c) < best_cos:
            continue
        h = _lowest_plane(P, N, dd, cell)
        if h is not None and float(np.mean(P @ dd >= h - 2 * cell)) >= 0.8:
            best, best_cos = dd, abs(c)
    return best


def estimate_up(points, normals=None, poses=None, *, seed: int = 0) -> np.ndarray:
    """Unit up vector float64 [3] of a scene in its own (source) frame; see the module docstring for the method.

    Args:
        points: [N, 3] coordinates.
        normals: optional [N, 3] normals (any sign); estimated by PCA on the sample when absent.
        poses: optional [F, 4, 4] camera-to-world matrices, OpenCV convention.
        seed: seed of the sampling (the result is deterministic for a given input and seed).
    """
    P, N, cell, rng = _prepare(points, normals, seed)
    return _estimate_up(P, N, cell, rng, poses)


def _estimate_up(P, N, cell, rng, poses) -> np.ndarray:
    """:func:`estimate_up` on a prepared sample (:func:`_prepare`)."""
    modes = _dominant_orientations(N, rng)
    cam = camera_up(poses)
    look = camera_forward(poses)
    for prior in (cam, None if look is None else -look):  # upright cameras, then cameras looking down (top-down)
        best = _snap(P, N, cell, modes, prior) if prior is not None else None
        if best is not None:
            return _fit_floor(P, N, best, cell)
    if not modes:
        if cam is not None:
            return cam
        raise SASInputError(None, "no planar surfaces found to tell the up direction; pass --up")
    D = np.stack([d for d, _ in modes[:3]])
    d = D[int(np.argmax(_axis_scores(P, N, D, cell)))]
    return _fit_floor(P, N, d * _mass_sign(P, d), cell)


def _fit_floor(P: np.ndarray, N: np.ndarray, d: np.ndarray, cell: float) -> np.ndarray:
    """``d`` refined to the least-squares normal of the floor's points (the lowest large plane across ``d``, in a
    band of one, then half a grid cell); ``d`` itself when the fit has too few points or turns it by over 5 degrees.
    A plane fit over metres of floor is far more precise than the mean of the (noisy, edge-tilted) normals."""
    cos_n, cos_max = math.cos(math.radians(MODE_TOL_DEG)), math.cos(math.radians(5.0))
    out = d
    for band in (1.0, 0.5):
        h = _lowest_plane(P, N, out, cell)
        if h is None:
            break
        inl = (np.abs(N @ out) > cos_n) & (np.abs(P @ out - h) < band * cell)
        if inl.sum() < 10:
            break
        Q = P[inl] - P[inl].mean(0)
        n = np.linalg.svd(Q, full_matrices=False)[2][-1]
        n = n if n @ d >= 0 else -n
        if n @ d < cos_max:
            break
        out = n / np.linalg.norm(n)
    return out


def _axis_scores(P: np.ndarray, N: np.ndarray, D: np.ndarray, cell: float) -> np.ndarray:
    """How much each candidate axis (rows of ``D``) looks vertical: the sum of four cues, each divided by its
    largest value over the candidates (so each votes with weight 1):

    * the largest single plane across the axis (floor or ceiling);
    * the skew of the point mass between the two extreme planes (furniture stands on the floor);
    * the share of the non-Manhattan normals (more than 20 degrees from every candidate) that are perpendicular to
      the axis within 8 degrees: the sides of round things with a vertical axis (legs, lamps, bins, basins);
    * the inverse of the scene's extent along the axis (rooms are lower than they are wide).
    """
    plane = np.array([_planes(P, N, d, cell)[1].max(initial=0.0) for d in D])
    skew, inv_extent = np.zeros(len(D)), np.zeros(len(D))
    for i, d in enumerate(D):
        t = P @ d
        lo, hi = np.percentile(t, [1, 99])
        span = max(float(hi - lo), 1e-9)
        mid = t[(t > lo + 0.08 * span) & (t < hi - 0.08 * span)]
        skew[i] = abs(float(np.mean(mid)) - 0.5 * (lo + hi)) / span if len(mid) else 0.0
        inv_extent[i] = 1.0 / span
    A = np.abs(N @ D.T)
    other = A.max(1) < math.cos(math.radians(20.0))
    perp = (A[other] < math.sin(math.radians(8.0))).mean(0) if other.sum() >= 20 else np.zeros(len(D))
    return sum(c / c.max() for c in (plane, skew, perp, inv_extent) if c.max() > 0)


# -- the transform ---------------------------------------------------------------------------------------------------
def rotation_to_z(up: np.ndarray) -> np.ndarray:
    """The smallest rotation (3x3) taking the unit vector ``up`` to +z (a half turn about x for -z)."""
    u = np.asarray(up, dtype=np.float64)
    u = u / np.linalg.norm(u)
    z = np.array([0.0, 0.0, 1.0])
    c = float(u @ z)
    if c < -1.0 + 1e-12:
        return np.diag([1.0, -1.0, -1.0])
    v = np.cross(u, z)
    K = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + K + K @ K / (1.0 + c)


def _rot_z(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def manhattan_yaw(N_aligned: np.ndarray) -> float:
    """Angle (radians, in [-pi/4, pi/4)) of the dominant wall normal direction modulo 90 degrees, from z-up normals;
    0 when fewer than 20 normals are horizontal (within 20 degrees)."""
    h = np.abs(N_aligned[:, 2]) < math.sin(math.radians(20.0))
    if h.sum() < 20:
        return 0.0
    a = np.mod(4.0 * np.arctan2(N_aligned[h, 1], N_aligned[h, 0]), 2 * math.pi)
    bins = 180
    hist = np.bincount((a / (2 * math.pi) * bins).astype(np.int64) % bins, minlength=bins).astype(np.float64)
    smooth = sum(np.roll(hist, k) for k in range(-3, 4))
    ang = (int(np.argmax(smooth)) + 0.5) * 2 * math.pi / bins
    for tol in (20.0, 4.0):  # refine: circular mean of the normals within 5, then 1 degree(s) of the estimate
        near = np.abs(np.angle(np.exp(1j * (a - ang)))) < math.radians(tol)
        if near.any():
            ang = float(np.angle(np.exp(1j * a[near]).mean()))
    yaw = ang / 4.0
    return float((yaw + math.pi / 4) % (math.pi / 2) - math.pi / 4)


def _fit_wall_yaw(Pa: np.ndarray, Na: np.ndarray, yaw: float, cell: float) -> float:
    """``yaw`` refined by a least-squares line fit (seen from above) to the largest wall plane of either Manhattan
    direction; ``yaw`` itself when the fit has too few points or moves it by over 1 degree."""
    best = None
    for k in range(2):
        a = yaw + k * math.pi / 2
        d = np.array([math.cos(a), math.sin(a), 0.0])
        centers, mass = _planes(Pa, Na, d, cell)
        if len(mass) and (best is None or mass.max() > best[0]):
            best = (float(mass.max()), d, float(centers[int(np.argmax(mass))]), k)
    if best is None:
        return yaw
    _, d, c, k = best
    n = d[:2]
    near = (np.abs(Na[:, :2] @ n) > math.cos(math.radians(2.0))) & (np.abs(Pa[:, :2] @ n - c) < 1.5 * cell)
    if near.sum() < 10:
        return yaw
    c = float(np.median(Pa[near, :2] @ n))
    for band in (0.5, 0.2):  # wall points (normals within 2 degrees) near the wall line, then nearer the fitted line
        inl = (np.abs(Na[:, :2] @ n) > math.cos(math.radians(2.0))) & (np.abs(Pa[:, :2] @ n - c) < band * cell)
        if inl.sum() < 10:
            return yaw
        m = Pa[inl, :2].mean(0)
        n = np.linalg.svd(Pa[inl, :2] - m, full_matrices=False)[2][-1]
        n = n if n @ d[:2] >= 0 else -n
        c = float(m @ n)
    fit = math.atan2(n[1], n[0]) - k * math.pi / 2
    delta = (fit - yaw + math.pi / 4) % (math.pi / 2) - math.pi / 4
    return yaw + delta if abs(delta) < math.radians(1.0) else yaw


def gravity_transform(points, normals=None, poses=None, up="auto", *, seed: int = 0) -> np.ndarray:
    """``aligned_from_source``: float64 [4, 4] rigid transform to the z-up frame (module docstring).

    Args:
        points, normals, poses: the scene in its source frame (normals and poses optional, see :func:`estimate_up`).
        up: ``"auto"`` (detect), ``"none"`` (identity), an axis name ``x``/``-x``/``y``/``-y``/``z``/``-z``, three
            comma-separated numbers or a 3-vector: the up direction in the source frame. With a given up vector the
            Manhattan yaw and the floor shift are still applied.
        seed: sampling seed (deterministic).
    """
    u = parse_up(up)
    if isinstance(u, str) and u == "none":
        return np.eye(4)
    P, N, cell, rng = _prepare(points, normals, seed)
    if isinstance(u, str):
        u = _estimate_up(P, N, cell, rng, poses)
    R = rotation_to_z(u)
    Pa, Na = P @ R.T, N @ R.T
    R = _rot_z(-_fit_wall_yaw(Pa, Na, manhattan_yaw(Na), cell)) @ R
    z = np.array([0.0, 0.0, 1.0])
    Pa, Na = P @ R.T, N @ R.T
    h = _lowest_plane(Pa, Na, z, cell)
    if h is None:
        h = float(np.percentile(Pa[:, 2], 1))
    T = np.eye(4)
    T[:3, :3] = R
    T[2, 3] = -h
    return T


def transform_summary(T: np.ndarray) -> str:
    """``"up (ux, uy, uz) in the source frame, rotated by A degrees, floor shifted by h"``, for log lines."""
    T = np.asarray(T, dtype=np.float64)
    up = T[2, :3]
    ang = math.degrees(math.acos(max(-1.0, min(1.0, (float(np.trace(T[:3, :3])) - 1.0) / 2.0))))
    return (f"up ({up[0]:+.3f}, {up[1]:+.3f}, {up[2]:+.3f}) in the source frame, rotated by {ang:.1f} deg, "
            f"floor moved to z = 0 (shift {T[2, 3]:+.3f})")


def check_rigid(T, what: str = "transform") -> np.ndarray:
    """``T`` as float64 [4, 4] if it is a finite rigid transform (orthonormal rotation, det +1, last row 0 0 0 1);
    raises :class:`SASInputError` otherwise."""
    A = np.asarray(T, dtype=np.float64)
    if A.shape != (4, 4):
        raise SASInputError(None, f"{what} must be 4x4, got shape {list(A.shape)}")
    if not np.isfinite(A).all():
        raise SASInputError(None, f"{what} contains NaN or infinite values")
    R = A[:3, :3]
    if (not np.allclose(A[3], [0, 0, 0, 1], atol=1e-6) or not np.allclose(R @ R.T, np.eye(3), atol=1e-4)
            or np.linalg.det(R) < 0):
        raise SASInputError(None, f"{what} is not a rigid transform (rotation + translation)")
    return A


# -- scenes ----------------------------------------------------------------------------------------------------------
def frame_poses(frames: Sequence, max_loaded: int = 16) -> Optional[np.ndarray]:
    """Camera-to-world poses float64 [F, 4, 4] of a scene's frames, without reading images when the sequence knows
    them (``frames.poses``); otherwise from at most ``max_loaded`` evenly spaced frames. None without frames."""
    if frames is None or len(frames) == 0:
        return None
    known = getattr(frames, "poses", None)
    if known is not None:
        return np.asarray(known, dtype=np.float64)
    if isinstance(frames, list):
        return np.stack([np.asarray(f.pose, dtype=np.float64) for f in frames])
    pick = np.unique(np.linspace(0, len(frames) - 1, min(max_loaded, len(frames))).round().astype(int))
    return np.stack([np.asarray(frames[int(i)].pose, dtype=np.float64) for i in pick])


def transform_frames(frames: Sequence, T: np.ndarray):
    """The frames with every pose left-multiplied by ``T``: a list for a list, a lazy sequence (same ``frame_ids``,
    ``poses`` and ``digest`` carried over and updated) for a :class:`~sas_engine.scene.FrameSequence`."""
    from ..scene import FrameSequence

    T = np.asarray(T, dtype=np.float64)
    if frames is None:
        return frames
    if isinstance(frames, list):
        return [dataclasses.replace(f, pose=T @ np.asarray(f.pose, dtype=np.float64)) for f in frames]
    inner = frames

    def load(i: int):
        f = inner[i]
        return dataclasses.replace(f, pose=T @ np.asarray(f.pose, dtype=np.float64))

    ids = getattr(inner, "frame_ids", [str(i) for i in range(len(inner))])
    seq = FrameSequence(ids, load)
    known = getattr(inner, "poses", None)
    if known is not None:
        seq.poses = T[None] @ np.asarray(known, dtype=np.float64)
    digest = getattr(inner, "digest", None)
    if digest:
        seq.digest = hashlib.blake2b(str(digest).encode() + T.tobytes(), digest_size=8).hexdigest()
    return seq


def align_scene(scene, up="auto", *, seed: int = 0):
    """A copy of ``scene`` moved into the z-up frame: points, normals and every frame's pose transformed by
    :func:`gravity_transform`, the transform composed into ``world_from_source``. Point order, colours, labels,
    faces and all per-point data are unchanged; the input scene is not modified. ``up="none"`` returns it as is.

    Normals for the detection come from the scene, else from its faces, else from local PCA; poses from its frames.
    """
    u = parse_up(up)
    if isinstance(u, str) and u == "none":
        return scene
    normals = scene.normals
    if normals is None and scene.faces is not None and len(scene.faces):
        normals = face_normals_to_vertices(scene.points, scene.faces)
    poses = frame_poses(scene.frames) if isinstance(u, str) else None
    T = gravity_transform(scene.points, normals, poses, u, seed=seed)
    R, t = T[:3, :3], T[:3, 3]
    pts = (np.asarray(scene.points, dtype=np.float64) @ R.T + t).astype(np.float32)
    nrm = None if scene.normals is None else (np.asarray(scene.normals, dtype=np.float64) @ R.T).astype(np.float32)
    prev = getattr(scene, "world_from_source", None)
    total = T if prev is None else T @ np.asarray(prev, dtype=np.float64)
    return dataclasses.replace(scene, points=pts, normals=nrm, frames=transform_frames(scene.frames, T),
                               world_from_source=total)
