"""Human-readable scene summaries (used by ``sas info`` and the launcher)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .labels import get_label_set
from .scene import Scene
from .store import ArtefactStore


def scene_summary(scene: Scene, store: Optional[str | Path] = None) -> str:
    """Multi-line summary: points, extent, mesh, frames, classes with point counts, cached artefacts."""
    lo, hi = scene.points.min(0), scene.points.max(0)
    lines = [
        f"scene      {scene.scene_id}  (dataset preset: {scene.dataset}, source: {scene.source})",
        f"points     {scene.num_points:,}   extent {np.round(hi - lo, 2).tolist()} m",
        f"mesh       {0 if scene.faces is None else len(scene.faces):,} faces",
        f"frames     {len(scene.frames)}",
    ]
    if scene.frames:
        f0 = scene.frames[0]
        lines.append(f"image      {f0.size[0]}x{f0.size[1]}  depth: {'yes' if f0.depth is not None else 'no'}")
    if scene.superpoints is not None:
        lines.append(f"superpts   {len(np.unique(scene.superpoints)):,}")
    if scene.labels is not None:
        ls = get_label_set(scene.label_set)
        counts = np.bincount(scene.labels.astype(np.int64), minlength=256)
        present = [f"{ls.names[c]}({counts[c]})" for c in scene.classes_present() if c < len(ls)]
        lines.append(f"classes    {len(present)} of {len(ls)} ({ls.name}); ignore: {counts[255]:,} points")
        lines.append("           " + ", ".join(present))
    else:
        lines.append("classes    no ground truth")
    if store is not None:
        arts = ArtefactStore(store).list(scene.scene_id)
        lines.append(f"artefacts  {len(arts)} cached in {Path(store) / scene.scene_id}")
        for a in arts:
            lines.append(f"           {a['name']:<28} {a.get('kind', '?'):<16} {a.get('created', '')}")
    return "\n".join(lines)
