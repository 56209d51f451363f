"""``sas synth``: generate synthetic ScanNet-format scenes (a named split, or one room by seed)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass
class Config:
    """Generate synthetic ScanNet-format rooms with RGB-D frames and ground truth (a split, or one room by seed)."""

    split: Optional[str] = None
    """Named split to generate (tiny, train, val, ...); cached."""
    root: Optional[Path] = None
    """Data root for --split (default $SAS_DATA or <repo>/data/synthetic)."""
    seed: Optional[int] = None
    """Generate one room with this seed (needs --out)."""
    room: Optional[str] = None
    """Room type for --seed (bedroom, living_room, office, kitchen, bathroom, mixed); drawn from the seed when
    omitted."""
    out: Optional[Path] = None
    """Output root for --seed (the scan folder goes to OUT/scans/)."""
    frames: Optional[int] = None
    """Number of frames for --seed (default 60)."""
    vertices: Optional[int] = None
    """Target vertex count for --seed (default 80000)."""
    openscene: bool = False
    """Also write OpenScene's preprocessed layout."""


def run(args: Config) -> int:
    from ..errors import SASInputError
    from ..synth import ROOM_TYPES, SynthConfig, ensure_split
    from ..synth.splits import generate_to

    if (args.split is None) == (args.seed is None):
        raise SASInputError(None, "give either --split NAME or --seed N (with --out DIR)")
    if args.split is not None:
        paths = ensure_split(args.split, args.root, progress=True, openscene=args.openscene)
        for p in paths:
            print(p)
        return 0
    if args.out is None:
        raise SASInputError(None, "--seed needs --out DIR")
    if args.room is not None and args.room not in ROOM_TYPES:
        raise SASInputError(None, f"unknown room type {args.room!r}; known: {', '.join(ROOM_TYPES)}")
    if args.seed < 0:
        raise SASInputError(None, f"--seed must be >= 0, got {args.seed}")
    kw = {}
    if args.frames is not None:
        kw["num_frames"] = args.frames
    if args.vertices is not None:
        kw["target_vertices"] = args.vertices
    cfg = SynthConfig(**kw)
    from ..synth.rooms import room_type_for_seed

    room = args.room or room_type_for_seed(args.seed)
    path = generate_to(args.out, args.seed, room, cfg, progress=True,
                       openscene_root=args.out / "openscene" if args.openscene else None)
    print(path)
    return 0
