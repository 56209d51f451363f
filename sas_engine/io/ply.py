"""PLY reading and writing (binary little/big endian and ASCII), vectorised with numpy.

:func:`read_ply` returns ``{"vertex": {prop: ndarray [N]}, "face": int64 [F, 3] | None, "elements": {...}}``.
Any scalar property type is supported (``char/uchar/short/ushort/int/uint/float/double`` and their ``int8``...
``float64`` aliases); faces are read from the list property ``vertex_indices`` (or ``vertex_index``) with any count
and index type; polygons with more than three corners are fan-triangulated. Binary files whose faces are all
triangles are read with a single structured-dtype view (no Python loop per face). Other elements with only scalar
properties are returned under ``"elements"``.

Truncated or corrupt files raise :class:`~sas_engine.errors.SASInputError` naming the file.
:func:`write_ply` writes atomically through :func:`sas_engine.store.atomic_write`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import SASInputError

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_WRITE_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint",
                "f4": "float", "f8": "double"}
_FACE_PROPS = ("vertex_indices", "vertex_index")
_MAX_HEADER = 1 << 20


class _Element:
    def __init__(self, name: str, count: int):
        self.name = name
        self.count = count
        self.props: list[tuple] = []  # (name, dtype) or (name, count_dtype, item_dtype)

    @property
    def has_list(self) -> bool:
        return any(len(p) == 3 for p in self.props)


def _parse_header(path: Path, data: bytes) -> tuple[str, list[_Element], int]:
    if not data.startswith(b"ply"):
        raise SASInputError(path, "not a PLY file (missing 'ply' magic line)")
    end = data.find(b"end_header", 0, _MAX_HEADER)
    if end < 0:
        raise SASInputError(path, "corrupt PLY header (no 'end_header' line; file truncated?)")
    nl = data.find(b"\n", end)
    body_start = len(data) if nl < 0 else nl + 1
    try:
        text = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise SASInputError(path, "corrupt PLY header (non-ASCII bytes)") from None
    fmt = None
    elements: list[_Element] = []
    for line in text.replace("\r", "").split("\n")[1:]:
        tok = line.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        try:
            if tok[0] == "format":
                fmt = tok[1]
                if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
                    raise SASInputError(path, f"unknown PLY format {fmt!r}")
            elif tok[0] == "element":
                count = int(tok[2])
                if count < 0:
                    raise ValueError
                elements.append(_Element(tok[1], count))
            elif tok[0] == "property":
                if not elements:
                    raise SASInputError(path, "PLY property before any element in the header")
                if tok[1] == "list":
                    elements[-1].props.append((tok[4], _TYPES[tok[2]], _TYPES[tok[3]]))
                else:
                    elements[-1].props.append((tok[2], _TYPES[tok[1]]))
            else:
                raise SASInputError(path, f"corrupt PLY header line {line.strip()!r}")
        except SASInputError:
            raise
        except (IndexError, KeyError, ValueError):
            raise SASInputError(path, f"corrupt PLY header line {line.strip()!r}") from None
    if fmt is None:
        raise SASInputError(path, "corrupt PLY header (no 'format' line)")
    return fmt, elements, body_start


def read_ply(path: str | Path) -> dict:
    """Read a PLY file.

    Returns:
        ``{"vertex": {name: ndarray [N]}, "face": int64 [F, 3] or None, "elements": {name: {prop: ndarray}}}``;
        vertex arrays keep their stored dtype (e.g. float32 ``x``, uint8 ``red``).
    Raises:
        SASInputError: missing, truncated or corrupt file (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise SASInputError(path, "file not found" if not path.exists() else "is not a file")
    data = path.read_bytes()
    fmt, elements, pos = _parse_header(path, data)
    out: dict = {"vertex": None, "face": None, "elements": {}}
    if fmt == "ascii":
        _read_ascii(path, data[pos:], elements, out)
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        for el in elements:
            pos = _read_binary_element(path, data, pos, el, order, out)
    if out["vertex"] is None:
        raise SASInputError(path, "PLY file has no 'vertex' element")
    return out


def _store(path: Path, el: _Element, arrays: dict, faces: Optional[np.ndarray], out: dict) -> None:
    if el.name == "vertex":
        out["vertex"] = arrays
    elif el.name == "face":
        out["face"] = faces if faces is not None else np.zeros((0, 3), np.int64)
    else:
        out["elements"][el.name] = arrays


def _read_binary_element(path: Path, data: bytes, pos: int, el: _Element, order: str, out: dict) -> int:
    if not el.has_list:
        dt = np.dtype([(p[0], order + p[1]) for p in el.props])
        need = dt.itemsize * el.count
        if pos + need > len(data):
            raise SASInputError(path, f"truncated PLY: element '{el.name}' needs {need} bytes, "
                                      f"{max(len(data) - pos, 0)} left")
        rec = np.frombuffer(data, dtype=dt, count=el.count, offset=pos)
        _store(path, el, {p[0]: rec[p[0]].copy() for p in el.props}, None, out)
        return pos + need
    # fast path: every list as long as in the first element (triangles, quads) -> one structured view, verified
    lens = _first_lengths_binary(data, pos, el, order)
    if lens is not None and el.count > 0:
        fields, li = [], iter(lens)
        for p in el.props:
            if len(p) == 3:
                fields += [(p[0] + "__n", order + p[1]), (p[0], order + p[2], (next(li),))]
            else:
                fields.append((p[0], order + p[1]))
        dt = np.dtype(fields)
        need = dt.itemsize * el.count
        if pos + need <= len(data):
            rec = np.frombuffer(data, dtype=dt, count=el.count, offset=pos)
            if all((rec[p[0] + "__n"] == k).all() for p, k in zip([q for q in el.props if len(q) == 3], lens)):
                arrays = {p[0]: rec[p[0]].copy() for p in el.props}
                _store(path, el, arrays, _face_array(path, el, arrays), out)
                return pos + need
    return _read_binary_variable(path, data, pos, el, order, out)


def _first_lengths_binary(data: bytes, pos: int, el: _Element, order: str) -> Optional[list[int]]:
    """List lengths of the element's first record, or None when the data ends first."""
    lens = []
    try:
        for p in el.props:
            if len(p) == 3:
                cdt = np.dtype(order + p[1])
                n = int(np.frombuffer(data, cdt, 1, pos)[0])
                if n < 0:
                    return None
                lens.append(n)
                pos += cdt.itemsize + np.dtype(p[2]).itemsize * n
            else:
                pos += np.dtype(p[1]).itemsize
    except ValueError:
        return None
    return lens


def _read_binary_variable(path: Path, data: bytes, pos: int, el: _Element, order: str, out: dict) -> int:
    """General path for lists of varying length (polygons): one small step per element."""
    arrays: dict[str, list] = {p[0]: [] for p in el.props}
    try:
        for _ in range(el.count):
            for p in el.props:
                if len(p) == 3:
                    cdt, idt = np.dtype(order + p[1]), np.dtype(order + p[2])
                    n = int(np.frombuffer(data, cdt, 1, pos)[0])
                    pos += cdt.itemsize
                    if n < 0:
                        raise SASInputError(path, f"corrupt PLY: negative list length in '{el.name}'")
                    arrays[p[0]].append(np.frombuffer(data, idt, n, pos))
                    pos += idt.itemsize * n
                else:
                    sdt = np.dtype(order + p[1])
                    arrays[p[0]].append(np.frombuffer(data, sdt, 1, pos)[0])
                    pos += sdt.itemsize
    except ValueError:  # frombuffer past the end
        raise SASInputError(path, f"truncated PLY: element '{el.name}' ends early") from None
    res = {p[0]: (arrays[p[0]] if len(p) == 3 else np.array(arrays[p[0]])) for p in el.props}
    _store(path, el, res, _face_array(path, el, res), out)
    return pos


def _read_ascii(path: Path, body: bytes, elements: list[_Element], out: dict) -> None:
    try:
        tok = np.array(body.split(), dtype=np.float64)
    except ValueError:
        raise SASInputError(path, "corrupt ASCII PLY: non-numeric value in the body") from None
    pos = 0
    for el in elements:
        if not el.has_list:
            k = len(el.props)
            need = k * el.count
            if pos + need > len(tok):
                raise SASInputError(path, f"truncated PLY: element '{el.name}' needs {need} values, "
                                          f"{len(tok) - pos} left")
            block = tok[pos:pos + need].reshape(el.count, k)
            _store(path, el, {p[0]: block[:, j].astype(p[1]) for j, p in enumerate(el.props)}, None, out)
            pos += need
            continue
        pos = _read_ascii_list_element(path, tok, pos, el, out)


def _read_ascii_list_element(path: Path, tok: np.ndarray, pos: int, el: _Element, out: dict) -> int:
    # fast path: every list as long as in the first element -> fixed stride
    lens, q = [], pos
    for p in el.props:
        if len(p) == 3 and q < len(tok) and tok[q] >= 0:
            lens.append(int(tok[q]))
            q += 1 + int(tok[q])
        else:
            q += 1
    stride = q - pos
    need = stride * el.count
    if len(lens) == sum(len(p) == 3 for p in el.props) and pos + need <= len(tok) and el.count > 0:
        block = tok[pos:pos + need].reshape(el.count, stride)
        j, ok, arrays, li = 0, True, {}, iter(lens)
        for p in el.props:
            if len(p) == 3:
                k = next(li)
                ok &= bool((block[:, j] == k).all())
                arrays[p[0]] = block[:, j + 1:j + 1 + k].astype(p[2])
                j += 1 + k
            else:
                arrays[p[0]] = block[:, j].astype(p[1])
                j += 1
        if ok:
            _store(path, el, arrays, _face_array(path, el, arrays), out)
            return pos + need
    lists: dict[str, list] = {p[0]: [] for p in el.props}
    for _ in range(el.count):
        for p in el.props:
            if pos >= len(tok):
                raise SASInputError(path, f"truncated PLY: element '{el.name}' ends early")
            if len(p) == 3:
                n = int(tok[pos])
                if n < 0 or pos + 1 + n > len(tok):
                    raise SASInputError(path, f"truncated or corrupt PLY list in element '{el.name}'")
                lists[p[0]].append(tok[pos + 1:pos + 1 + n].astype(p[2]))
                pos += 1 + n
            else:
                lists[p[0]].append(tok[pos])
                pos += 1
    res = {p[0]: (lists[p[0]] if len(p) == 3 else np.array(lists[p[0]], dtype=p[1])) for p in el.props}
    _store(path, el, res, _face_array(path, el, res), out)
    return pos


def _face_array(path: Path, el: _Element, arrays: dict) -> Optional[np.ndarray]:
    if el.name != "face":
        return None
    key = next((k for k in _FACE_PROPS if k in arrays), None)
    if key is None:
        raise SASInputError(path, "PLY 'face' element has no 'vertex_indices' list")
    v = arrays[key]
    if isinstance(v, np.ndarray):  # [F, k] polygons of one size: vectorised fan triangulation
        v = v.astype(np.int64)
        k = v.shape[1]
        if k < 3:
            return np.zeros((0, 3), np.int64)
        fan = [np.stack([v[:, 0], v[:, i], v[:, i + 1]], axis=1) for i in range(1, k - 1)]
        return np.stack(fan, axis=1).reshape(-1, 3)
    tris = []
    for poly in v:  # fan triangulation of polygons
        poly = np.asarray(poly, dtype=np.int64)
        if len(poly) < 3:
            continue
        tris.append(np.stack([np.full(len(poly) - 2, poly[0]), poly[1:-1], poly[2:]], axis=1))
    return np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)


