"""Arguments shared by several subcommands."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_STORE = Path(os.environ.get("SAS_STORE", Path(__file__).resolve().parents[2] / "store"))
"""Default artefact store folder: ``$SAS_STORE`` or ``<repo>/store``."""


def add_scene_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("scene", help="scene folder or file (ScanNet scan folder, OpenScene .pth, custom RGB-D folder...)")
    p.add_argument("--dataset", default=None,
                   help="dataset preset (scannet, matterport, nuscenes, synthetic); detected from the layout when omitted")


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
