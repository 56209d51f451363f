"""Store artefacts of fusion: ``fused.<teacher>`` (single-teacher 2D fusion) and ``fused.sas|add|linear``.

Payloads (see the shared artefact list): single teacher ``features`` float16 [N, C], ``mask`` bool [N],
``view_count`` int32 [N]; combined ``features``, ``mask``, ``weights`` float32 [N, T], ``teachers`` list[str].
"""
from __future__ import annotations

from typing import Optional

from .fusion import FusedResult

KIND = "fused"
"""Artefact kind of every ``fused.*`` artefact."""


def load_any(store, scene_id: Optional[str], name: str, geometry: Optional[str] = None) -> dict:
    """Payload of ``name`` made by any config (format version and kind are still checked, and the points' digest
    when ``geometry`` is given), with its header under ``"__header__"``. Raises :class:`SASInputError` naming the
    file when it does not exist, is not a fusion artefact (its schema included) or belongs to other points.
    A thin name for :func:`sas_engine.artefacts.read` with ``kind="fused"``."""
    from ..artefacts import read

    return read(store, scene_id, name, geometry=geometry, kind=KIND, required=True, header=True,
                hint="run `sas fuse` for it first")


def save_fused(store, scene_id: str, mode: str, result: FusedResult, config: dict, *, inputs: dict,
               geometry: str, name: Optional[str] = None) -> str:
    """Save a combined fusion as ``fused.<mode>`` (or under ``name``); ``inputs`` names the fused teachers it
    combined (their header hashes), ``geometry`` the points' digest. Returns the file path."""
    payload = {"features": result.features.to("cpu").half().contiguous(), "mask": result.mask.to("cpu").bool(),
               "weights": result.weights.to("cpu").float().contiguous(), "teachers": list(result.teachers)}
    return str(store.save(scene_id, name or f"fused.{mode}", payload, kind=KIND, config=dict(config, mode=mode),
                          inputs=inputs, geometry=geometry))


def save_single(store, scene_id: str, teacher: str, fusion, config: dict, *, geometry: str) -> str:
    """Save a single-teacher multi-view fusion (a ``FusionResult``) as ``fused.<teacher>`` on the points whose digest
    is ``geometry``; returns the path."""
    payload = {"features": fusion.features.to("cpu").half().contiguous(), "mask": fusion.mask.to("cpu").bool(),
               "view_count": fusion.view_count.to("cpu").int()}
    if getattr(fusion, "votes", None) is not None:
        payload["votes"] = fusion.votes.to("cpu").int()
    return str(store.save(scene_id, f"fused.{teacher}", payload, kind=KIND, config=dict(config, teacher=teacher),
                          inputs={"scene": scene_id}, geometry=geometry))
