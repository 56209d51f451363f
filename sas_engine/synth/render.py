"""RGB-D rendering of synthetic rooms with open3d's CPU ray casting (headless).

Per pixel one ray is cast through the pixel centre (ScanNet convention: pixel (u, v) sits at image coordinates
(u, v), ``u = x fx / z + cx``). The hit gives the depth (z in the camera frame), the triangle and so the primitive,
object, class and material. Colour = per-pixel procedural albedo at the hit point (finer than the mesh colour) x
Lambert shading from the room's point lights (soft shadows by occlusion rays) + ambient term, then per-frame
exposure, vignetting and Gaussian noise. Ground-truth class and instance images come from the hit objects.

Camera trajectory (:func:`camera_path`): a loop at ``cfg.wall_margin`` from the walls, heights in
``cfg.camera_height``, looking inward (towards the room's centroid, swinging left and right) with some pitch and a
little roll, pushed out of furniture. Poses are camera-to-world, OpenCV axes (x right, y down, z forward), z-up world.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..labels import IGNORE, nyu40_to_scannet20
from .config import SynthConfig, intrinsics_matrix
from .room import SynthRoom


_FALLOFF = 2.5
"""Softened inverse-square falloff: intensity ~ (4 + c) / (d^2 + c), 1 at 2 m, at most 2.6 next to the lamp."""


@dataclass
class RenderedFrame:
    """One rendered view.

    Attributes:
        color: uint8 [H, W, 3] RGB. depth: float32 [H, W] metres (0 = no hit).
        pose: float64 [4, 4] camera-to-world. intrinsics: float64 [3, 3].
        labels: uint8 [H, W] ScanNet-20 class (255 none). instances: int32 [H, W] object index (-1 none).
    """

    color: np.ndarray
    depth: np.ndarray
    pose: np.ndarray
    intrinsics: np.ndarray
    labels: np.ndarray
    instances: np.ndarray


class Renderer:
    """Ray-casting renderer of one room (the acceleration structure is built once)."""

    def __init__(self, room: SynthRoom, shadows: bool = True):
        import open3d as o3d

        self.room = room
        self.shadows = shadows
        self._o3d = o3d
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(room.vertices.astype(np.float32)),
                                 o3d.core.Tensor(room.faces.astype(np.uint32)))
        self.obj_label = nyu40_to_scannet20(room.object_nyu40)
        self._rays_key = None
        self._d_cam = None
        self.prim_rot32 = room.prim_rot.astype(np.float32)
        self.prim_center32 = room.prim_center.astype(np.float32)

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> dict:
        """Cast rays (float [n, 3] each); returns t_hit, primitive_ids, primitive_normals as numpy arrays."""
        rays = np.concatenate([origins, dirs], 1).astype(np.float32)
        r = self.scene.cast_rays(self._o3d.core.Tensor(rays))
        return {k: r[k].numpy() for k in ("t_hit", "primitive_ids", "primitive_normals")}

    def render(self, pose: np.ndarray, K: np.ndarray, size: tuple[int, int], rng: Optional[np.random.Generator] = None,
               cfg: Optional[SynthConfig] = None, background: Optional[tuple] = None) -> RenderedFrame:
        """Render one view. ``rng`` drives exposure and noise (none when None); ``background`` colours misses."""
        cfg = cfg or self.room.cfg
        w, h = size
        key = (w, h, tuple(np.round(K.ravel(), 6)))
        if self._rays_key != key:
            vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
            self._d_cam = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones_like(uu)],
                                   -1).reshape(-1, 3).astype(np.float32)
            self._rays_key = key
        R, t = pose[:3, :3].astype(np.float32), pose[:3, 3].astype(np.float32)
        dirs = self._d_cam @ R.T
        color, depth, labels, obj = self.render_rays(np.broadcast_to(t, dirs.shape), dirs, w, rng, cfg, background)
        return RenderedFrame(color.reshape(h, w, 3), depth.reshape(h, w), np.array(pose, np.float64),
                             np.array(K, np.float64), labels.reshape(h, w), obj.reshape(h, w))

    def render_rays(self, origins: np.ndarray, dirs: np.ndarray, width: int, rng=None,
                    cfg: Optional[SynthConfig] = None, background: Optional[tuple] = None):
        """Shade arbitrary rays (row-major image of ``width`` columns); returns flat (color uint8 [n, 3], ray
        parameter float32 [n] (0 = miss), labels uint8 [n], object index int32 [n])."""
        cfg = cfg or self.room.cfg
        origins = np.asarray(origins, np.float32)
        dirs = np.asarray(dirs, np.float32)
        hit = self.cast(origins, dirs)
        th = hit["t_hit"]
        ok = np.isfinite(th)
        tri = np.where(ok, hit["primitive_ids"], 0).astype(np.int64)
        prim = self.room.face_prim[tri]
        obj = np.where(ok, self.room.prim_object[prim], -1)
        depth = np.where(ok, th, 0.0).astype(np.float32)
        labels = np.full(len(th), IGNORE, np.uint8)
        labels[ok] = self.obj_label[obj[ok]]
        color = self._shade(origins, dirs, hit, ok, prim, rng, cfg, background, width)
        return color, depth, labels, obj.astype(np.int32)

    def _shade(self, origin, dirs, hit, ok, prim, rng, cfg: SynthConfig, background, width: int) -> np.ndarray:
        room = self.room
        n_pix = len(dirs)
        out = np.zeros((n_pix, 3), np.float32)
        if background is not None:
            out[:] = np.asarray(background, np.float32)
        idx = np.nonzero(ok)[0]
        if len(idx) == 0:
            return out_to_uint8(out, rng, cfg, width)
        p = prim[idx]
        X = origin[idx] + hit["t_hit"][idx, None] * dirs[idx]
        Rp = self.prim_rot32[p]
        local = np.einsum("nji,nj->ni", Rp, X - self.prim_center32[p])
        nrm = hit["primitive_normals"][idx]
        flip = np.einsum("ij,ij->i", nrm, dirs[idx]) > 0
        nrm[flip] *= -1
        ln = np.einsum("nji,nj->ni", Rp, nrm)
        nax = np.argmax(np.abs(ln), 1)
        mat = room.prim_material[p]
        alb = room.materials.albedo(mat, local, room.prim_long[p], nax)
        lights = room.layout.lights
        shade = np.full(len(idx), cfg.ambient, np.float32)
        power = cfg.light_power / math.sqrt(max(1, len(lights)))
        Xo = X + nrm * 0.01
        for lx, ly, lz, lp in lights:
            L = np.array([lx, ly, lz], np.float32) - X
            d2 = np.einsum("ij,ij->i", L, L)
            ndl = np.maximum(0.0, np.einsum("ij,ij->i", nrm, L) / np.sqrt(d2))
            c = np.float32(power * lp * (4.0 + _FALLOFF)) * ndl / (d2 + _FALLOFF)
            if self.shadows:
                lit = ndl > 0
                occ = np.zeros(len(idx), bool)
                if lit.any():
                    rays = np.concatenate([Xo[lit], L[lit]], 1).astype(np.float32)
                    r = self.scene.test_occlusions(self._o3d.core.Tensor(rays), tnear=0.0, tfar=0.999)
                    occ[lit] = r.numpy().astype(bool)
                c = np.where(occ, c * 0.2, c)
            shade += c
        emis = room.materials.emissive[mat]
        col = alb * np.where(emis, 1.0, shade)[:, None].astype(np.float32)
        out[idx] = col
        if rng is not None:
            out *= np.float32(1.0 + rng.normal(0.0, cfg.exposure_jitter))
        return out_to_uint8(out, rng, cfg, width)


def out_to_uint8(out: np.ndarray, rng, cfg: SynthConfig, width: int) -> np.ndarray:
    """Vignetting + Gaussian noise (when ``rng``) and quantisation of linear colours [n, 3] to uint8."""
    if rng is not None:
        h = len(out) // width
        yy, xx = np.mgrid[0:h, 0:width]
        r2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        out = out * (1.0 - 0.12 * r2.reshape(-1, 1)).astype(np.float32)
        out = out + rng.normal(0.0, cfg.noise_std / 255.0, out.shape).astype(np.float32)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def render_topdown(room: SynthRoom, px_per_m: float = 48.0, cut_below_ceiling: float = 0.1) -> RenderedFrame:
    """Orthographic view from above (ceiling and ceiling lamps cut away); ``depth`` holds heights above the floor."""
    plan = room.layout.plan
    w, h = int(np.ceil(plan.width * px_per_m)), int(np.ceil(plan.depth * px_per_m))
    yy, xx = np.mgrid[0:h, 0:w]
    z0 = plan.height - cut_below_ceiling
    origins = np.stack([(xx + 0.5) / px_per_m, plan.depth - (yy + 0.5) / px_per_m, np.full(xx.shape, z0)],
                       -1).reshape(-1, 3)
    dirs = np.broadcast_to(np.array([0.0, 0.0, -1.0]), origins.shape)
    r = Renderer(room)
    color, t, labels, obj = r.render_rays(origins, dirs, w, None, room.cfg, background=(1.0, 1.0, 1.0))
    height = np.where(t > 0, z0 - t, 0.0).astype(np.float32)
    return RenderedFrame(color.reshape(h, w, 3), height.reshape(h, w), np.eye(4), np.eye(3),
                         labels.reshape(h, w), obj.reshape(h, w))


def look_at_pose(eye, yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """Camera-to-world 4x4 (OpenCV axes) at ``eye`` looking along yaw (about z) and pitch (up positive)."""
    f = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    if roll:
        c, s = math.cos(roll), math.sin(roll)
        r, d = c * r + s * d, -s * r + c * d
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = r, d, f, eye
    return pose


def look_at_target(eye, target, roll: float = 0.0) -> np.ndarray:
    """Camera-to-world 4x4 at ``eye`` looking at ``target``."""
    v = np.asarray(target, float) - np.asarray(eye, float)
    yaw = math.atan2(v[1], v[0])
    pitch = math.atan2(v[2], math.hypot(v[0], v[1]))
    return look_at_pose(np.asarray(eye, float), yaw, pitch, roll)


def object_boxes(room: SynthRoom) -> np.ndarray:
    """float [O, 6] axis-aligned bounds (x0, y0, z0, x1, y1, z1) of the furniture (not walls/floor/ceiling)."""
    out = []
    for o in room.layout.objects:
        if o.kind in ("wall", "floor", "ceiling"):
            continue
        c = np.concatenate([p.corners() for p in o.prims])
        out.append(np.concatenate([c.min(0), c.max(0)]))
    return np.array(out).reshape(-1, 6)


def camera_path(room: SynthRoom, num_frames: int, rng: np.random.Generator, cfg: Optional[SynthConfig] = None
                ) -> list[np.ndarray]:
    """Camera-to-world poses of a loop around the room looking inward (see module docstring)."""
    cfg = cfg or room.cfg
    plan = room.layout.plan
    poly = plan.polygon
    m = min(cfg.wall_margin, 0.3 * min(plan.width, plan.depth))
    if plan.notch is not None:
        nx0, ny0, nx1, ny1 = plan.notch
        m = min(m, 0.3 * min(plan.width - (nx1 - nx0), plan.depth - (ny1 - ny0)))
    nv = len(poly)
    normals = [w.normal for w in plan.walls]
    loop = np.array([poly[i] + m * (normals[i - 1] + normals[i]) for i in range(nv)])
    seg = np.linalg.norm(np.roll(loop, -1, 0) - loop, axis=1)
    perim = float(seg.sum())
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    # polygon centroid
    x, y = poly[:, 0], poly[:, 1]
    cr = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cr.sum() / 2
    centroid = np.array([((x + np.roll(x, -1)) * cr).sum(), ((y + np.roll(y, -1)) * cr).sum()]) / (6 * area)
    boxes = object_boxes(room)
    phase, ph_h, ph_p, ph_s = rng.uniform(0, 1, 4)
    h_lo, h_hi = cfg.camera_height
    p_lo, p_hi = np.radians(cfg.pitch_deg)
    poses = []
    for i in range(num_frames):
        s = ((i / num_frames + phase) % 1.0) * perim
        k = int(np.searchsorted(cum, s, side="right") - 1) % nv
        a = (s - cum[k]) / max(seg[k], 1e-9)
        pos = loop[k] + a * (loop[(k + 1) % nv] - loop[k]) + rng.normal(0, 0.08, 2)
        z = h_lo + (h_hi - h_lo) * (0.5 + 0.5 * math.sin(2 * math.pi * (2 * s / perim + ph_h)))
        for _ in range(40):  # step towards the centroid until out of furniture
            inside = ((boxes[:, 0] - 0.15 < pos[0]) & (pos[0] < boxes[:, 3] + 0.15) & (boxes[:, 1] - 0.15 < pos[1]) &
                      (pos[1] < boxes[:, 4] + 0.15) & (boxes[:, 2] - 0.15 < z) & (z < boxes[:, 5] + 0.15))
            if not inside.any() and plan.contains_point(pos, 0.2):
                break
            step = centroid - pos
            pos = pos + step / max(np.linalg.norm(step), 1e-9) * 0.1
        wall_n = normals[(k + 1) % nv] if a > 0.5 else normals[k]
        to_c = centroid - pos
        to_c = to_c / max(np.linalg.norm(to_c), 1e-9)
        v = wall_n + 1.2 * to_c
        yaw = math.atan2(v[1], v[0]) + math.radians(cfg.yaw_swing_deg) * math.sin(2 * math.pi * (5 * s / perim + ph_s))
        pitch = p_lo + (p_hi - p_lo) * (0.5 + 0.5 * math.sin(2 * math.pi * (3 * s / perim + ph_p)))
        poses.append(look_at_pose(np.array([pos[0], pos[1], z]), yaw, pitch, float(rng.normal(0, 0.03))))
    return poses


def render_frames(room: SynthRoom, num_frames: Optional[int] = None, cfg: Optional[SynthConfig] = None,
                  progress: bool = False, shadows: bool = True) -> list[RenderedFrame]:
    """Render the room's camera loop (``cfg.num_frames`` views at ``cfg.image_size``), deterministic by seed."""
    cfg = cfg or room.cfg
    n = num_frames if num_frames is not None else cfg.num_frames
    rng = np.random.default_rng([room.seed, 104729])
    poses = camera_path(room, n, rng, cfg)
    K = intrinsics_matrix(cfg)
    r = Renderer(room, shadows=shadows)
    it = poses
    if progress:
        from tqdm import tqdm

        it = tqdm(poses, desc=f"render {room.scene_id}", unit="frame", leave=False)
    return [r.render(p, K, cfg.image_size, rng, cfg) for p in it]
