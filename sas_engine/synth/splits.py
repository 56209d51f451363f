"""Named, seeded sets of synthetic scenes (``tiny`` for tests, ``train`` and ``val``) generated on demand and cached.

``ensure_split(name)`` writes the split's missing scenes to ``<root>/<name>/scans/<scene_id>/`` (ScanNet layout,
see :mod:`.writers`) and returns the scan folders. A scene folder is reused when its marker file carries the
current generator version and config hash; an older one is regenerated; a folder without the marker at a scene's
path is not ours and is never overwritten.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..config import config_hash
from ..errors import SASInputError
from .config import ROOM_TYPES, GENERATOR_VERSION, SynthConfig
from .room import scene_id_for
from .writers import MARKER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitSpec:
    """A named set of scenes."""

    name: str
    """Split name (folder name under the data root)."""
    scenes: tuple[tuple[int, str], ...]
    """(seed, room type) of every scene."""
    cfg: SynthConfig
    """Mesh and rendering settings shared by the split's scenes."""

    @property
    def scene_ids(self) -> list[str]:
        return [scene_id_for(s, r) for s, r in self.scenes]


def _cycle(seeds: range, kinds: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    return tuple((s, kinds[i % len(kinds)]) for i, s in enumerate(seeds))


_TRAIN_KINDS = ("bedroom", "living_room", "office", "kitchen", "bathroom", "mixed", "bedroom", "living_room",
                "office", "kitchen", "bathroom", "mixed", "bedroom", "living_room")

_SCENE_KINDS = ("living_room", "bedroom", "office", "mixed", "living_room", "bedroom", "office", "mixed", "kitchen",
                "bathroom")
_OBJECT_KINDS = ("kitchen", "bathroom", "living_room", "kitchen", "bathroom", "office", "bedroom", "mixed")
_HOME_KINDS = ("bedroom", "living_room", "mixed", "kitchen", "office")

SPLITS: dict[str, SplitSpec] = {
    "tiny": SplitSpec("tiny", ((901, "bedroom"), (902, "kitchen")),
                      SynthConfig(target_vertices=20_000, num_frames=20)),
    "train": SplitSpec("train", _cycle(range(1, 15), _TRAIN_KINDS), SynthConfig(target_vertices=60_000, num_frames=50)),
    "val": SplitSpec("val", _cycle(range(1001, 1007), ROOM_TYPES), SynthConfig(target_vertices=60_000, num_frames=50)),
    "teach": SplitSpec("teach", _cycle(range(101, 157), ROOM_TYPES), SynthConfig(target_vertices=60_000, num_frames=24)),
    "tune": SplitSpec("tune", _cycle(range(2001, 2007), ROOM_TYPES), SynthConfig(target_vertices=60_000, num_frames=50)),
    "distill": SplitSpec("distill", _cycle(range(4001, 4065), ROOM_TYPES),
                         SynthConfig(target_vertices=60_000, num_frames=30)),
    "teach_scenes": SplitSpec("teach_scenes", _cycle(range(3101, 3157), _SCENE_KINDS),
                              SynthConfig(target_vertices=60_000, num_frames=24)),
    "teach_objects": SplitSpec("teach_objects", _cycle(range(3201, 3257), _OBJECT_KINDS),
                               SynthConfig(target_vertices=60_000, num_frames=24)),
    "teach_homes": SplitSpec("teach_homes", _cycle(range(3301, 3357), _HOME_KINDS),
                             SynthConfig(target_vertices=60_000, num_frames=24, camera_height=(1.5, 1.9),
                                         ambient=0.30, light_power=0.60, exposure_jitter=0.2)),
}
"""Plain registry of splits. ``train`` holds 14 scenes (every room type, all 20 ScanNet classes), ``val`` one scene of
each of the 6 room types with different seeds, ``tiny`` two small scenes of 20 frames for tests. ``teach`` holds 56 more
rooms of 24 frames each (seeds disjoint from ``train`` and ``val``): the compact 2D teachers train on it, because 14 rooms
were too few views of each class for them to generalise (validation mIoU plateaued below 30). ``tune`` holds 6 rooms made
like ``val`` (one per room type, seeds disjoint from every other split) that no model trains on: the query engine's
relevance settings (:class:`sas_engine.query.RelevanceConfig`) are chosen on them, never on ``val``.

``distill`` holds 64 more rooms (seeds 4001-4064, every room type, 30 frames each) that only the 3D student reads:
distillation needs no labels, so it trains on ``train`` + ``distill`` (78 rooms) and picks checkpoints on ``teach``.

``teach_scenes``, ``teach_objects`` and ``teach_homes`` are the three compact teachers' own training worlds (56 rooms
each, seeds 3101-3356, each with its room-type mix, camera and lighting; their data cards are in
:mod:`sas_engine.teachers.sources`). Since they exist no teacher trains on ``teach``: its rooms are where the
fusion's settings and the teachers' in-room accuracy are measured (the "teaching rooms" of the capability
correlation and of the oracle table), and where the student's stage-2 settings were chosen. Capability
construction renders rooms from its own seeds (:data:`CAPABILITY_SEED_BASE`), disjoint from every split."""

CAPABILITY_SEED_BASE = 1 << 20
"""Room seeds of the capability world start here (every split's seeds are below it)."""


def default_root() -> Path:
    """``$SAS_DATA`` or ``<repo>/data/synthetic``."""
    env = os.environ.get("SAS_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data" / "synthetic"


def get_split(name: str) -> SplitSpec:
    try:
        return SPLITS[name]
    except KeyError:
        raise SASInputError(None, f"unknown synthetic split {name!r}; known: {', '.join(SPLITS)}") from None


def scene_is_current(folder: Path, seed: int, room_type: str, cfg: SynthConfig) -> bool:
    """True when ``folder`` holds a complete scene made by this generator version with this config."""
    mk = folder / MARKER
    if not mk.is_file():
        return False
    try:
        info = json.loads(mk.read_text())
    except (OSError, ValueError):
        return False
    return (info.get("version") == GENERATOR_VERSION and info.get("config_hash") == config_hash(cfg)
            and info.get("seed") == seed and info.get("room_type") == room_type)


def generate_to(folder_root: Path, seed: int, room_type: str, cfg: SynthConfig, progress: bool = False,
                openscene_root: Optional[Path] = None, openscene_split: str = "train") -> Path:
    """Generate, render and write one scene under ``folder_root/scans/``; optionally also in OpenScene layout."""
    from .render import render_frames
    from .room import generate_scene
    from .writers import write_openscene, write_scannet

    room = generate_scene(seed, room_type, cfg)
    frames = render_frames(room, cfg=cfg, progress=progress)
    out = write_scannet(room, frames, folder_root)
    if openscene_root is not None:
        write_openscene(room, frames, openscene_root, openscene_split)
    return out


def ensure_split(split: str, root: Optional[str | Path] = None, progress: bool = True,
                 openscene: bool = False, first: Optional[int] = None) -> list[Path]:
    """Generate the missing scenes of ``split`` and return all its scan folders (in the split's order).

    Args:
        split: ``"tiny"``, ``"train"``, ``"val"``, ``"teach"`` or ``"tune"``.
        root: data root (default :func:`default_root`); scenes go to ``<root>/<split>/scans/<scene_id>/``.
        progress: show a tqdm bar over scenes.
        openscene: also write OpenScene's layout under ``<root>/<split>/openscene/`` (regenerates missing files).
        first: only the split's first ``first`` scenes (generated and returned); ``None`` = all of them.
    """
    spec = get_split(split)
    base = Path(root) if root is not None else default_root()
    base = base / spec.name
    todo = []
    paths = []
    for seed, rt in spec.scenes[:first]:
        folder = base / "scans" / scene_id_for(seed, rt)
        paths.append(folder)
        os_pth = base / "openscene" / "scannet_3d" / spec.name / f"{folder.name}_vh_clean_2.pth"
        if scene_is_current(folder, seed, rt, spec.cfg) and (not openscene or os_pth.is_file()):
            continue
        if folder.exists() and not (folder / MARKER).is_file():
            raise SASInputError(folder, "exists but is not a synthetic scene folder (no sas_synthetic.json); "
                                        "refusing to overwrite it - move it away or choose another --root")
        todo.append((seed, rt))
    if todo:
        it = todo
        if progress:
            from tqdm import tqdm

            it = tqdm(todo, desc=f"synth {spec.name}", unit="scene")
        for seed, rt in it:
            log.info("generating %s (%s, seed %d)", scene_id_for(seed, rt), rt, seed)
            generate_to(base, seed, rt, spec.cfg, openscene_root=base / "openscene" if openscene else None,
                        openscene_split=spec.name)
    return paths
