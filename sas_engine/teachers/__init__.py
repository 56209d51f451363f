"""2D teachers, text encoders and Model Alignment via Text.

Public surface:
    * :class:`TextEncoder`, :func:`get_text_encoder` - one interface over MiniLM (default, 384-d) and open_clip
      text towers;
    * :class:`DenseTeacher`, :class:`MaskTeacher`, :class:`MaskPrediction` - teacher interfaces;
    * :func:`align_masks` - Model Alignment via Text (mask teacher -> per-pixel features), pluggable :class:`Captioner`;
    * :data:`TEACHERS` / :func:`build_teacher` - plain registry of teacher builders (heavy packages are imported only
      inside the builder that needs them);
    * :func:`sas_engine.teachers.cache.extract_scene` / :func:`~sas_engine.teachers.cache.cached_feature_source` -
      per-frame teacher output cache in the artefact store (``sas extract``).

Registry names: ``clip_dense`` (MaskCLIP over an open_clip ViT), ``sam_clip`` (SAM masks + CLIP classification),
``lseg`` (the released LSeg checkpoint), ``precomputed`` (outputs of SEEM/OpenSeg/TAP... read from disk). The compact
teachers trained on the synthetic world (``lseg_compact``, ``seem_compact``, ``odise_compact``; each learned from its
own data source, :mod:`.sources`) register themselves here too; :data:`DEMO_TEACHERS` is the set the demo fuses.
"""
from __future__ import annotations

from typing import Callable

from ..errors import SASInputError
from .base import DenseTeacher, MaskPrediction, MaskTeacher, Teacher
from .clip_dense import build_clip_dense
from .compact import build_lseg_compact, build_odise_compact, build_seem_compact
from .lseg import build_lseg
from .mat import Captioner, HFCaptioner, MaskCueCaptioner, align_masks, extract_adjectives, get_captioner, mat_sentence
from .precomputed import build_precomputed
from .sam_clip import build_sam_clip
from .text import MiniLMTextEncoder, OpenCLIPTextEncoder, TextEncoder, get_text_encoder

TEACHERS: dict[str, Callable[..., Teacher]] = {
    "clip_dense": build_clip_dense,
    "sam_clip": build_sam_clip,
    "lseg": build_lseg,
    "precomputed": build_precomputed,
    "lseg_compact": build_lseg_compact,
    "seem_compact": build_seem_compact,
    "odise_compact": build_odise_compact,
}
"""Plain registry: teacher name -> builder ``(**kwargs) -> Teacher``."""

def _display_names() -> dict[str, str]:
    from .clip_dense import ClipDenseTeacher
    from .compact import CompactContextTeacher, CompactDenseTeacher, CompactMaskTeacher
    from .lseg import LSegTeacher
    from .sam_clip import SamClipTeacher

    classes = (ClipDenseTeacher, SamClipTeacher, LSegTeacher, CompactDenseTeacher, CompactMaskTeacher,
               CompactContextTeacher)
    return {**{c.name: c.display_name for c in classes}, "precomputed": "precomputed teacher outputs"}


DISPLAY_NAMES: dict[str, str] = _display_names()
"""Registry name -> the label the app shows for that teacher's layers (without building the teacher)."""

DEMO_TEACHERS: tuple[str, ...] = ("lseg_compact", "seem_compact", "odise_compact")
"""The shipped compact teachers, in fusion order (the demo, the app and ``sas capability`` default to them)."""


def build_teacher(name: str, **kw) -> Teacher:
    """Build a registered teacher; unknown names raise :class:`SASInputError` listing the known ones.

    Keyword arguments go to the builder (checkpoint paths, ``device``, ``vocabulary``...). The built teacher's
    ``name`` is the registry name it was built under.
    """
    try:
        builder = TEACHERS[name]
    except KeyError:
        raise SASInputError(None, f"unknown teacher {name!r}; known: {', '.join(sorted(TEACHERS))}") from None
    teacher = builder(**kw)
    teacher.name = name
    return teacher


__all__ = ["TEACHERS", "DEMO_TEACHERS", "DISPLAY_NAMES", "build_teacher",
           "Teacher", "DenseTeacher", "MaskTeacher", "MaskPrediction", "TextEncoder",
           "MiniLMTextEncoder", "OpenCLIPTextEncoder", "get_text_encoder", "align_masks", "Captioner",
           "MaskCueCaptioner", "HFCaptioner", "get_captioner", "extract_adjectives", "mat_sentence"]
