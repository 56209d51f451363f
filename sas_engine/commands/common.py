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
