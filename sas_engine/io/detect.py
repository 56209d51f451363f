"""``load_scene``: one entry point that recognises every supported layout.

Detection order for a path:

1. a file ``*.pth`` -> OpenScene preprocessed scene (ScanNet / Matterport / nuScenes from the ``<ds>_3d`` folder);
2. a file ``*_vh_clean_2.ply`` -> its ScanNet scan folder; any other ``*.ply`` -> a bare mesh / point cloud
   (no frames); ``*.json`` -> an Open3D reconstruction-system config (it has ``path_dataset``), else a
   nerfstudio-style ``transforms.json``;
3. a folder with ``<id>_vh_clean_2.ply`` or the synthetic marker ``sas_synthetic.json`` -> ScanNet raw scan folder
   (preset ``synthetic`` when the marker exists);
4. a folder with ``transforms.json`` -> nerfstudio-style capture;
5. a folder with ``color/`` and ``poses/`` (or ``pose/``) -> plain custom capture;
6. a folder with ``depth/``, ``color/`` (or ``rgb/``, ``image/``) and a ``.log`` trajectory (``scene/trajectory.log``)
   -> Open3D reconstruction-system capture.

The custom layouts (4-6) are described in :mod:`sas_engine.io.custom` and ``docs/captures.md``.

Gravity alignment (``up``): after the layout's loader, the scene is moved into the engine's z-up frame (floor at
z = 0) by :func:`sas_engine.geometry.gravity.align_scene`, which records the transform in
``Scene.world_from_source``. By default (:data:`DEFAULT_UP`) custom captures (``transforms``, ``plain``,
``open3d``) and bare ``.ply`` files are aligned automatically (``"auto"``: the mean camera up vector snapped to
the floor's normal, or the planes alone without cameras), because their world frame is usually the first camera's
(y down); ScanNet scan folders and OpenScene ``.pth`` files are z up by convention and are kept as they are
(``"none"``). An explicit ``up`` (``--up`` on the command line) overrides the default for any layout.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from ..config import get_preset
from ..errors import SASInputError
from ..scene import Scene
from .custom import custom_layout, load_custom
from .openscene import load_openscene_pth
from .ply import read_ply
from .scannet import MESH_SUFFIX, is_scannet_folder, load_scannet_folder, mesh_arrays

log = logging.getLogger(__name__)

DEFAULT_UP = {"scannet": "none", "openscene": "none", "transforms": "auto", "plain": "auto", "open3d": "auto",
              "ply": "auto"}
"""Default ``up`` per layout (a layout not listed gets ``"auto"``)."""


def detect_layout(path: str | Path) -> str:
    """Name of the layout at ``path``: ``scannet``, ``openscene``, ``ply``, ``transforms``, ``plain`` or
    ``open3d``."""
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
        layout = custom_layout(p)
        if layout:
            return layout
        raise SASInputError(p, "unsupported scene file (expected .pth, .ply, transforms.json or an Open3D config)")
    if is_scannet_folder(p):
        return "scannet"
    layout = custom_layout(p)
    if layout:
        return layout
    raise SASInputError(p, "unrecognised scene folder: expected a ScanNet scan folder (<id>_vh_clean_2.ply), "
                           "a capture with transforms.json, color/ + poses/ + intrinsics.txt, or an Open3D "
                           "reconstruction-system folder (color/ or image/, depth/, scene/trajectory.log); "
                           "see docs/captures.md")


def load_scene(path: str | Path, dataset: Optional[str] = None, *, frame_stride: Optional[int] = None,
               image_size: Optional[tuple[int, int]] = None, trust_pickle: Optional[bool] = None,
               progress: bool = True, up: Optional[str] = None) -> Scene:
    """Load a scene from any supported layout (see the module docstring).

    Args:
        path: scene folder or file.
        dataset: dataset preset name (``scannet``, ``matterport``, ``nuscenes``, ``synthetic``); detected when None.
        frame_stride: use every n-th frame (default: the preset's for raw ScanNet sequences, else 1).
        image_size: working (width, height) frames are resized to (default: the preset's; intrinsics rescaled).
        trust_pickle: allow full unpickling of trusted legacy torch files (default: ``$SAS_TRUST_PICKLE == "1"``).
        progress: show progress bars of slow loads (the one-time reconstruction of a capture without a mesh).
        up: gravity alignment: ``"auto"``, ``"none"``, ``x``/``-x``/``y``/``-y``/``z``/``-z`` or ``"a,b,c"`` (the up
            direction in the files' frame); None = the layout's default (:data:`DEFAULT_UP`, module docstring).
    Returns:
        a validated :class:`Scene` whose frames load lazily; in the z-up frame when aligned, with the transform
        from the files' frame in ``scene.world_from_source``.
    Raises:
        SASInputError: missing or malformed input, naming the file.
    """
    if dataset is not None:
        get_preset(dataset)
    if up is not None:
        from ..geometry.gravity import parse_up

        parse_up(up)  # a bad value fails before any file is read
    if image_size is not None:
        image_size = tuple(int(v) for v in image_size)
        if len(image_size) != 2 or min(image_size) < 1:
            raise SASInputError(None, f"image size must be (width, height) > 0, got {image_size}")
    p = Path(path)
    layout = detect_layout(p)
    scene = _load_layout(p, layout, dataset, trust_pickle=trust_pickle, progress=progress, frame_stride=frame_stride,
                         image_size=image_size)
    how = up if up is not None else DEFAULT_UP.get(layout, "auto")
    if str(how).strip().lower() == "none":
        return scene
    from ..geometry.gravity import align_scene, transform_summary

    try:
        aligned = align_scene(scene, how)
    except SASInputError as e:
        if up is not None:
            raise SASInputError(scene.source or None, f"gravity alignment (--up {up}): {e.problem}") from e
        log.warning("%s: no up direction found (%s); keeping the files' frame (pass --up to set it)",
                    scene.source or scene.scene_id, e.problem)
        return scene
    log.info("%s: gravity alignment (up=%s): %s", scene.source or scene.scene_id, how,
             transform_summary(aligned.world_from_source))
    return aligned


def _load_layout(p: Path, layout: str, dataset: Optional[str], *, trust_pickle: Optional[bool], progress: bool,
                 **kw) -> Scene:
    """The scene as its layout's loader reads it, in the files' own frame."""
    if layout == "scannet":
        return load_scannet_folder(p.parent if p.is_file() else p, dataset, **kw)
    if layout == "openscene":
        return load_openscene_pth(p, dataset, trust_pickle=trust_pickle, **kw)
    if layout in ("transforms", "plain", "open3d"):
        return load_custom(p, dataset, progress=progress, **kw)
    preset = get_preset(dataset or "scannet")
    m = mesh_arrays(read_ply(p), p)
    if len(m["points"]) == 0:
        raise SASInputError(p, "scene is empty (0 vertices)")
    faces = m["faces"] if m["faces"] is not None and len(m["faces"]) else None
    return Scene(scene_id=p.stem, points=m["points"], colors=m["colors"], normals=m["normals"], faces=faces,
                 label_set=preset.label_set, dataset=preset.name, source=str(p))
