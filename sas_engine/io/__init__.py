"""Readers and writers for the formats users already have.

* :func:`load_scene` - any supported layout (ScanNet raw scans, the synthetic world, OpenScene's ScanNet /
  Matterport / nuScenes ``.pth`` files, nerfstudio ``transforms.json`` and plain RGB-D captures, bare PLYs);
* :func:`load_openscene_features` - OpenScene fused 2D features (incl. legacy and train-chunk files);
* :func:`read_ply` / :func:`write_ply` - PLY meshes and point clouds;
* :func:`write_scannet_submission`, :func:`export_labels_ply` - benchmark submissions and coloured label exports;
* :func:`palette` - the 256-entry label palette.
"""
from .colors import colorize, palette
from .detect import detect_layout, load_scene
from .openscene import load_openscene_features, read_openscene_pth
from .ply import read_ply, write_ply
from .writers import export_labels_ply, export_scene_labels, read_scannet_submission, write_scannet_submission

__all__ = [
    "load_scene", "detect_layout", "load_openscene_features", "read_openscene_pth", "read_ply", "write_ply",
    "write_scannet_submission", "read_scannet_submission", "export_labels_ply", "export_scene_labels",
    "palette", "colorize",
]
