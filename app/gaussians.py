"""A scene's 3D Gaussians in the viewer: the fitted Gaussians (``sas gaussians fit`` / ``semantics``, stored as
``gaussians.fit``) drawn as viser Gaussian splats in place of the point cloud, coloured by their own RGB or, like
the points, by a query: one text gives the calibrated relevance heat map, a comma list a labelled segmentation
(:class:`sas_engine.query.QueryEngine` on the Gaussians' features: the distilled encoder's ``gaussians.feat.<source>``
when the store has it, else the lifted ``gaussians.lift.<source>``, SAS first). Nothing is computed here: a scene
without stored Gaussians gets a message naming the command that makes them.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Optional

import numpy as np

from sas_engine.errors import SASInputError

if TYPE_CHECKING:  # pragma: no cover
    from .state import AppState

SPLATS = "/sas/gaussians"
"""viser scene node of the splats."""
SOURCES = ("sas", "lseg_compact", "seem_compact", "odise_compact")
"""Feature sources in order of preference."""
_ENGINES: dict[str, object] = {}
_GUARD = threading.Lock()


def stored_features(store, scene) -> Optional[tuple[str, dict]]:
    """(artefact name, payload) of the scene's preferred Gaussian features, or None."""
    geo = scene.geometry_digest
    names = [f"gaussians.{kind}.{s}" for s in SOURCES for kind in ("feat", "lift")]
    for name in names:
        if store.header(scene.scene_id, name) is not None:
            return name, store.read_any(scene.scene_id, name, geometry=geo)
    return None


def splat_arrays(fit: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(centres [N, 3], covariances [N, 3, 3], RGB [N, 3] in 0..1, opacities [N, 1]) of a ``gaussians.fit``
    payload, float32."""
    from sas_engine.gaussians.model import Gaussians
    from sas_engine.gaussians.raster import quat_to_rotmat

    g = Gaussians.from_payload(fit)
    m = quat_to_rotmat(g.quats) * g.scales.unsqueeze(1)
    cov = (m @ m.transpose(1, 2)).numpy().astype(np.float32)
    return (g.means.numpy().astype(np.float32), cov, g.colors.numpy().astype(np.float32),
            g.opacities.numpy().astype(np.float32)[:, None])


def query_colours(state: "AppState", session, name: str, feats: dict, text: str,
                  base_rgb: np.ndarray) -> tuple[np.ndarray, str]:
    """RGB [N, 3] in 0..1 of the Gaussians for a query (relevance heat map, or labels for a comma list) and a
    one-line summary."""
    from sas_engine.query import QueryEngine, split_queries

    from . import colors as C

    key = f"{session.scene_id}:{name}"
    with _GUARD:
        eng = _ENGINES.get(key)
        if eng is None:
            _ENGINES.clear()  # one scene's Gaussians at a time: their features are the memory
            eng = QueryEngine(state.text_cache())
            eng.set_scene(key, feats["features"], feats.get("mask"))
            _ENGINES[key] = eng
    vocab = list(session.vocab) if getattr(session, "vocab", None) else []
    names = split_queries(text)
    base = (np.clip(base_rgb, 0, 1) * 255).astype(np.uint8)
    if len(names) > 1:
        seg = eng.segment_names(names, vocab)
        pal = C.class_palette(seg.names)
        lab = seg.labels
        rgb = np.where((lab >= 0)[:, None], pal[np.clip(lab, 0, len(pal) - 1)], C.unpack_rgb(C.dimmed_rgb(base)))
        counts = ", ".join(f"{n} {int((lab == i).sum())}" for i, n in enumerate(seg.names))
        return rgb.astype(np.float32) / 255.0, f"labelled Gaussians: {counts}"
    rel = eng.relevance(names[0] if names else text, vocab)
    thr = float(getattr(session, "threshold", 0.4))
    rgb = C.heat_colors(rel.score, thr, base)
    hit = int(np.nansum(rel.score >= thr))
    return rgb.astype(np.float32) / 255.0, f"{hit:,} Gaussians with relevance >= {thr:.2f} for '{rel.text}'"


def show(state: "AppState", token: str, text: str = "") -> str:
    """Draw the session's scene as Gaussian splats in its viewers (point clouds hidden), coloured by ``text``
    (empty: the Gaussians' own colours). Returns the status line."""
    session = state.session(token)
    if session.scene_id is None:
        raise SASInputError(None, "open a scene first")
    scene = state.scene(session.scene_id)
    fit = state.store.read_any(scene.scene_id, "gaussians.fit", geometry=scene.geometry_digest)
    if fit is None:
        raise SASInputError(None, f"scene {scene.scene_id} has no Gaussians in the store yet: run `sas gaussians "
                                  f"semantics {scene.source or scene.scene_id}`")
    centres, cov, rgb, opa = splat_arrays(fit)
    msg = f"{len(centres):,} Gaussians"
    text = (text or "").strip()
    if text:
        got = stored_features(state.store, scene)
        if got is None:
            raise SASInputError(None, f"the Gaussians of {scene.scene_id} have no features yet: run `sas gaussians "
                                      f"semantics {scene.source or scene.scene_id}`")
        name, feats = got
        rgb, what = query_colours(state, session, name, feats, text, rgb)
        msg += f" ({name}): {what}"
    viewer = state.viewer
    shown = 0
    if viewer is not None:
        for cv in viewer.clients_of(token):
            with cv.lock:
                if cv.scene_id != scene.scene_id or cv.center is None:
                    continue
                old = getattr(cv, "gaussians", None)
                if old is not None:
                    old.remove()
                cv.gaussians = cv.client.scene.add_gaussian_splats(
                    SPLATS, centres - np.asarray(cv.center, np.float32), cov, rgb, opa)
                for h in (cv.a, cv.b):
                    if h is not None:
                        h.visible = False
                shown += 1
    return msg + (f", drawn in {shown} view(s)" if shown else " (no 3D view connected)")


def hide(state: "AppState", token: str) -> str:
    """Remove the splats and show the point clouds again."""
    shown = 0
    viewer = state.viewer
    if viewer is not None:
        for cv in viewer.clients_of(token):
            with cv.lock:
                drop_splats(cv)
                if cv.a is not None:
                    cv.a.visible = True
                shown += 1
    if viewer is not None and shown:
        viewer.update(state.session(token))
    return "Gaussians hidden: the points are shown again"


def drop_splats(cv) -> None:
    """Remove a client view's splats (a new scene was opened, or Hide)."""
    old = getattr(cv, "gaussians", None)
    if old is not None:
        old.remove()
        cv.gaussians = None
