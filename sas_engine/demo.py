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

With ``overlap=True``, a cold build on CPU with ``workers`` > 1 and a ready capability table (the shipped one) runs
both phases on one pool of ``workers`` processes instead (:func:`_build_pipelined`): every room's phase-1 task is queued first, and each
room's phase-2 task is queued as its phase 1 finishes, so rooms still open one by one, in the same order of events,
while no core waits for another (phase 1 alone used one core, and phase 2 started with one room on one core).
Measured (``benchmarks/bench_cold_build.py``, 6 rooms, load 1.7-1.9): 138 s to every layer against 145 s, but the
first room opens at 28 s instead of 13 s (the pool's processes start and load torch first), so it is not the default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from .pipeline import PipelineConfig, Progress, _report, run_split
from .store import ArtefactStore

DEMO_SPLIT = "val"
"""The synthetic split the demo shows (never trained on)."""

PHASE_SHARES = {"rooms": 0.2, "capability": 0.6, "scenes": 0.2}
PIPELINED_ROOM_SHARE = 0.35
"""In a pipelined build, the share of the work (and of the bar) in the rooms' phase 1 (about 12 of 34 core-seconds
per room: generation, superpoints, student; the rest is the teachers and fusions)."""
"""Share of the progress bar per phase (generation + superpoints + student / capability table / teachers and
fusions). The capability table ships with the compact teachers (``checkpoints/capability/``), so it usually takes
no time: its share then goes to the scenes. Only shapes the progress bar."""


def build_demo(store: ArtefactStore | str | Path, data_root: Optional[str | Path] = None,
               progress: Optional[Progress] = None, cfg: Optional[PipelineConfig] = None,
               max_scenes: Optional[int] = None, device: str = "cpu", workers: int = 2,
               on_scene: Optional[Callable[[str, Path], None]] = None, overlap: bool = False) -> list[str]:
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
        overlap: run a cold CPU build's two phases on one process pool (:func:`_build_pipelined`); False (default)
            = phase 1 in this process, room by room, then phase 2.
    """
    from .io import load_scene
    from .pipeline import build_teachers, ensure_capability, ensure_student, ensure_superpoints
    from .synth import SPLITS, ensure_split

    store = store if isinstance(store, ArtefactStore) else ArtefactStore(store)
    cfg = cfg or PipelineConfig(device=device)
    n = len(SPLITS[DEMO_SPLIT].scenes) if not max_scenes else min(max_scenes, len(SPLITS[DEMO_SPLIT].scenes))
    if overlap and workers > 1 and torch.device(cfg.device).type == "cpu" and \
            _cold_with_ready_table(store, cfg, data_root, n):
        return _build_pipelined(store, cfg, data_root, n, workers, progress, on_scene)
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


def _cold_with_ready_table(store: ArtefactStore, cfg: PipelineConfig, data_root, n: int) -> bool:
    """True when some demo room still has to be generated and the capability table is stored or shipped."""
    from .pipeline import build_teachers, ensure_capability
    from .synth import split_is_generated

    if split_is_generated(DEMO_SPLIT, root=data_root, first=n):
        return False
    teachers = build_teachers(cfg)
    return len(teachers) < 2 or ensure_capability(store, teachers, cfg, compute=False) is not None


def _room_worker(split: str, index: int, data_root: Optional[str], store_root: str,
                 cfg: PipelineConfig) -> tuple[str, str]:
    """Phase 1 of one room in a worker process: generate it, its superpoints and the student. Returns (id, folder)."""
    from .io import load_scene
    from .pipeline import ensure_student, ensure_superpoints
    from .synth import ensure_scene

    torch.set_num_threads(1)
    store = ArtefactStore(store_root)
    path = ensure_scene(split, index, root=data_root)
    scene = load_scene(path)
    ensure_superpoints(store, scene)
    ensure_student(store, scene, cfg)
    return scene.scene_id, str(path)


def _build_pipelined(store: ArtefactStore, cfg: PipelineConfig, data_root, n: int, workers: int,
                     progress: Optional[Progress], on_scene) -> list[str]:
    """Both phases of a cold build on one pool of ``workers`` processes (see the module docstring)."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from .pipeline import _scene_worker

    root = None if data_root is None else str(data_root)
    ids: list[Optional[str]] = [None] * n
    folders: dict[int, Path] = {}
    done = {"room": 0, "scene": 0}
    _report(progress, 0.0, f"{n} rooms on {workers} processes: generating them (first start only), superpoints and "
                           "the 3D student, then the teachers and fusions")
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futs = {pool.submit(_room_worker, DEMO_SPLIT, i, root, str(store.root), cfg): ("room", i) for i in range(n)}
        while futs:
            finished, _ = wait(futs, return_when=FIRST_COMPLETED)
            for f in sorted(finished, key=lambda f: futs[f][1]):
                kind, i = futs.pop(f)
                if kind == "room":
                    ids[i], path = f.result()
                    folders[i] = Path(path)
                    futs[pool.submit(_scene_worker, str(store.root), path, cfg, True, None)] = ("scene", i)
                else:
                    f.result()
                done[kind] += 1
                frac = (PIPELINED_ROOM_SHARE * done["room"] + (1 - PIPELINED_ROOM_SHARE) * done["scene"]) / n
                what = "can be opened" if kind == "room" else "has every layer"
                _report(progress, min(frac, 0.999), f"room {ids[i]} {what} ({done['room']}/{n} rooms openable, "
                                                    f"{done['scene']}/{n} with teachers and fusions)")
                if on_scene is not None:
                    on_scene(ids[i], folders[i])
    _report(progress, 1.0, f"{n} scenes ready")
    return [i for i in ids if i is not None]
