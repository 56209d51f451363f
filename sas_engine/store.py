"""The artefact store: one folder per scene of derived artefacts (features, capabilities, predictions...).

Layout::

    <root>/<scene_id>/<name>.pt      torch payload  {"__header__": {...}, <key>: tensor | number | str | list | dict}
    <root>/<scene_id>/<name>.json    JSON payload   {"__header__": {...}, ...}
    <root>/_shared/<name>.*          artefacts not tied to one scene (capability tables, checkpoints)

Every artefact is written atomically (temporary file in the same folder, flush + fsync, ``os.replace``) and stamped
with a header: the store format version, the artefact kind, the producing config and a hash of config + inputs.
Per-point artefacts (superpoints, fused features, student predictions...) also record ``geometry``, the digest of the
scene's points in order (:func:`sas_engine.scene.geometry_digest`): a scene id alone never pairs results with points.
Inputs name what an artefact was made from by content (teacher checkpoints by their bytes, frames by their files and
poses, earlier artefacts by their header hash), so a changed input makes everything built on it stale.
Loading compares the header with what the caller expects; a stale or foreign artefact is refused with
:class:`StaleArtefactError` naming both sides (or recomputed by :meth:`ArtefactStore.get_or_compute`), never
silently reused.
Payloads are checked against the schema of their kind (:mod:`sas_engine.artefacts`: field types, dtypes, shapes, the
point count of the geometry digest) on every save and read; a malformed file is refused like a stale one.
Torch payloads only contain tensors and plain Python values, so they load with ``weights_only=True``
(:func:`sas_engine.io.files.torch_load`); JSON payloads hold plain values only (anything else raises on save).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from .config import config_dict, config_hash
from .errors import SASInputError, StaleArtefactError

FORMAT_VERSION = 2
"""Bump when the on-disk layout of any artefact changes; older artefacts are then recomputed."""

SHARED = "_shared"
log = logging.getLogger(__name__)


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write ``path`` atomically: ``write(fileobj)`` fills a temp file next to it, which is then renamed over ``path``.

    A crash before the rename leaves the previous file (if any) intact and no partial file under the final name;
    the temp file is removed on any exception.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def make_header(kind: str, config, inputs=None, geometry: Optional[str] = None) -> dict:
    """Header stamped on an artefact: format version, kind, config (as JSON-able dict), hash of config+inputs and,
    for per-point artefacts, the geometry digest of the points they were computed on."""
    return {
        "geometry": geometry,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config_dict(config) if config is not None else {},
        "inputs": config_dict(inputs) if inputs is not None else {},
        "hash": config_hash(kind, config, inputs),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


class ArtefactStore:
    """Per-scene artefact folders under ``root``.

    Args:
        root: the store's folder (created on first write).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- paths -----------------------------------------------------------------------------------------------
    def scene_dir(self, scene_id: Optional[str]) -> Path:
        sid = SHARED if scene_id is None else str(scene_id)
        if not sid or "/" in sid or "\\" in sid or sid in (".", ".."):
            raise SASInputError(None, f"invalid scene id {scene_id!r} for the artefact store")
        return self.root / sid

    def path(self, scene_id: Optional[str], name: str, ext: str = ".pt") -> Path:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise SASInputError(None, f"invalid artefact name {name!r}")
        return self.scene_dir(scene_id) / f"{name}{ext}"

    # -- torch payloads --------------------------------------------------------------------------------------
    def save(self, scene_id: Optional[str], name: str, payload: dict, *, kind: str, config=None, inputs=None,
             geometry: Optional[str] = None) -> Path:
        """Atomically save a dict of tensors / plain values with a header. Returns the file path.

        ``geometry``: the scene's :attr:`~sas_engine.scene.Scene.geometry_digest` for per-point artefacts."""
        import torch

        from .artefacts import validate

        if "__header__" in payload:
            raise ValueError("payload may not contain the key '__header__'")
        p = self.path(scene_id, name)
        validate(kind, payload, p, geometry)  # a writer's bug raises here, before anything is written
        obj = {"__header__": make_header(kind, config, inputs, geometry), **payload}
        return atomic_write(p, lambda f: torch.save(obj, f))

    def header(self, scene_id: Optional[str], name: str, ext: str = ".pt") -> Optional[dict]:
        """The header of a stored artefact, or ``None`` when it does not exist."""
        p = self.path(scene_id, name, ext)
        if not p.exists():
            return None
        return self._read(p, check_payload=False)["__header__"]

    def load(self, scene_id: Optional[str], name: str, *, kind: str, config=None, inputs=None,
             geometry: Optional[str] = None, map_location: str = "cpu", header: bool = False) -> Optional[dict]:
        """Load a payload; ``None`` when missing. Raises :class:`StaleArtefactError` when its header does not match
        the format version, kind, config, inputs or (when given) geometry digest the caller expects. ``header``
        keeps the header under ``"__header__"`` (its ``hash`` names this artefact as an input of later ones)."""
        p = self.path(scene_id, name)
        if not p.exists():
            return None
        obj = self._read(p, map_location)
        check_geometry(p, obj["__header__"], geometry)
        self._check(p, obj["__header__"], kind, config, inputs)
        if not header:
            obj.pop("__header__")
        return obj

    def read_any(self, scene_id: Optional[str], name: str, map_location: str = "cpu",
                 geometry: Optional[str] = None, ext: str = ".pt") -> Optional[dict]:
        """Load a payload made by *any* config (``None`` when missing), checking the format version, its schema and,
        when ``geometry`` is given, that it was computed on exactly those points. ``ext=".json"`` for JSON artefacts.

        For consumers that take whatever an earlier stage produced (use :func:`sas_engine.artefacts.read`, which also
        checks the kind); the header is returned under ``"__header__"`` so callers can report which config made it.
        """
        p = self.path(scene_id, name, ext)
        if not p.exists():
            return None
        obj = self._read(p, map_location)
        if obj["__header__"].get("format_version") != FORMAT_VERSION:
            raise StaleArtefactError(f"{p}: format version {obj['__header__'].get('format_version')} != {FORMAT_VERSION}")
        check_geometry(p, obj["__header__"], geometry)
        return obj

    def get_or_compute(self, scene_id: Optional[str], name: str, compute: Callable[[], dict], *, kind: str,
                       config=None, inputs=None, geometry: Optional[str] = None, recompute: bool = False,
                       header: bool = False) -> dict:
        """Return the cached payload, or compute, save and return it when missing, stale or ``recompute`` is set.
        ``header``: return the header under ``"__header__"`` too (see :meth:`load`)."""
        if not recompute:
            try:
                got = self.load(scene_id, name, kind=kind, config=config, inputs=inputs, geometry=geometry,
                                header=header)
            except StaleArtefactError as e:
                log.warning("recomputing %s", e)
                got = None
            if got is not None:
                return got
        payload = compute()
        self.save(scene_id, name, payload, kind=kind, config=config, inputs=inputs, geometry=geometry)
        if header:
            payload = dict(payload, __header__=make_header(kind, config, inputs, geometry))
        return payload

    # -- JSON payloads ---------------------------------------------------------------------------------------
    def save_json(self, scene_id: Optional[str], name: str, payload: dict, *, kind: str, config=None,
                  inputs=None) -> Path:
        """Atomically save a JSON payload with a header. Values JSON cannot hold raise :class:`TypeError` naming
        their key (numpy scalars / arrays, paths and dataclasses are converted; nothing is stringified silently)."""
        from .artefacts import to_json_value, validate

        if "__header__" in payload:
            raise ValueError("payload may not contain the key '__header__'")
        p = self.path(scene_id, name, ".json")
        body = to_json_value(payload)
        validate(kind, body, p)
        text = json.dumps({"__header__": make_header(kind, config, inputs), **body}, indent=1, sort_keys=False)
        return atomic_write(p, lambda f: f.write(text), mode="w")

    def load_json(self, scene_id: Optional[str], name: str, *, kind: str, config=None, inputs=None) -> Optional[dict]:
        p = self.path(scene_id, name, ".json")
        if not p.exists():
            return None
        obj = self._read(p)
        self._check(p, obj["__header__"], kind, config, inputs)
        obj.pop("__header__")
        return obj

    # -- raw files (PNG plots...) ----------------------------------------------------------------------------
    def write_bytes(self, scene_id: Optional[str], filename: str, data: bytes) -> Path:
        """Atomically write a plain file (e.g. a PNG) into a scene's folder."""
        stem, dot, ext = filename.rpartition(".")
        p = self.path(scene_id, stem if dot else filename, f".{ext}" if dot else "")
        return atomic_write(p, lambda f: f.write(data))

    def list(self, scene_id: Optional[str]) -> list[dict]:
        """Headers of all artefacts of a scene, each with ``name`` and ``file`` added; unreadable files reported."""
        d = self.scene_dir(scene_id)
        out = []
        if not d.is_dir():
            return out
        for p in sorted(d.iterdir()):
            if p.name.startswith(".") or p.suffix not in (".pt", ".json"):
                continue
            try:
                h = dict(self._read(p)["__header__"])
            except (SASInputError, StaleArtefactError) as e:
                h = {"kind": "unreadable", "error": str(e)}
            h.update(name=p.stem, file=str(p))
            out.append(h)
        return out

    # -- internals -------------------------------------------------------------------------------------------
    def _read(self, p: Path, map_location: str = "cpu", check_payload: bool = True) -> dict:
        """The file's object (header included). Raises :class:`StaleArtefactError` naming ``p`` when it is unreadable,
        has no header or (``check_payload``) its payload does not fit the schema of its kind
        (:mod:`sas_engine.artefacts`)."""
        from .artefacts import validate
        from .io.files import torch_load

        try:
            if p.suffix == ".json":
                obj = json.loads(p.read_text())
            else:  # tensors and plain values only: never unpickles objects, whatever SAS_TRUST_PICKLE says
                obj = torch_load(p, trust_pickle=False, what="artefact", map_location=map_location)
        except SASInputError as e:
            raise StaleArtefactError(f"{p}: not a readable artefact ({e.problem})") from e
        except Exception as e:  # corrupt or foreign file
            raise StaleArtefactError(f"{p}: not a readable artefact ({type(e).__name__}: {e})") from e
        if not isinstance(obj, dict) or not isinstance(obj.get("__header__"), dict):
            raise StaleArtefactError(f"{p}: has no artefact header (foreign file)")
        if check_payload:
            h = obj["__header__"]
            try:
                validate(h.get("kind"), {k: v for k, v in obj.items() if k != "__header__"}, p, h.get("geometry"))
            except SASInputError as e:
                raise StaleArtefactError(f"{e}: recompute it") from e
        return obj

    @staticmethod
    def _check(p: Path, h: dict, kind: str, config, inputs) -> None:
        if h.get("format_version") != FORMAT_VERSION:
            raise StaleArtefactError(f"{p}: format version {h.get('format_version')} != {FORMAT_VERSION}")
        if h.get("kind") != kind:
            raise StaleArtefactError(f"{p}: holds a {h.get('kind')!r} artefact, expected {kind!r}")
        want = config_hash(kind, config, inputs)
        if h.get("hash") != want:
            raise StaleArtefactError(f"{p}: made by another config or input (hash {h.get('hash')} != {want})")


def check_geometry(p: Path, h: dict, geometry: Optional[str]) -> None:
    """Raise :class:`StaleArtefactError` when the artefact at ``p`` (header ``h``) was not computed on the points whose
    digest is ``geometry`` (no check when ``geometry`` is None)."""
    if geometry is None:
        return
    got = h.get("geometry")
    if got != geometry:
        raise StaleArtefactError(
            f"{p}: computed on points {got or '(not recorded)'} but the scene now has points {geometry} "
            "(digest = point count:hash of the coordinates in order); the scene's geometry changed or was "
            "reordered since, so this artefact does not belong to these points: recompute it")