def _ply_dtype(name: str, a: np.ndarray) -> np.dtype:
    if a.dtype == np.bool_:
        return np.dtype("u1")
    if a.dtype.kind == "i" and a.dtype.itemsize == 8:
        return np.dtype("i4")
    if a.dtype.kind == "u" and a.dtype.itemsize == 8:
        return np.dtype("u4")
    key = a.dtype.newbyteorder("=").str[1:] if a.dtype.kind in "iuf" else None
    if key not in _WRITE_NAMES:
        raise ValueError(f"write_ply: property {name!r} has unsupported dtype {a.dtype}")
    return np.dtype(key)


def write_ply(path: str | Path, vertex: dict, faces: Optional[np.ndarray] = None, binary: bool = True) -> Path:
    """Write a PLY atomically.

    Args:
        path: output file.
        vertex: ordered ``{property: ndarray [N]}`` (e.g. ``x, y, z, red, green, blue, label``); dtypes map to PLY
            types (bool -> uchar, int64 -> int, uint64 -> uint; ints must then fit 32 bits).
        faces: optional int [F, 3] triangle vertex indices (written as ``list uchar int vertex_indices``).
        binary: binary little-endian (default) or ASCII.
    Returns:
        the written path.
    """
    from ..store import atomic_write

    cols = {}
    n = None
    for name, a in vertex.items():
        a = np.asarray(a)
        if a.ndim != 1:
            raise ValueError(f"write_ply: property {name!r} must be 1-D, got shape {a.shape}")
        if n is None:
            n = len(a)
        elif len(a) != n:
            raise ValueError(f"write_ply: property {name!r} has {len(a)} values, expected {n}")
        dt = _ply_dtype(name, a)
        if a.dtype.itemsize == 8 and a.dtype.kind in "iu" and a.size and (
                a.min() < np.iinfo(dt).min or a.max() > np.iinfo(dt).max):
            raise ValueError(f"write_ply: property {name!r} does not fit {dt}")
        cols[name] = a.astype(dt, copy=False)
    if n is None:
        raise ValueError("write_ply: no vertex properties given")
    f = None
    if faces is not None:
        f = np.asarray(faces)
        if f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"write_ply: faces must be [F, 3], got {f.shape}")
        f = f.astype(np.int32)
    head = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", f"element vertex {n}"]
    head += [f"property {_WRITE_NAMES[c.dtype.str[1:]]} {k}" for k, c in cols.items()]
    if f is not None:
        head += [f"element face {len(f)}", "property list uchar int vertex_indices"]
    header = ("\n".join(head) + "\nend_header\n").encode("ascii")

    def write(fh):
        fh.write(header)
        if binary:
            rec = np.empty(n, dtype=np.dtype([(k, "<" + c.dtype.str[1:]) for k, c in cols.items()]))
            for k, c in cols.items():
                rec[k] = c
            fh.write(rec.tobytes())
            if f is not None:
                frec = np.empty(len(f), dtype=np.dtype([("n", "u1"), ("v", "<i4", (3,))]))
                frec["n"] = 3
                frec["v"] = f
                fh.write(frec.tobytes())
        else:
            fmts = [("%.9g" if c.itemsize == 4 else "%.17g") if c.dtype.kind == "f" else "%d" for c in cols.values()]
            if n:
                table = np.column_stack([c.astype(np.float64) for c in cols.values()])
                np.savetxt(fh, table, fmt=fmts, delimiter=" ")
            if f is not None and len(f):
                np.savetxt(fh, np.column_stack([np.full(len(f), 3), f]), fmt="%d", delimiter=" ")

    return atomic_write(path, write)
