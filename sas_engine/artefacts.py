"""Typed schemas of every artefact kind the store holds, and the one way to read an artefact.

Each kind the pipeline writes has one :class:`Schema` in :data:`SCHEMAS`: its payload fields, each with a type
(tensor dtype family, plain value) and, for tensors, a shape made of named dimensions. ``N`` is the scene's point
count, taken from the artefact's geometry digest (``"<N>:<hash>"``); every other name (``C``, ``T``, ``P``...) must
have one size across the payload, and a string list's length binds its dimension too (``teachers`` -> ``T``).

The store checks payloads against these schemas once, where every artefact passes: on save (a writer bug raises
before anything is written) and on read (a malformed file is refused like a stale one, naming the file). On top of
that, :func:`read` is the reader for consumers of whatever an earlier stage produced (evaluation, distillation,
instances, the app): any producing config, but the store format version, the points' geometry digest and the kind the
artefact's name implies (:func:`kind_for_name`) are all checked, and every problem is a
:class:`~sas_engine.errors.SASInputError` naming the file.

Kinds (torch payloads unless marked JSON):

* ``superpoints``: ``superpoints`` int [N];
* ``fused`` (``fused.<teacher>``, ``fused.sas|add|linear``, ``study.<variant>``): ``features`` float [N, C],
  optional ``mask`` bool [N], single teacher ``view_count`` int [N] and ``votes`` int [N, K], combined ``weights``
  float [N, T] over ``teachers`` (T names);
* ``pred3d`` (``pred3d.<run>``, student features): ``features`` float [N, C] or [A, N, C] (test-time augmentation
  passes), optional ``mask`` bool [N];
* ``instance_proposals`` (``instances.proposals``): ``indices`` int [M], ``offsets`` int [P + 1], ``num_points``,
  ``source`` (P names), optional ``scores`` float [P];
* ``instance_labels`` (``instances.<features>``): ``labels`` int [P], ``scores``, ``coverage`` float [P], ``probs``
  float [P, K] over ``names`` (K), ``pooled`` float [P, C];
* ``capability_images`` (shared ``capimages.<synth>``): ``images`` uint8 [M, H, W, 3], ``masks`` [M, H, W],
  ``classes`` int [M], ``provenance`` (M dicts);
* ``history`` (``history.<run>``, stage-2 self-distillation): ``history`` float [N, C], ``epoch``;
* ``feat2d.dense`` / ``feat2d.mask`` (``feat2d.<teacher>.<frame>``): one frame's teacher output (see
  :mod:`sas_engine.teachers.cache`);
* ``gaussians`` (``gaussians.fit``, stamped with the scene's geometry; G Gaussians, not N points): ``means``,
  ``log_scales``, ``color_logits`` float [G, 3], ``quats`` float [G, 4], ``opacity_logits`` float [G], the disjoint
  ``fit_frames`` and ``heldout_frames`` (frame indices), optional ``stats``;
* ``gaussian_features`` (``gaussians.lift.<source>``, ``gaussians.feat.<source>``): ``features`` float [G, C],
  ``mask`` [G], optional ``view_count`` int [G], ``weights`` float [G, T], ``seconds``, ``stats``;
* JSON ``capability`` (shared ``capability.<synth>``): ``teachers`` (T), ``classes`` (K), ``scores`` [T][K] (null =
  no estimate) and the optional per-variant tables; JSON ``feat2d.index``: an extraction index; JSON
  ``gaussian_eval`` (``gaussians.eval.<source>.<variant>``): ``confusion`` [K][K + 1] counts (last column: pixels
  without a prediction) over the held-out ``views``.

A kind not listed here (a test's or a user's own) is stored and read with header checks only.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .errors import SASInputError, StaleArtefactError

# -- field and schema types -----------------------------------------------------------------------------------------
DTYPES = ("float", "int", "bool", "uint8", "mask")
"""Tensor dtype families: floating point, integer (not bool), bool, uint8, and ``mask`` (bool or uint8 0/1)."""


@dataclass(frozen=True)
class Field:
    """One payload entry.

    Attributes:
        name: the payload key.
        type: ``tensor``, ``int``, ``str``, ``strs`` (list of str), ``list``, ``dict``, ``bool``, ``number``,
            ``matrix`` (JSON list of rows of numbers or nulls) or ``any``.
        dtype: for tensors, one of :data:`DTYPES`.
        shapes: for tensors, the allowed shapes (tuples of dimension names or ints); for ``matrix`` one 2-d shape.
        dim: for ``strs`` / ``list``, the dimension name their length binds.
        required: whether the key must be present (``None`` counts as absent).
    """

    name: str
    type: str = "tensor"
    dtype: Optional[str] = None
    shapes: tuple = ()
    dim: Optional[str] = None
    required: bool = True


@dataclass(frozen=True)
class Schema:
    """The payload of one artefact kind.

    Attributes:
        kind: the kind stamped in the header.
        ext: ``.pt`` (torch payload) or ``.json``.
        fields: the known entries (others are allowed and left alone).
        per_point: the artefact is stamped with the points' geometry digest (``N`` is checked against it).
        check: extra invariants, ``check(payload, sizes) -> problem | None`` (``sizes``: the bound dimensions).
        doc: one line on what it holds.
    """

    kind: str
    fields: tuple[Field, ...]
    ext: str = ".pt"
    per_point: bool = False
    check: Optional[Callable[[dict, dict], Optional[str]]] = None
    doc: str = ""

    def validate(self, payload: Any, path: Any = None, num_points: Optional[int] = None) -> dict:
        """Check ``payload`` against the schema; returns the bound dimension sizes. Raises :class:`SASInputError`
        naming ``path`` and the field on the first problem."""
        if not isinstance(payload, dict):
            raise SASInputError(path, f"a {self.kind!r} artefact must hold a dict, not {type(payload).__name__}")
        sizes: dict[str, int] = {}
        if num_points is not None:
            sizes["N"] = int(num_points)
        for f in self.fields:
            v = payload.get(f.name)
            if v is None:
                if f.required:
                    raise SASInputError(path, f"{self.kind!r} artefact lacks {f.name!r}")
                continue
            problem = _check_field(f, v, sizes)
            if problem:
                raise SASInputError(path, f"{self.kind!r} artefact: {f.name!r} {problem}")
        if self.check is not None:
            problem = self.check(payload, sizes)
            if problem:
                raise SASInputError(path, f"{self.kind!r} artefact: {problem}")
        return sizes


def _dtype_ok(t, family: str) -> bool:
    import torch

    if family == "float":
        return t.is_floating_point()
    if family == "int":
        return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool
    if family == "bool":
        return t.dtype == torch.bool
    if family == "uint8":
        return t.dtype == torch.uint8
    if family == "mask":
        return t.dtype in (torch.bool, torch.uint8)
    raise ValueError(f"unknown dtype family {family!r}")


def _bind(sizes: dict, dim, got: int) -> Optional[str]:
    if isinstance(dim, int):
        return None if got == dim else f"{got} != {dim}"
    if dim == "*":
        return None
    want = sizes.get(dim)
    if want is None:
        sizes[dim] = got
        return None
    if want == got:
        return None
    if dim == "N":
        return f"{got} rows but the points' geometry digest says N = {want} points (stale artefact?)"
    return f"{dim} = {got} here but {want} elsewhere"


def _shape_problem(shape: tuple, shapes: tuple, sizes: dict) -> Optional[str]:
    fits = [s for s in shapes if len(s) == len(shape)]
    if not fits:
        return f"has shape {list(shape)}, expected {' or '.join('[' + ', '.join(map(str, s)) + ']' for s in shapes)}"
    last = None
    for s in fits:
        trial = dict(sizes)
        bad = [p if d == "N" else f"dim {i} ({d}): {p}" for i, (d, g) in enumerate(zip(s, shape))
               if (p := _bind(trial, d, int(g)))]
        if not bad:
            sizes.update(trial)
            return None
        last = bad[0]
    return f"has shape {list(shape)}: {last}"


def _check_field(f: Field, v, sizes: dict) -> Optional[str]:
    import torch

    if f.type == "tensor":
        if not isinstance(v, torch.Tensor):
            return f"must be a tensor, not {type(v).__name__}"
        if f.dtype and not _dtype_ok(v, f.dtype):
            return f"has dtype {str(v.dtype).replace('torch.', '')}, expected {f.dtype}"
        return _shape_problem(tuple(v.shape), f.shapes, sizes) if f.shapes else None
    if f.type == "int":
        return None if isinstance(v, int) and not isinstance(v, bool) else f"must be an int, not {type(v).__name__}"
    if f.type == "bool":
        return None if isinstance(v, bool) else f"must be true/false, not {type(v).__name__}"
    if f.type == "number":
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        return None if ok else f"must be a number, not {type(v).__name__}"
    if f.type == "str":
        return None if isinstance(v, str) else f"must be a string, not {type(v).__name__}"
    if f.type in ("strs", "list"):
        if not isinstance(v, (list, tuple)):
            return f"must be a list, not {type(v).__name__}"
        if f.type == "strs" and not all(isinstance(x, str) for x in v):
            return "must be a list of strings"
        p = _bind(sizes, f.dim, len(v)) if f.dim else None
        return f"has {len(v)} entries: {p}" if p else None
    if f.type == "dict":
        return None if isinstance(v, dict) else f"must be a dict, not {type(v).__name__}"
    if f.type == "matrix":
        if not isinstance(v, list) or not all(isinstance(r, list) for r in v):
            return "must be a list of rows"
        if not all(x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for r in v for x in r):
            return "must hold numbers (or null)"
        rows = {len(r) for r in v}
        if len(rows) > 1:
            return f"has rows of different lengths {sorted(rows)}"
        return _shape_problem((len(v), rows.pop() if rows else 0), f.shapes, sizes) if f.shapes else None
    if f.type == "any":
        return None
    raise ValueError(f"unknown field type {f.type!r}")


def _check_proposals(obj: dict, sizes: dict) -> Optional[str]:
    off = obj["offsets"]
    if off.ndim != 1 or off.numel() < 1 or int(off[0]) != 0 or int(off[-1]) != obj["indices"].numel() \
            or bool((off[1:] < off[:-1]).any()):
        return "offsets are inconsistent with the indices"
    p = off.numel() - 1
    if "P" in sizes and sizes["P"] != p:
        return f"{p} proposals by their offsets but {sizes['P']} scores / sources"
    if "N" in sizes and obj["num_points"] != sizes["N"]:
        return f"num_points {obj['num_points']} but the points' digest says {sizes['N']}"
    return None


def _check_gaussian_frames(obj: dict, sizes: dict) -> Optional[str]:
    fit, held = obj["fit_frames"], obj["heldout_frames"]
    for key, v in (("fit_frames", fit), ("heldout_frames", held)):
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v):
            return f"{key!r} must hold frame indices (non-negative ints)"
    both = sorted(set(fit) & set(held))
    if both:
        return f"frames {both[:5]} are both fitted and held out"
    return None


def _check_gaussian_eval(obj: dict, sizes: dict) -> Optional[str]:
    conf = obj["confusion"]
    if conf and len(conf[0]) != len(conf) + 1:
        return f"'confusion' has {len(conf)} rows and {len(conf[0])} columns, expected {len(conf) + 1} (K + 1)"
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for r in conf for x in r):
        return "'confusion' must hold pixel counts (non-negative ints)"
    return None


# -- the registry -----------------------------------------------------------------------------------------------
def _t(name, dtype, *shapes, required=True) -> Field:
    return Field(name, "tensor", dtype, tuple(shapes), required=required)


SCHEMAS: dict[str, Schema] = {s.kind: s for s in (
    Schema("superpoints", (_t("superpoints", "int", ("N",)),), per_point=True,
           doc="superpoint id per point"),
    Schema("fused", (_t("features", "float", ("N", "C")), _t("mask", "mask", ("N",), required=False),
                     _t("view_count", "int", ("N",), required=False), _t("votes", "int", ("N", "K"), required=False),
                     _t("weights", "float", ("N", "T"), required=False),
                     Field("teachers", "strs", dim="T", required=False)), per_point=True,
           doc="fused 2D features per point (single teacher, or a multi-teacher combination)"),
    Schema("pred3d", (_t("features", "float", ("N", "C"), ("A", "N", "C")),
                      _t("mask", "mask", ("N",), required=False)), per_point=True,
           doc="3D student features per point"),
    Schema("instance_proposals", (_t("indices", "int", ("M",)), _t("offsets", "int", ("*",)),
                                  Field("num_points", "int"), Field("source", "strs", dim="P", required=False),
                                  _t("scores", "float", ("P",), required=False)),
           per_point=True, check=_check_proposals, doc="class-agnostic instance proposals (CSR point lists)"),
    Schema("instance_labels", (_t("labels", "int", ("P",)), _t("scores", "float", ("P",)),
                               _t("probs", "float", ("P", "K")), _t("pooled", "float", ("P", "C")),
                               _t("coverage", "float", ("P",)), Field("names", "strs", dim="K")), per_point=True,
           doc="instance proposals labelled with a feature source"),
    Schema("capability_images", (_t("images", "uint8", ("M", "H", "W", 3)), _t("masks", None, ("M", "H", "W")),
                                 _t("classes", "int", ("M",)), Field("provenance", "list", dim="M")),
           doc="synthesized capability images with their pseudo masks"),
    Schema("history", (_t("history", "float", ("N", "C")), Field("epoch", "int")), per_point=True,
           doc="stage-2 self-distillation history per point"),
    Schema("feat2d.dense", (_t("feat", "float", ("h", "w", "C")), _t("valid", "bool", ("h", "w"), required=False),
                            Field("image_size", "list", required=False)),
           doc="one frame's dense teacher features"),
    Schema("feat2d.mask", (_t("seg", "int", ("H", "W")), _t("emb", "float", ("S", "C")),
                           Field("labels", "strs", required=False), Field("texts", "strs", required=False),
                           _t("scores", "float", ("S",), required=False), Field("image_size", "list", required=False)),
           doc="one frame's mask teacher segments with text-aligned embeddings"),
    Schema("capability", (Field("teachers", "strs", dim="T"), Field("classes", "strs", dim="K"),
                          Field("scores", "matrix", shapes=(("T", "K"),)), Field("mode", "str", required=False),
                          Field("scores_pooled", "matrix", shapes=(("T", "K"),), required=False),
                          Field("scores_per_image", "matrix", shapes=(("T", "K"),), required=False),
                          Field("image_counts", "list", dim="K", required=False),
                          Field("linear_weights", "list", dim="T", required=False),
                          Field("linear_miou", "number", required=False),
                          Field("words", "strs", dim="K", required=False), Field("images", "list", required=False)),
           ext=".json", doc="per-teacher per-class capability table"),
    Schema("feat2d.index", (Field("frames", "dict", required=False), Field("complete", "bool", required=False)),
           ext=".json", doc="a scene's teacher-extraction index"),
    Schema("gaussians", (_t("means", "float", ("G", 3)), _t("quats", "float", ("G", 4)),
                         _t("log_scales", "float", ("G", 3)), _t("opacity_logits", "float", ("G",)),
                         _t("color_logits", "float", ("G", 3)), Field("fit_frames", "list"),
                         Field("heldout_frames", "list"), Field("stats", "dict", required=False)),
           per_point=True, check=_check_gaussian_frames, doc="a scene's fitted 3D Gaussians"),
    Schema("gaussian_features", (_t("features", "float", ("G", "C")), _t("mask", "mask", ("G",)),
                                 _t("view_count", "int", ("G",), required=False),
                                 _t("weights", "float", ("G", "T"), required=False),
                                 Field("seconds", "number", required=False), Field("stats", "dict", required=False)),
           per_point=True, doc="features per Gaussian (lifted from a teacher or fusion, or the distilled encoder's)"),
    Schema("gaussian_eval", (Field("confusion", "matrix", shapes=(("K", "*"),)), Field("views", "list")),
           ext=".json", check=_check_gaussian_eval, doc="confusion of rendered Gaussian labels on held-out views"),
)}
"""Every artefact kind the pipeline writes, by kind."""

_NAME_KINDS: tuple[tuple[str, str, str], ...] = (
    # (prefix or exact name, extension, kind); first match wins
    ("superpoints", ".pt", "superpoints"),
    ("instances.proposals", ".pt", "instance_proposals"),
    ("instances.", ".pt", "instance_labels"),
    ("fused.", ".pt", "fused"),
    ("study.", ".pt", "fused"),
    ("pred3d.", ".pt", "pred3d"),
    ("history.", ".pt", "history"),
    ("capimages.", ".pt", "capability_images"),
    ("capability.", ".json", "capability"),
    ("feat2d.", ".json", "feat2d.index"),
    ("gaussians.fit", ".pt", "gaussians"),
    ("gaussians.lift.", ".pt", "gaussian_features"),
    ("gaussians.feat.", ".pt", "gaussian_features"),
    ("gaussians.eval.", ".json", "gaussian_eval"),
)


def kind_for_name(name: str, ext: str = ".pt") -> Optional[str]:
    """The kind an artefact name implies (``fused.sas`` -> ``fused``), or ``None`` when names do not fix it
    (``feat2d.<teacher>.<frame>`` is dense or mask by its teacher; names of users' own kinds)."""
    for prefix, e, kind in _NAME_KINDS:
        if e == ext and (name == prefix if not prefix.endswith(".") else name.startswith(prefix)):
            return kind
    return None


def points_of(geometry: Optional[str]) -> Optional[int]:
    """The point count recorded in a geometry digest ``"<N>:<hash>"`` (``None`` when absent or malformed)."""
    if not isinstance(geometry, str):
        return None
    head, sep, _ = geometry.partition(":")
    return int(head) if sep and head.isdigit() else None


def validate(kind: Optional[str], payload: dict, path: Any = None, geometry: Optional[str] = None) -> None:
    """Check ``payload`` against the schema of ``kind`` (nothing for kinds without one); ``N`` is the point count of
    ``geometry``. Raises :class:`SASInputError` naming ``path``. The store calls this on every save and read."""
    schema = SCHEMAS.get(kind) if kind else None
    if schema is not None:
        schema.validate(payload, path, points_of(geometry))


# -- the reader ---------------------------------------------------------------------------------------------------
_BY_NAME = object()


def read(store, scene_id: Optional[str], name: str, *, geometry: Optional[str] = None, kind: Any = _BY_NAME,
         required: bool = False, header: bool = False, hint: str = "") -> Optional[dict]:
    """A stored torch artefact made by any config, checked: format version, its schema, the points' ``geometry``
    digest (when given) and its kind (default: the kind its name implies; ``kind=None`` skips that check but still
    validates against the name's schema).

    Returns the payload (with ``"__header__"`` when ``header``), or ``None`` when it does not exist and not
    ``required``. Raises :class:`SASInputError` naming the file on every problem (missing and ``required``: ``hint``
    says which stage makes it).
    """
    p = store.path(scene_id, name)
    try:
        obj = store.read_any(scene_id, name, geometry=geometry)
    except StaleArtefactError as e:
        msg = str(e)
        raise SASInputError(None, msg if "recompute" in msg else f"{msg}: recompute it") from e
    if obj is None:
        if required:
            raise SASInputError(p, f"missing artefact {name!r} for scene {scene_id}"
                                   + (f": {hint}" if hint else ": run the earlier pipeline stage first"))
        return None
    h = obj["__header__"]
    want = kind_for_name(name) if kind is _BY_NAME else kind
    if want is not None and h.get("kind") != want:
        raise SASInputError(p, f"holds a {h.get('kind')!r} artefact, not {want!r}")
    if h.get("kind") != (want or kind_for_name(name)):  # not yet checked by the store against the name's schema
        validate(kind_for_name(name), obj, p, h.get("geometry") or geometry)
    if not header:
        obj.pop("__header__")
    return obj


def read_json(store, scene_id: Optional[str], name: str, *, kind: Optional[str] = None,
              required: bool = False, hint: str = "") -> Optional[dict]:
    """A stored JSON artefact made by any config (format version, kind - default: by name - and schema checked);
    ``None`` when missing and not ``required``. Raises :class:`SASInputError` naming the file."""
    p = store.path(scene_id, name, ".json")
    kind = kind or kind_for_name(name, ".json")
    try:
        obj = store.read_any(scene_id, name, ext=".json")
    except StaleArtefactError as e:
        msg = str(e)
        raise SASInputError(None, msg if "recompute" in msg else f"{msg}: recompute it") from e
    if obj is None:
        if required:
            raise SASInputError(p, f"missing artefact {name!r}" + (f": {hint}" if hint else ""))
        return None
    h = obj.pop("__header__")
    if kind is not None and h.get("kind") != kind:
        raise SASInputError(p, f"holds a {h.get('kind')!r} artefact, not {kind!r}")
    return obj


# -- JSON values ----------------------------------------------------------------------------------------------------
def to_json_value(obj: Any, where: str = "") -> Any:
    """``obj`` with numpy scalars and arrays, paths, tuples and dataclasses turned into plain JSON values.

    Anything else that JSON cannot hold raises :class:`TypeError` naming its key path and type: an artefact is never
    written with a silently stringified value."""
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        return obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"cannot write a {type(k).__name__} key at {where or '<root>'} into a JSON artefact")
            out[k] = to_json_value(v, f"{where}.{k}" if where else str(k))
        return out
    if isinstance(obj, (list, tuple)):
        return [to_json_value(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return to_json_value(obj.tolist(), where)
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_json_value(dataclasses.asdict(obj), where)
    raise TypeError(f"cannot write {type(obj).__module__}.{type(obj).__name__} at key {where or '<root>'} into a "
                    "JSON artefact (convert it to numbers, strings, lists or dicts first)")


__all__ = ["Field", "Schema", "SCHEMAS", "DTYPES", "kind_for_name", "points_of", "validate", "read", "read_json",
           "to_json_value"]
