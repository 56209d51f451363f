"""The embedded synthetic world: procedural ScanNet-format rooms with RGB-D frames and ground truth.

* :func:`generate_scene` - a furnished room (rectangular or L-shaped; bedroom, living room, office, kitchen,
  bathroom, mixed) as a dense mesh with per-vertex albedo, NYU40 labels, instances and segments.
* :func:`render_frames` - RGB-D frames along a camera loop (open3d CPU ray casting) with GT class/instance images.
* :func:`write_scannet` / :func:`write_openscene` - the ScanNet raw+exported and OpenScene preprocessed layouts.
* :func:`ensure_split` / :data:`SPLITS` - cached seeded ``tiny`` / ``train`` / ``val`` scene sets.
* :func:`render_object_views` - single-object images with exact masks (annotation-free capability construction).

open3d is imported only when rendering.
"""
from .config import GENERATOR_VERSION, ROOM_TYPES, SynthConfig, intrinsics_matrix
from .room import SynthRoom, generate_scene, scene_id_for
from .render import RenderedFrame, Renderer, camera_path, render_frames
from .splits import SPLITS, SplitSpec, default_root, ensure_split
from .views import class_nyu40, render_object_views
from .writers import write_openscene, write_scannet

__all__ = [
    "GENERATOR_VERSION", "ROOM_TYPES", "SynthConfig", "intrinsics_matrix", "SynthRoom", "generate_scene",
    "scene_id_for", "RenderedFrame", "Renderer", "camera_path", "render_frames", "SPLITS", "SplitSpec",
    "default_root", "ensure_split", "class_nyu40", "render_object_views", "write_openscene", "write_scannet",
]
