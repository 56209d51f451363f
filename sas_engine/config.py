"""Dataclass configs and per-dataset presets.

A :class:`DatasetPreset` carries every constant that differs between datasets (fusion occlusion threshold, border cut,
voxel size, superpoint parameters, frame stride...). Paper and release values are documented where they differ;
the defaults follow the authors' released code unless a field's docstring says otherwise.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePath

from .errors import SASInputError


@dataclass(frozen=True)
class DatasetPreset:
    """Constants of one dataset family."""

    name: str
    """Registry name: ``scannet``, ``matterport``, ``nuscenes`` or ``synthetic``."""
    label_set: str
    """Name of the evaluation label set in :data:`sas_engine.labels.LABEL_SETS`."""
    vocabulary: str
    """Label set used as the capability-construction vocabulary."""
    image_size: tuple[int, int] = (320, 240)
    """Working image size (width, height); images are resized to it and intrinsics rescaled."""
    frame_stride: int = 20
    """Use every n-th frame of a raw RGB-D sequence (ScanNet: 20)."""
    depth_scale: float = 1000.0
    """Raw depth units per metre (ScanNet 1000, Matterport 4000)."""
    fusion_sigma: float = 0.25
    """Occlusion test |depth - z| <= sigma * depth. OpenScene code: 0.25 ScanNet, 0.02 Matterport; paper: 0.2 / 0.02."""
    cut_bound: int = 10
    """Pixels cut at each image border before a projection counts (OpenScene: 10; nuScenes 5)."""
    use_depth: bool = True
    """False for datasets without depth (nuScenes): only z > 0 is required."""
    voxel_size: float = 0.02
    """Voxel edge in metres for the 3D network (2 cm indoor, 5 cm outdoor)."""
    seg_k_thresh: float = 0.01
    """Felzenszwalb kThresh of the mesh superpoint segmentation (ScanNet official 0.01)."""
    seg_min_verts: int = 20
    """Minimum superpoint size (ScanNet official 20; SAS release 60)."""
    has_mesh: bool = True
    """False for lidar datasets: each point is its own superpoint."""
    tsdf_voxel: float = 0.02
    """Voxel size in metres for TSDF reconstruction of custom RGB-D captures without a mesh."""
    prompt_template: str = "a {} in a scene"
    """Template used to turn class names into text queries at inference."""


PRESETS: dict[str, DatasetPreset] = {
    "scannet": DatasetPreset(name="scannet", label_set="scannet20", vocabulary="scannet20"),
    "matterport": DatasetPreset(
        name="matterport", label_set="matterport21", vocabulary="matterport21", image_size=(640, 512), frame_stride=1,
        depth_scale=4000.0, fusion_sigma=0.02),
    "nuscenes": DatasetPreset(
        name="nuscenes", label_set="nuscenes16", vocabulary="nuscenes16", image_size=(800, 450), frame_stride=1,
        use_depth=False, cut_bound=5, voxel_size=0.05, has_mesh=False),
    # The synthetic world's depth is rendered exactly, so its occlusion test can be tight: OpenScene's 0.25 lets points
    # up to 25% of the depth behind a surface through (e.g. wall points 0.5 m behind a cabinet seen from 2 m).
    "synthetic": DatasetPreset(name="synthetic", label_set="scannet20", vocabulary="scannet20", frame_stride=1,
                               fusion_sigma=0.05),
}
"""Plain registry of dataset presets."""


def get_preset(name: str) -> DatasetPreset:
    """Look up a dataset preset; an unknown name raises :class:`SASInputError` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise SASInputError(None, f"unknown dataset preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def _plain(obj, where: str):
    """``obj`` with the few non-JSON values a config may hold converted, exactly as the artefact hashes have always
    written them: paths -> ``str(path)``, plain enum members -> ``str(member)`` (``"Class.NAME"``; enums mixing in
    ``str`` / ``int`` are JSON strings / numbers already), tuples -> lists, dataclasses -> their field dicts.

    Anything else (numpy scalars and arrays, tensors, devices, arbitrary objects) raises :class:`TypeError` naming
    the key: a config is never hashed through a silently stringified value."""
    if obj is None or isinstance(obj, (str, int, float)):  # bool is an int; subclasses are written as json does
        return obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k is not None and not isinstance(k, (str, int, float)):
                raise TypeError(f"config key {k!r} at {where or '<root>'} is a {type(k).__name__}: "
                                "config keys must be strings or numbers")
            out[k] = _plain(v, f"{where}.{k}" if where else str(k))
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj), where)
    raise TypeError(f"config value at key {where or '<root>'} is a {type(obj).__module__}.{type(obj).__name__}, "
                    "which a config cannot hold: convert it to numbers, strings, paths, lists or dicts first")


def config_dict(cfg) -> dict:
    """A JSON-able dict of a dataclass config (nested dataclasses and tuples -> lists, paths -> strings).

    Raises:
        TypeError: a value JSON cannot represent (see :func:`_plain`), naming its key.
    """
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = dataclasses.asdict(cfg)
    return json.loads(json.dumps(_plain(cfg, ""), sort_keys=True))


def config_hash(*parts) -> str:
    """Stable 16-hex-digit hash of configs / input descriptions (dataclasses, dicts, strings, numbers).

    The artefact store keys cached results by it: the bytes hashed for a given config must never change.

    Raises:
        TypeError: a value JSON cannot represent, naming its key (:func:`config_dict`).
    """
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(config_dict(p), sort_keys=True).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def field_docs(cls) -> dict[str, str]:
    """Field docstrings of a dataclass (the string literal right after each field), for ``--help`` texts."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr) \
                and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str):
            docs[a.target.id] = " ".join(b.value.value.split())
    return docs
