"""Configuration of the synthetic world: mesh density, camera, rendering and image formation."""
from __future__ import annotations

from dataclasses import dataclass

GENERATOR_VERSION = 2
"""Bump when generated scenes change for the same seed and config; cached scenes are then regenerated."""

ROOM_TYPES = ("bedroom", "living_room", "office", "kitchen", "bathroom", "mixed")
"""Room types the generator knows (``mixed`` is a studio flat combining several functions)."""

#: ScanNet depth-camera intrinsics (640x480: fx=fy=577.870605, cx=319.5, cy=239.5) scaled to 320x240.
SCANNET_DEPTH_FX = 577.870605


@dataclass(frozen=True)
class SynthConfig:
    """How a synthetic scene is meshed and rendered."""

    target_vertices: int = 80_000
    """Desired vertex count of the mesh; the grid spacing is chosen to land near it (within ``spacing_range``)."""
    spacing_range: tuple[float, float] = (0.02, 0.08)
    """Smallest and largest tessellation grid spacing in metres (ScanNet meshes: about 2-5 cm between vertices)."""
    segments: str = "segmentator"
    """What ``segs.json`` holds: ``segmentator`` (ScanNet's Segmentator on the welded mesh, split by object) or
    ``patches`` (square patches of ``segment_size`` per primitive face, generator version 1)."""
    segment_size: float = 0.4
    """Edge length in metres of the ``patches`` segments; one patch never spans two primitives."""
    num_frames: int = 60
    """Frames rendered along the camera loop."""
    image_size: tuple[int, int] = (320, 240)
    """(width, height) of rendered images."""
    fx: float = SCANNET_DEPTH_FX * 0.5
    """Focal length in pixels of a 320-pixel-wide image (ScanNet depth camera scaled to 320x240); scaled with the width."""
    camera_height: tuple[float, float] = (1.3, 1.7)
    """Range of camera heights above the floor in metres."""
    pitch_deg: tuple[float, float] = (-32.0, -5.0)
    """Range of camera pitch in degrees (negative looks down)."""
    yaw_swing_deg: float = 40.0
    """Amplitude of the camera's left-right swing around the inward direction, degrees."""
    wall_margin: float = 0.85
    """Distance of the camera loop from the walls in metres."""
    ambient: float = 0.42
    """Ambient light term of the Lambert shading (fraction of albedo)."""
    light_power: float = 0.75
    """Intensity of each point light at 2 m distance (fraction of albedo)."""
    exposure_jitter: float = 0.08
    """Relative per-frame exposure variation (auto-exposure of a handheld capture)."""
    noise_std: float = 2.5
    """Standard deviation of Gaussian image noise, in 8-bit grey levels."""
    jpeg_quality: int = 92
    """JPEG quality of the written colour frames."""


def intrinsics_matrix(cfg: SynthConfig):
    """3x3 float64 pinhole matrix for ``cfg.image_size`` (pixel centres at integer coordinates, ScanNet convention)."""
    import numpy as np

    w, h = cfg.image_size
    s = w / 320.0
    return np.array([[cfg.fx * s, 0.0, (w - 1) / 2.0], [0.0, cfg.fx * s, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
