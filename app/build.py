"""Background processing of the user's own scenes (``launch.py SCENE ...`` or ``launch.py --data-root DIR``).

A scene opened from a capture or a scan has no artefacts in the store the first time, so the page could show its
RGB only. :func:`build_scenes` runs the SAS pipeline (:func:`sas_engine.pipeline.run_scene`, the same stages and
caches as the demo build and the ``sas`` commands) on them one scene at a time, in an order that gets something
queryable on screen soonest:

1. superpoints and the distilled 3D student (``pred3d.student``): seconds, and all a scan without frames gets;
2. each 2D teacher streamed over the frames and fused onto the points (``fused.<teacher>``);
3. the shared capability table (computed once per store), then the SAS / add / linear fusions.

After each step the scene's layers are re-listed (:meth:`app.state.AppState.layers_changed`), so the page offers
the new colour modes and query layers while the rest is still running. Every artefact records the geometry digest
of the points it was made on, so a later start reuses it only for the same points, and a cached scene costs a few
store reads. A scene that a browser tab is showing is processed before the others; a scene that fails is reported
and skipped.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from sas_engine.pipeline import PipelineConfig, Progress

    from .state import AppState

log = logging.getLogger(__name__)

TITLE = "Processing your scenes"
"""What the page's build line says while :func:`build_scenes` runs."""

# share of one scene's progress fraction given to the student step and to the teachers (the rest: the fusions)
_STUDENT, _TEACHERS = 0.1, 0.75
TICK_S = 5.0
"""Seconds between updates of the running step's elapsed time in ``state.build.message``."""


def next_scene(state: "AppState", todo: Sequence[str]) -> str:
    """The next scene to process: the first one an open tab is showing, else the first in order."""
    with state._lock:  # noqa: SLF001 (sessions are state's own)
        shown = {getattr(s, "scene_id", None) for s in state.sessions.values()}
    return next((sid for sid in todo if sid in shown), todo[0])


def build_scenes(state: "AppState", scene_ids: Sequence[str], cfg: Optional["PipelineConfig"] = None,
                 on_progress: Optional["Progress"] = None) -> list[str]:
    """Run the pipeline on registered scenes in the background, tracking progress in ``state.build``.

    Args:
        state: the app state the scenes are registered in (loaded through it, with its ``up`` setting).
        scene_ids: the scenes to process.
        cfg: pipeline settings (default: the shipped compact teachers and student, on ``state.device``).
        on_progress: the engine's :data:`~sas_engine.pipeline.Progress`, called with (fraction, message) at every
            step (the launcher's terminal bar).
    Returns:
        the ids of the scenes processed without error.
    """
    from sas_engine.pipeline import PipelineConfig, build_teachers, ensure_capability, run_scene

    cfg = cfg or PipelineConfig(device=state.device)
    st = state.build
    st.title, st.running, st.error, st.done, st.fraction = TITLE, True, None, False, 0.0
    st.message = "starting"
    todo = list(dict.fromkeys(scene_ids))
    n = max(1, len(todo))
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    teachers: Optional[list] = None
    table = None
    t_start = time.monotonic()

    step = {"msg": "", "t0": time.monotonic()}
    stop = threading.Event()

    def report(k: int, frac: float, sid: str, msg: str) -> None:
        st.fraction = min(1.0, (k + frac) / n)
        st.message = step["msg"] = f"{sid} ({k + 1}/{n}): {msg}"
        step["t0"] = time.monotonic()
        log.info(st.message)
        if on_progress is not None:
            on_progress(st.fraction, st.message)

    def tick() -> None:  # a teacher's pass over the frames takes minutes: show the step's time in the page
        while not stop.wait(TICK_S):
            dt = time.monotonic() - step["t0"]
            if dt >= TICK_S and step["msg"]:
                st.message = f"{step['msg']} ({_elapsed(dt)})"

    ticker = threading.Thread(target=tick, name="build-ticker", daemon=True)
    ticker.start()
    try:
        while todo:
            sid = next_scene(state, todo)
            todo.remove(sid)
            k = len(done) + len(failed)
            t0 = time.monotonic()
            try:
                report(k, 0.0, sid, "loading")
                scene = state.scene(sid)
                framed = len(scene.frames) > 0
                report(k, 0.02, sid, "superpoints and the 3D student")
                run_scene(state.store, scene, cfg, [], None, student=True)
                state.layers_changed(sid)
                if framed and cfg.teachers:
                    if teachers is None:
                        report(k, _STUDENT, sid, f"loading the 2D teachers ({', '.join(cfg.teachers)})")
                        teachers = build_teachers(cfg)
                    for i, t in enumerate(teachers):
                        report(k, _STUDENT + _TEACHERS * i / len(teachers), sid,
                               f"teacher {t.name} over {len(scene.frames)} frames, fused onto the points")
                        run_scene(state.store, scene, cfg, [t], None, student=False)
                        state.layers_changed(sid)
                    if len(teachers) > 1:
                        if table is None:
                            report(k, _STUDENT + _TEACHERS, sid,
                                   f"capability table ({cfg.synthesizer} images; once per store)")
                            table = ensure_capability(state.store, teachers, cfg)
                        report(k, _STUDENT + _TEACHERS + 0.05, sid, "capability-guided, add and linear fusion")
                        run_scene(state.store, scene, cfg, teachers, table, student=True)
                        state.layers_changed(sid)
                done.append(sid)
                log.info("%s processed in %.1f s", sid, time.monotonic() - t0)
            except Exception as e:  # one bad scene must not stop the others; the page lists it
                log.error("processing %s failed: %s: %s", sid, type(e).__name__, e)
                failed.append((sid, f"{type(e).__name__}: {e}"))
        stop.set()
        ticker.join()  # it must not overwrite the final message
        st.fraction = 1.0
        st.message = (f"{len(done)} scene(s) processed in {time.monotonic() - t_start:.0f} s"
                      + (f"; failed: {'; '.join(f'{s}: {m}' for s, m in failed)}" if failed else ""))
        if failed and not done:
            st.error = st.message
        st.done = True
        if on_progress is not None:
            on_progress(st.fraction, st.message)
        return done
    finally:
        stop.set()
        st.running = False


def _elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"
