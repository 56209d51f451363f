"""Arguments shared by several subcommands."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_STORE = Path(os.environ.get("SAS_STORE", Path(__file__).resolve().parents[2] / "store"))
"""Default artefact store folder: ``$SAS_STORE`` or ``<repo>/store``."""


UP_HELP = ("gravity alignment: the scene's up direction in its own files: auto (detect it from the cameras and the "
           "floor), none (keep the files' frame), x, -x, y, -y, z, -z, or three comma-separated numbers (e.g. "
           "0,-1,0; write values that start with a minus as --up=-y). The scene is turned so this direction is +z "
           "with the floor at z = 0; exported PLY files are written back in the files' frame. Default: auto for "
           "custom captures (transforms.json, plain folders, Open3D reconstructions) and bare .ply files, none for "
           "ScanNet scan folders and OpenScene files (z up already). Give every command of one scene the same "
           "value: aligned points are different points")
"""Help of the ``--up`` option (``sas`` commands that load scenes, ``launch.py``)."""


def add_scene_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("scene", help="scene folder or file (ScanNet scan folder, OpenScene .pth, custom RGB-D folder...)")
    p.add_argument("--dataset", default=None,
                   help="dataset preset (scannet, matterport, nuscenes, synthetic); detected from the layout when omitted")
    add_up_arg(p)


def add_up_arg(p: argparse.ArgumentParser) -> None:
    """``--up`` (``args.up``, None = the layout's default); validated by ``load_scene``."""
    p.add_argument("--up", default=None, metavar="UP", help=UP_HELP)


def add_store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"artefact store folder (default {DEFAULT_STORE})")


def add_dataclass_args(p: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--field-name`` option per dataclass field (bool fields take true/false); help = the field docstring."""
    import dataclasses

    from ..config import field_docs

    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        opt = "--" + f.name.replace("_", "-")
        default = f.default
        kind = type(default)
        conv = (lambda s: s.lower() in ("1", "true", "yes", "on")) if kind is bool else kind
        p.add_argument(opt, dest=f"cfg_{f.name}", type=conv, default=default,
                       help=f"{docs.get(f.name, '')} (default: {default})")


def dataclass_from_args(cls, args):
    """Build ``cls`` from the ``cfg_<field>`` attributes that :func:`add_dataclass_args` added."""
    import dataclasses

    return cls(**{f.name: getattr(args, f"cfg_{f.name}") for f in dataclasses.fields(cls) if hasattr(args, f"cfg_{f.name}")})
