"""Capability tables shipped with the repository, so that a fresh store need not rebuild them.

A capability table depends only on the teachers' weights, the synthesizer and its settings (all in its stamped
config), so the one built for the shipped compact teachers is shipped too: ``checkpoints/capability/`` holds the
store's own JSON file (header included) and the gallery images it lists. :func:`install_shipped_table` copies them
into a store when, and only when, the shipped header's hash equals the hash of the config and inputs the pipeline
asks for (the teachers' weights are in that config by content digest, so a retrained teacher never reuses it);
anything else is computed as usual. ``sas capability --ship`` (:func:`export_shipped_table`) writes the folder.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Optional

from ..artefacts import validate
from ..config import config_hash
from ..store import FORMAT_VERSION, SHARED, ArtefactStore, atomic_write
from .table import KIND

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "checkpoints" / "capability"
"""Where shipped capability tables live (``<name>.json`` + the gallery files it lists)."""


def _files(table: dict) -> list[str]:
    out = []
    for it in table.get("images") or []:
        for key in ("image", "mask"):
            name = str(it.get(key, ""))
            if name and "/" not in name and "\\" not in name and not name.startswith("."):
                out.append(name)
    return out


def install_shipped_table(store: ArtefactStore, name: str, config: dict, inputs: dict,
                          folder: Optional[Path] = None) -> bool:
    """Copy the shipped ``<name>.json`` (and its gallery) from ``folder`` (default :data:`SHIPPED_DIR`) into
    ``store`` when its stamp matches ``config`` and ``inputs`` exactly; returns whether it did. A missing, unreadable
    or non-matching file is never copied."""
    folder = Path(folder) if folder is not None else SHIPPED_DIR
    src = folder / f"{name}.json"
    if not src.is_file():
        return False
    try:
        text = src.read_text()
        obj = json.loads(text)
        head = obj["__header__"]
        validate(KIND, {k: v for k, v in obj.items() if k != "__header__"}, src)
    except (OSError, ValueError, KeyError, TypeError) as e:  # SASInputError (schema) is a ValueError
        log.warning("ignoring shipped capability table %s: %s", src, e)
        return False
    if (head.get("format_version") != FORMAT_VERSION or head.get("kind") != KIND
            or head.get("hash") != config_hash(KIND, config, inputs)):
        log.info("shipped capability table %s does not match these teachers/settings; computing", src)
        return False
    files = _files(obj)
    missing = [f for f in files if not (Path(folder) / f).is_file()]
    if missing:
        log.warning("shipped capability table %s lacks gallery files %s; computing", src, missing[:3])
        return False
    for f in files:
        data = (Path(folder) / f).read_bytes()
        store.write_bytes(None, f, data)
    atomic_write(store.path(None, name, ".json"), lambda fh: fh.write(text), mode="w")
    log.info("installed the shipped capability table %s", src.name)
    return True


def export_shipped_table(store: ArtefactStore, name: str, folder: Optional[Path] = None) -> Path:
    """Write the store's ``<name>.json`` and its gallery files into ``folder`` (default :data:`SHIPPED_DIR`),
    replacing an earlier export of the same name (the file's bytes as stored, once it has been read and checked like
    any capability table). Returns the JSON path."""
    from ..artefacts import read_json

    read_json(store, None, name, kind=KIND, required=True)
    text = store.path(None, name, ".json").read_text()
    obj = json.loads(text)
    folder = Path(folder) if folder is not None else SHIPPED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for f in _files(obj):
        shutil.copyfile(store.root / SHARED / f, folder / f)
    return atomic_write(folder / f"{name}.json", lambda fh: fh.write(text), mode="w")
