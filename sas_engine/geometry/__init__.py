"""Geometric core: multi-view feature fusion, superpoints and voxelisation.

* :func:`fuse_features` / :func:`fuse_votes` lift per-pixel 2D features / labels onto 3D points (OpenScene's
  projection and occlusion test, streamed over frames, same code on CPU and CUDA);
* :func:`compute_superpoints` is ScanNet's Segmentator (Felzenszwalb-Huttenlocher on vertex normals);
  :func:`superpoints_for_scene` picks official / computed / per-point superpoints for a scene;
* :func:`voxelize` quantises points for the sparse 3D network with OpenScene's semantics and augmentation.
"""
from .fusion import FusionConfig, FusionResult, fuse_features, fuse_votes, one_hot_source, project_frame
from .superpoints import (SuperpointConfig, compact_ids, compute_superpoints, compute_superpoints_knn,
                          superpoints_for_scene)
from .voxelize import AugmentConfig, Voxelized, voxelize

__all__ = [
    "FusionConfig", "FusionResult", "fuse_features", "fuse_votes", "one_hot_source", "project_frame",
    "SuperpointConfig", "compact_ids", "compute_superpoints", "compute_superpoints_knn", "superpoints_for_scene",
    "AugmentConfig", "Voxelized", "voxelize",
]
