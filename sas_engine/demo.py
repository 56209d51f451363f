"""The embedded demo: the synthetic validation scenes through the whole pipeline with the shipped compact teachers
and student (``checkpoints/``). ``launch.py`` calls :func:`build_demo` on first start; later starts read the caches.

A cold build runs in two phases so that the page is useful long before everything is computed:

1. room by room: generate the room (cached under the data root), its superpoints and the distilled 3D student's
   features; then ``on_scene`` announces it, and it can be opened and queried (the student is the app's default
   query layer). A few seconds of work per room after its generation.
2. the 2D teachers, the shared capability table (the longest single step; its progress follows the scored images)
   and the fusions, ``workers`` rooms at a time (:func:`~sas_engine.pipeline.run_split`); ``on_scene`` is called
   again as each room's remaining layers land.

The progress fraction is split between the steps by their measured share of a cold build (:data:`PHASE_SHARES`).

No process loads the text model in a cold build of the demo: every string it encodes (the label set's prompts and
the mask teacher's Model-Alignment-via-Text sentences) is in the shipped text-embedding table
(:data:`~sas_engine.teachers.text.SHIPPED_TEXT_DIR`), which saves about 10 s of one core in each of its three
processes. Two other orders were measured and dropped (``benchmarks/bench_cold_build.py``, 6 rooms, 2 idle cores):
phase 2 of each room on a worker beside phase 1 of the next (100.0 s to every layer, against 83.8 s for this order
in the same run, both with the shipped table: phase 1 already keeps both cores busy, as rendering and the student
use two threads), and both phases on one pool of 2 processes (138 s against 145 s, before the shipped table, but
the first room opened at 28 s instead of 13 s).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from .pipeline import PipelineConfig, Progress, _report, run_split
from .store import ArtefactStore

DEMO_SPLIT = "val"
"""The synthetic split the demo shows (never trained on)."""

PHASE_SHARES = {"rooms": 0.2, "capability": 0.6, "scenes": 0.2}
"""Share of the progress bar per phase (generation + superpoints + student / capability table / teachers and
fusions). The capability table ships with the compact teachers (``checkpoints/capability/``), so it usually takes
no time: its share then goes to the scenes. Only shapes the progress bar."""


def build_demo(store: ArtefactStore | str | Path, data_root: Optional[str | Path] = None,
               progress: Optional[Progress] = None, cfg: Optional[PipelineConfig] = None,
               max_scenes: Optional[int] = None, device: str = "cpu", workers: int = 2,
               on_scene: Optional[Callable[[str, Path], None]] = None) -> list[str]:
    """Generate the synthetic validation scenes (cached) and run the whole pipeline on them with the shipped compact
    teachers and student, ``workers`` scenes at a time on CPU (see :func:`run_split`). Returns the scene ids; a
    second call only reads the caches.

    Args:
        store: the artefact store.
        data_root: where the rooms are generated (default: the synthetic data root, ``data/synthetic``).
        progress: ``progress(fraction, message)``.
        cfg: pipeline settings (default: the shipped teachers and student on ``device``).
        max_scenes: only the first rooms (tests).
        device: torch device of the default config.
        workers: scenes processed at once in phase 2 (CPU only).
        on_scene: ``on_scene(scene_id, folder)`` when a room can be opened (phase 1) and again when its last
            layers are stored (phase 2).
    """
    from .io import load_scene
    from .pipeline import build_teachers, ensure_capability, ensure_student, ensure_superpoints
    from .synth import SPLITS, ensure_split

    store = store if isinstance(store, ArtefactStore) else ArtefactStore(store)
    cfg = cfg or PipelineConfig(device=device)
    n = len(SPLITS[DEMO_SPLIT].scenes) if not max_scenes else min(max_scenes, len(SPLITS[DEMO_SPLIT].scenes))
    r_end = PHASE_SHARES["rooms"]
    folders: dict[str, Path] = {}
    paths: list[Path] = []
    for i in range(n):  # phase 1: each room openable as soon as its student layer exists
        _report(progress, r_end * i / n, f"room {i + 1}/{n}: generating it (first start only), superpoints and the "
                                         "3D student")
        paths = ensure_split(DEMO_SPLIT, root=data_root, first=i + 1, progress=False)
        scene = load_scene(paths[i])
        ensure_superpoints(store, scene)
        ensure_student(store, scene, cfg)
        folders[scene.scene_id] = paths[i]
        if on_scene is not None:
            on_scene(scene.scene_id, paths[i])
    reached = [r_end]  # how far the capability phase moved the bar (not at all when the table was ready)
    if len(cfg.teachers) > 1:  # phase 2a: the shared capability table, with per-image progress
        _report(progress, r_end, f"capability table ({cfg.synthesizer} images, {cfg.capability_images} per class)")

        def cap_progress(done: int, total: int) -> None:  # every image: the bar only, not the log
            reached[0] = r_end + PHASE_SHARES["capability"] * done / max(1, total)
            if progress is not None:
                progress(reached[0], f"capability table: {done}/{total} synthesized images scored")

        ensure_capability(store, build_teachers(cfg), cfg, progress=cap_progress)
    c_end = max(reached[0], r_end)

    def scene_progress(frac: float, msg: str) -> None:  # run_split: 0.1 .. 1 over its scenes
        _report(progress, c_end + (1.0 - c_end) * max(0.0, frac - 0.1) / 0.9, f"teachers and fusion: {msg}")

    def scene_done(sid: str) -> None:
        if on_scene is not None and sid in folders:
            on_scene(sid, folders[sid])

    ids = run_split(store, paths, cfg, progress=scene_progress, workers=workers, on_scene=scene_done)
    _report(progress, 1.0, f"{len(ids)} scenes ready")
    return ids
