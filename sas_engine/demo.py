"""The embedded demo: the synthetic validation scenes through the whole pipeline with the shipped compact teachers
and student (``checkpoints/``). ``launch.py`` calls :func:`build_demo` on first start; later starts read the caches."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .pipeline import PipelineConfig, Progress, _report, run_split
from .store import ArtefactStore

DEMO_SPLIT = "val"
"""The synthetic split the demo shows (never trained on)."""


def build_demo(store: ArtefactStore | str | Path, data_root: Optional[str | Path] = None,
               progress: Optional[Progress] = None, cfg: Optional[PipelineConfig] = None,
               max_scenes: Optional[int] = None, device: str = "cpu", workers: int = 2) -> list[str]:
    """Generate the synthetic validation scenes (cached) and run the whole pipeline on them with the shipped compact
    teachers and student, ``workers`` scenes at a time on CPU (see :func:`run_split`). Returns the scene ids; a
    second call only reads the caches."""
    from .synth import ensure_split

    store = store if isinstance(store, ArtefactStore) else ArtefactStore(store)
    _report(progress, 0.0, "synthetic validation scenes")
    paths = ensure_split(DEMO_SPLIT, root=data_root)
    if max_scenes:
        paths = paths[:max_scenes]
    return run_split(store, paths, cfg or PipelineConfig(device=device), progress=progress, workers=workers)
