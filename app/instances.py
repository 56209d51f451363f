"""Instances in the app: "where is it?" answers as ranked 3D instances, and the HTTP JSON endpoint.

``GET /api/instances?scene=<scene id>&q=<text>[&features=<artefact>][&points=0]`` on the running app answers with
the JSON of :func:`sas_engine.instances.find_instances` (schema in its module docstring and the README's "Instances:
where is it?"): the scene's instances that the text names, best first, each with score, label, point count,
centroid, axis-aligned box, extent and (unless ``points=0``) point indices, plus ``count`` and a one-line ``answer``.
Errors are JSON too: ``{"error": "..."}`` with status 400 (bad input), 404 (unknown scene or layer) or 500.
The route is served by the panel's server, so it binds where the panel does (127.0.0.1 unless ``--host`` says
otherwise). Proposals are computed on a scene's first request (seconds) and read from the store afterwards.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Optional

from sas_engine.errors import SASInputError

if TYPE_CHECKING:  # pragma: no cover
    from .state import AppState

log = logging.getLogger(__name__)
ROUTE = "/api/instances"
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def feature_layers(state: "AppState", scene_id: str) -> list[str]:
    """The scene's feature layers in the order instance answers prefer them (distilled 3D, SAS, ..., teachers)."""
    return [layer.artefact for layer in state.layers(scene_id).query_layers()]


def answer_instances(state: "AppState", scene_id: str, text: str, features: Optional[str] = None,
                     include_points: bool = True) -> dict:
    """:func:`sas_engine.instances.find_instances` for a scene of the app (the app's text encoder; the layer
    ``features`` or the scene's preferred one). One computation per scene at a time."""
    from sas_engine.instances import find_instances

    scene = state.scene(scene_id)
    layers = feature_layers(state, scene.scene_id)
    if not layers:
        raise SASInputError(None, f"scene {scene.scene_id} has no feature layer yet to label instances with")
    feats = features or layers[0]
    if feats not in layers:
        raise SASInputError(None, f"scene {scene.scene_id} has no layer {feats!r}; it has {', '.join(layers)}")
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(scene.scene_id, threading.Lock())
    with lock:
        return find_instances(scene, text, store=state.store, features=feats, text_encoder=state.text_cache().encoder,
                              include_points=include_points, feature_cues=layers)


def mount_api(app, state: "AppState") -> None:
    """Add ``GET /api/instances`` to the panel's FastAPI app (ahead of gradio's own routes)."""
    from fastapi.responses import JSONResponse

    def instances(scene: str = "", q: str = "", features: Optional[str] = None, points: str = "1"):
        if not scene:
            return JSONResponse({"error": "missing parameter 'scene' (a scene id)"}, status_code=400)
        if not q:
            return JSONResponse({"error": "missing parameter 'q' (the text to find)"}, status_code=400)
        try:
            if scene not in state.scene_ids():
                return JSONResponse({"error": f"unknown scene {scene!r}; known: {', '.join(state.scene_ids())}"},
                                    status_code=404)
            ans = answer_instances(state, scene, q, features, include_points=points not in ("0", "false", "no"))
        except SASInputError as e:
            code = 404 if "has no layer" in str(e) else 400
            return JSONResponse({"error": str(e)}, status_code=code)
        except Exception as e:  # noqa: BLE001 - the client gets one line, the log the traceback
            log.exception("instances request failed")
            return JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=500)
        return JSONResponse(ans)

    app.add_api_route(ROUTE, instances, methods=["GET"])
    routes = app.router.routes
    routes.insert(0, routes.pop())  # before any catch-all route of gradio's


_QUESTION = re.compile(r"^(how many|where (is|are)( the| my| a| an)?|find( the| all| me)?|show( me)?( the| all)?|"
                       r"is there( a| an| any)?|are there( any)?)\s+", re.I)
_TAIL = re.compile(r"\s+(are there|are here|is there|is here|in (the|this) (room|scene)|here)$", re.I)


def question_text(text: object) -> str:
    """The object named by a question: "how many chairs are there?" -> "chairs", "where is the sofa" -> "sofa";
    plain text is kept (whitespace tidied)."""
    from sas_engine.query import clean_query

    t = clean_query(text).rstrip("?!. ")
    t = _QUESTION.sub("", t)
    t = _TAIL.sub("", t)
    return clean_query(t if t.strip() else text)


INSTANCE_HEADERS = ["#", "label", "score", "points", "centre (m)", "size (m)"]
"""Columns of the panel's instance table (:func:`instance_rows`)."""


def instance_rows(ans: dict) -> list[list]:
    """Rows of the panel's instance table: rank, label, score, points, centroid, size (metres)."""
    rows = []
    for r in ans.get("instances", []):
        rows.append([r["rank"], r["label"], round(r["score"], 2), r["num_points"],
                     ", ".join(f"{v:.2f}" for v in r["centroid"]), " x ".join(f"{v:.2f}" for v in r["extent"])])
    return rows


def status_line(ans: dict) -> str:
    """ "3 instances of 'chair' (distilled features): #1 at (x, y, z) ..." for the panel's status."""
    n = ans["count"]
    if n == 0:
        return f"{ans['answer']} ({ans['features']})"
    best = ans["instances"][0]
    c = ", ".join(f"{v:.1f}" for v in best["centroid"])
    return f"{ans['answer']} ({ans['features']}); best: {best['label']} at ({c}) m, score {best['score']:.2f}"
