"""PLY reader/writer: every scalar type, binary LE/BE and ASCII, lists, polygons, corrupt and truncated files."""
import struct

import numpy as np
import pytest

from sas_engine.errors import SASInputError
from sas_engine.io import read_ply, write_ply

ALL_TYPES = {"c": np.int8, "uc": np.uint8, "s": np.int16, "us": np.uint16, "i": np.int32, "ui": np.uint32,
             "f": np.float32, "d": np.float64}


def _vertex(n=7):
    rng = np.random.default_rng(1)
    v = {}
    for k, t in ALL_TYPES.items():
        if np.dtype(t).kind == "f":
            v[k] = (rng.standard_normal(n) * 100).astype(t)
        else:
            info = np.iinfo(t)
            v[k] = rng.integers(info.min, info.max, n, endpoint=True, dtype=np.int64).astype(t)
    return v


@pytest.mark.parametrize("binary", [True, False])
def test_roundtrip_all_types(tmp_path, binary):
    v = _vertex()
    faces = np.array([[0, 1, 2], [2, 3, 4], [6, 5, 4]])
    p = write_ply(tmp_path / "a.ply", v, faces, binary=binary)
    r = read_ply(p)
    assert list(r["vertex"]) == list(v)
    for k, a in v.items():
        assert r["vertex"][k].dtype == a.dtype, k
        np.testing.assert_array_equal(r["vertex"][k], a)
    assert r["face"].dtype == np.int64
    np.testing.assert_array_equal(r["face"], faces)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_no_faces_and_int64_bool_columns(tmp_path):
    p = write_ply(tmp_path / "b.ply", {"x": np.arange(3, dtype=np.int64), "flag": np.array([True, False, True])})
    r = read_ply(p)
    assert r["face"] is None
    assert r["vertex"]["x"].dtype == np.int32 and r["vertex"]["flag"].tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="does not fit"):
        write_ply(tmp_path / "c.ply", {"x": np.array([2 ** 40])})
    with pytest.raises(ValueError, match="expected 3"):
        write_ply(tmp_path / "c.ply", {"x": np.zeros(3), "y": np.zeros(4)})


def _header(fmt, n_v, n_f, count="uchar", index="int", extra=""):
    return (f"ply\nformat {fmt} 1.0\ncomment made by test\nelement vertex {n_v}\nproperty float x\nproperty float y\n"
            f"property float z\nproperty uchar red\n{extra}element face {n_f}\n"
            f"property list {count} {index} vertex_indices\nend_header\n").encode()


def test_big_endian_with_int_counts_and_quads(tmp_path):
    pts = [(0, 0, 0, 1), (1, 0, 0, 2), (1, 1, 0, 3), (0, 1, 0, 4), (2, 2, 2, 5)]
    body = b"".join(struct.pack(">fffB", *p) for p in pts)
    body += struct.pack(">i4i", 4, 0, 1, 2, 3)  # one quad -> two triangles
    body += struct.pack(">i3i", 3, 1, 2, 4)
    (tmp_path / "be.ply").write_bytes(_header("binary_big_endian", 5, 2, "int", "int") + body)
    r = read_ply(tmp_path / "be.ply")
    np.testing.assert_allclose(r["vertex"]["x"], [0, 1, 1, 0, 2])
    assert r["vertex"]["red"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(r["face"], [[0, 1, 2], [0, 2, 3], [1, 2, 4]])


def test_ascii_polygons_and_extra_element(tmp_path):
    text = (_header("ascii", 4, 2, extra="").decode().replace("end_header\n", "element edge 1\nproperty int a\n"
                                                               "property int b\nend_header\n")
            + "0 0 0 9\n1 0 0 9\n1 1 0 9\n0 1 0 9\n4 0 1 2 3\n3 0 2 3\n0 3\n")
    (tmp_path / "a.ply").write_text(text)
    r = read_ply(tmp_path / "a.ply")
    np.testing.assert_array_equal(r["face"], [[0, 1, 2], [0, 2, 3], [0, 2, 3]])
    assert r["elements"]["edge"]["b"].tolist() == [3]


def test_binary_triangles_with_ushort_index_and_extra_face_property(tmp_path):
    hdr = _header("binary_little_endian", 3, 2, "uchar", "ushort").replace(
        b"end_header", b"property uchar flags\nend_header")
    body = b"".join(struct.pack("<fffB", i, 0, 0, i) for i in range(3))
    body += struct.pack("<B3HB", 3, 0, 1, 2, 7) + struct.pack("<B3HB", 3, 2, 1, 0, 8)
    (tmp_path / "t.ply").write_bytes(hdr + body)
    r = read_ply(tmp_path / "t.ply")
    np.testing.assert_array_equal(r["face"], [[0, 1, 2], [2, 1, 0]])


def test_open3d_interoperability(tmp_path):
    o3d = pytest.importorskip("open3d")
    mesh = o3d.geometry.TriangleMesh.create_box()
    mesh.compute_vertex_normals()
    for ascii_ in (False, True):
        p = tmp_path / f"box_{ascii_}.ply"
        o3d.io.write_triangle_mesh(str(p), mesh, write_ascii=ascii_)
        r = read_ply(p)
        got = np.stack([r["vertex"][k] for k in "xyz"], 1)
        np.testing.assert_allclose(got, np.asarray(mesh.vertices), atol=1e-6)
        np.testing.assert_array_equal(r["face"], np.asarray(mesh.triangles))
    # and open3d reads what we write
    pts = np.asarray(mesh.vertices, np.float32)
    write_ply(tmp_path / "ours.ply", {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]}, np.asarray(mesh.triangles))
    back = o3d.io.read_triangle_mesh(str(tmp_path / "ours.ply"))
    assert len(back.triangles) == 12 and np.allclose(np.asarray(back.vertices), pts)


