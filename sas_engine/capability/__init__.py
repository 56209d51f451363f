"""Annotation-free Model Capability Construction and capability-guided fusion (paper 3.2-3.3).

* synthesizers (:class:`SyntheticSynthesizer`, :class:`~sas_engine.capability.sd.StableDiffusionSynthesizer`) turn class
  names into :class:`SynthImage` records (image, pseudo mask, provenance);
* :func:`score_capabilities` runs the teachers on them and returns a :class:`CapabilityTable` [teachers x classes];
* :func:`capability_fuse` weighs per-teacher 3D features per point by those capabilities; :func:`add_fuse` and
  :func:`linear_fuse` are the ablation baselines.

diffusers and segment_anything are imported only inside the SD / SAM code.
"""
from .fusion import CapabilityFusionConfig, FusedResult, add_fuse, capability_fuse, capability_weights, linear_fuse
from .scoring import IoUAccumulator, score_capabilities, simplex_grid, teacher_logits
from .synthesizer import SYNTHESIZERS, SynthImage, Synthesizer, SyntheticSynthesizer, build_synthesizer
from .table import CapabilityTable, load_capability_table, save_capability_table

__all__ = [
    "CapabilityFusionConfig", "CapabilityTable", "FusedResult", "IoUAccumulator", "SYNTHESIZERS", "SynthImage", "Synthesizer",
    "SyntheticSynthesizer", "add_fuse", "build_synthesizer", "capability_fuse", "capability_weights", "linear_fuse",
    "load_capability_table", "save_capability_table", "score_capabilities", "simplex_grid", "teacher_logits",
]
