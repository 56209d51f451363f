"""SAS engine: Segment Any 3D Scene with Integrated 2D Priors.

Public surface (heavy parts are imported lazily by their own modules):
    * :class:`Scene`, :class:`Frame` - the in-memory scene model (:mod:`sas_engine.scene`);
    * :func:`sas_engine.io.load_scene` - loaders for ScanNet, OpenScene, Matterport, nuScenes and custom RGB-D;
    * :class:`ArtefactStore` - versioned, atomic per-scene artefact cache (:mod:`sas_engine.store`);
    * :data:`PRESETS` / :func:`get_preset` - per-dataset constants (:mod:`sas_engine.config`).
"""
from .config import PRESETS, DatasetPreset, get_preset
from .errors import SASError, SASInputError, StaleArtefactError
from .scene import Frame, FrameSequence, Scene
from .store import ArtefactStore

__version__ = "0.1.0"
__all__ = ["Scene", "Frame", "FrameSequence", "ArtefactStore", "PRESETS", "DatasetPreset", "get_preset",
           "SASError", "SASInputError", "StaleArtefactError"]