def _good(tmp_path):
    v = {"x": np.arange(50, dtype=np.float32), "y": np.zeros(50, np.float32), "z": np.ones(50, np.float32)}
    return write_ply(tmp_path / "g.ply", v, np.array([[0, 1, 2]] * 30))


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.999])
def test_truncated_binary_names_file(tmp_path, cut):
    data = _good(tmp_path).read_bytes()
    bad = tmp_path / "trunc.ply"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(SASInputError, match="trunc") as e:
        read_ply(bad)
    assert e.value.path == bad


def test_truncated_ascii(tmp_path):
    p = write_ply(tmp_path / "a.ply", {"x": np.arange(5.0), "y": np.arange(5.0)}, np.array([[0, 1, 2], [1, 2, 3]]),
                  binary=False)
    text = p.read_text()
    p.write_text(text[: len(text) - 8])
    with pytest.raises(SASInputError, match="truncated"):
        read_ply(p)


@pytest.mark.parametrize("content, msg", [
    (b"", "not a PLY"),
    (b"\x89PNG\r\n\x1a\n garbage", "not a PLY"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n", "end_header"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float128 x\nend_header\n", "header line"),
    (b"ply\nformat weird 1.0\nelement vertex 1\nproperty float x\nend_header\n", "unknown PLY format"),
    (b"ply\nelement vertex 1\nproperty float x\nend_header\n\0\0\0\0", "no 'format'"),
    (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n1.0 abc\n", "non-numeric"),
    (b"ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n3 0 1 2\n",
     "no 'vertex'"),
])
def test_corrupt_files(tmp_path, content, msg):
    p = tmp_path / "bad.ply"
    p.write_bytes(content)
    with pytest.raises(SASInputError, match=msg) as e:
        read_ply(p)
    assert str(p) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(SASInputError, match="not found"):
        read_ply(tmp_path / "nope.ply")


@pytest.mark.parametrize("fmt", ["binary_little_endian", "ascii"])
def test_all_quads_fast_path(tmp_path, fmt):
    verts = [(0, 0, 0, 1), (1, 0, 0, 2), (1, 1, 0, 3), (0, 1, 0, 4), (2, 0, 0, 5), (2, 1, 0, 6)]
    quads = [(0, 1, 2, 3), (1, 4, 5, 2)]
    if fmt == "ascii":
        body = "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in verts)
        body = (body + "".join(f"4 {a} {b} {c} {d}\n" for a, b, c, d in quads)).encode()
    else:
        body = b"".join(struct.pack("<fffB", *v) for v in verts) + b"".join(struct.pack("<B4i", 4, *q) for q in quads)
    (tmp_path / "q.ply").write_bytes(_header(fmt, 6, 2) + body)
    r = read_ply(tmp_path / "q.ply")
    np.testing.assert_array_equal(r["face"], [[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2]])
    assert r["vertex"]["red"].tolist() == [1, 2, 3, 4, 5, 6]
