"""``load_scene``: one entry point that recognises every supported layout.

Detection order for a path:

1. a file ``*.pth`` -> OpenScene preprocessed scene (ScanNet / Matterport / nuScenes from the ``<ds>_3d`` folder);
2. a file ``*_vh_clean_2.ply`` -> its ScanNet scan folder; any other ``*.ply`` -> a bare mesh / point cloud
   (no frames); ``*.json`` -> a nerfstudio-style ``transforms.json``;
3. a folder with ``<id>_vh_clean_2.ply`` or the synthetic marker ``sas_synthetic.json`` -> ScanNet raw scan folder
   (preset ``synthetic`` when the marker exists);
4. a folder with ``transforms.json`` -> nerfstudio-style capture;
5. a folder with ``color/`` and ``poses/`` (or ``pose/``) -> plain custom capture.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..config import get_preset
from ..errors import SASInputError
from ..scene import Scene
from .custom import is_plain_capture, is_transforms_capture, load_custom
from .openscene import load_openscene_pth
from .ply import read_ply
from .scannet import MESH_SUFFIX, is_scannet_folder, load_scannet_folder, mesh_arrays


def detect_layout(path: str | Path) -> str:
    """Name of the layout at ``path``: ``scannet``, ``openscene``, ``ply``, ``transforms`` or ``plain``."""
    p = Path(path)
    if not p.exists():
        raise SASInputError(p, "scene path not found")
    if p.is_file():
        if p.suffix == ".pth":
            return "openscene"
        if p.name.endswith(MESH_SUFFIX) and is_scannet_folder(p.parent):
            return "scannet"
        if p.suffix == ".ply":
            return "ply"
        if p.suffix == ".pt":
            raise SASInputError(p, "this is a fused-feature file, not a scene; load it with "
                                   "sas_engine.io.load_openscene_features")
        if is_transforms_capture(p):
            return "transforms"
        raise SASInputError(p, "unsupported scene file (expected .pth, .ply or transforms.json)")
    if is_scannet_folder(p):
        return "scannet"
    if is_transforms_capture(p):
        return "transforms"
    if is_plain_capture(p):
        return "plain"
    raise SASInputError(p, "unrecognised scene folder: expected a ScanNet scan folder (<id>_vh_clean_2.ply), "
                           "a capture with transforms.json, or color/ + poses/ + intrinsics.txt")


def load_scene(path: str | Path, dataset: Optional[str] = None, *, frame_stride: Optional[int] = None,
               image_size: Optional[tuple[int, int]] = None, trust_pickle: Optional[bool] = None) -> Scene:
    """Load a scene from any supported layout (see the module docstring).

    Args:
        path: scene folder or file.
        dataset: dataset preset name (``scannet``, ``matterport``, ``nuscenes``, ``synthetic``); detected when None.
        frame_stride: use every n-th frame (default: the preset's for raw ScanNet sequences, else 1).
        image_size: working (width, height) frames are resized to (default: the preset's; intrinsics rescaled).
        trust_pickle: allow full unpickling of trusted legacy torch files (default: ``$SAS_TRUST_PICKLE == "1"``).
    Returns:
        a validated :class:`Scene` whose frames load lazily.
    Raises:
        SASInputError: missing or malformed input, naming the file.
    """
    if dataset is not None:
        get_preset(dataset)
    if image_size is not None:
        image_size = tuple(int(v) for v in image_size)
        if len(image_size) != 2 or min(image_size) < 1:
            raise SASInputError(None, f"image size must be (width, height) > 0, got {image_size}")
    p = Path(path)
    layout = detect_layout(p)
    kw = dict(frame_stride=frame_stride, image_size=image_size)
    if layout == "scannet":
        return load_scannet_folder(p.parent if p.is_file() else p, dataset, **kw)
    if layout == "openscene":
        return load_openscene_pth(p, dataset, trust_pickle=trust_pickle, **kw)
    if layout in ("transforms", "plain"):
        return load_custom(p, dataset, **kw)
    preset = get_preset(dataset or "scannet")
    m = mesh_arrays(read_ply(p), p)
    if len(m["points"]) == 0:
        raise SASInputError(p, "scene is empty (0 vertices)")
    faces = m["faces"] if m["faces"] is not None and len(m["faces"]) else None
    return Scene(scene_id=p.stem, points=m["points"], colors=m["colors"], normals=m["normals"], faces=faces,
                 label_set=preset.label_set, dataset=preset.name, source=str(p))
