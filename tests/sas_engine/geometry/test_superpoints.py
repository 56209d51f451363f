"""Superpoints: Segmentator rules on hand-made meshes, against a plain-Python reference, connectivity, sizes."""
import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from sas_engine.errors import SASInputError
from sas_engine.geometry import (SuperpointConfig, compact_ids, compute_superpoints, compute_superpoints_knn,
                                 superpoints_for_scene)
from sas_engine.geometry.superpoints import edge_weights, mesh_edges, segmentator_vertex_normals, weld_vertices
from sas_engine.scene import Scene


def grid(nx, ny, fn, offset=0):
    """Triangulated grid: vertex (i, j) at fn(i, j); two triangles per cell."""
    ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    pts = np.array([fn(i, j) for i, j in zip(ii.ravel(), jj.ravel())], np.float32)
    idx = np.arange(nx * ny).reshape(nx, ny) + offset
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
    return pts, faces


def two_planes(n=15, h=0.05):
    """Floor (z = 0, x >= 0) and wall (x = 0, z >= 0) sharing the crease x = z = 0: a 90 degree edge."""
    fp, ff = grid(n, n, lambda i, j: (i * h, j * h, 0.0))
    wp, wf = grid(n - 1, n, lambda i, j: (0.0, j * h, (i + 1) * h), offset=len(fp))
    # connect the wall's first row (i = 0 -> z = h) down to the crease (floor row i = 0)
    crease = np.arange(n)            # floor vertices (0, j)
    first = len(fp) + np.arange(n)   # wall vertices (i=0, j)
    cf = np.concatenate([np.stack([crease[:-1], first[:-1], crease[1:]], 1),
                         np.stack([first[:-1], first[1:], crease[1:]], 1)])
    return np.concatenate([fp, wp]), np.concatenate([ff, wf, cf]), len(fp)


def bumpy_mesh(seed=0, n=40):
    rng = np.random.default_rng(seed)
    hgt = rng.normal(0, 0.02, (n, n))
    hgt[10:20, 10:25] += 0.3  # a box-like step
    pts, faces = grid(n, n, lambda i, j: (i * 0.05, j * 0.05, hgt[i, j]))
    # a tiny separate island of 4 vertices
    island = np.array([[5, 5, 5], [5.1, 5, 5], [5, 5.1, 5], [5.1, 5.1, 5.02]], np.float32)
    off = len(pts)
    return np.concatenate([pts, island]), np.concatenate([faces, [[off, off + 1, off + 2], [off + 1, off + 3, off + 2]]])


def reference_segmentator(points, faces, k, min_verts):
    """Plain-Python transcription of the rules (lerp normals in float32, per-edge loops, dict-free union-find)."""
    n = len(points)
    normals = np.zeros((n, 3), np.float32)
    counts = np.zeros(n)
    for f in faces:
        p1, p2, p3 = points[f[0]], points[f[1]], points[f[2]]
        c = np.cross(p2 - p1, p3 - p1).astype(np.float32)
        c /= np.float32(np.linalg.norm(c))
        for v in f:
            t = np.float32(1.0 / (counts[v] + 1.0))
            normals[v] = t * c + (np.float32(1) - t) * normals[v]
            counts[v] += 1
    edges = []
    for f in faces:
        edges += [(f[0], f[1]), (f[0], f[2]), (f[2], f[1])]
    ws = []
    for a, b in edges:
        d = points[b] - points[a]
        d = d / np.linalg.norm(d)
        w = 1.0 - float(normals[a] @ normals[b])
        if float(normals[b] @ d) > 0:
            w = w * w
        ws.append(np.float32(w))
    order = sorted(range(len(edges)), key=lambda i: ws[i])  # Python's sort is stable
    parent, rank, size = list(range(n)), [0] * n, [1] * n
    thr = [np.float32(k)] * n

    def find(x):
        y = x
        while y != parent[y]:
            y = parent[y]
        parent[x] = y
        return y

    def join(x, y):
        if rank[x] > rank[y]:
            parent[y] = x
            size[x] += size[y]
            return x
        parent[x] = y
        size[y] += size[x]
        rank[y] += rank[x] == rank[y]
        return y

    for i in order:
        a, b = find(edges[i][0]), find(edges[i][1])
        if a != b and ws[i] <= thr[a] and ws[i] <= thr[b]:
            r = join(a, b)
            thr[r] = np.float32(ws[i] + np.float32(k) / np.float32(size[r]))
    for i in order:
        a, b = find(edges[i][0]), find(edges[i][1])
        if a != b and (size[a] < min_verts or size[b] < min_verts):
            join(a, b)
    return np.array([find(q) for q in range(n)]), normals


def mesh_components(n, faces):
    a, b = mesh_edges(faces)
    g = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    return connected_components(g, directed=False)[1]


def test_flat_plane_is_one_segment():
    pts, faces = grid(20, 20, lambda i, j: (i * 0.03, j * 0.03, 0.0))
    sp = compute_superpoints(pts, faces)
    assert np.unique(sp).size == 1


def test_two_planes_at_90_degrees_split():
    pts, faces, nf = two_planes()
    sp = compute_superpoints(pts, faces, 0.01, 20)
    assert np.unique(sp).size == 2
    floor_interior = [i for i in range(nf) if pts[i, 0] > 0.07]
    wall_interior = [i for i in range(nf, len(pts)) if pts[i, 2] > 0.07]
    assert np.unique(sp[floor_interior]).size == 1 and np.unique(sp[wall_interior]).size == 1
    assert sp[floor_interior[0]] != sp[wall_interior[0]]


def test_normals_and_weights_follow_the_segmentator():
    pts, faces, _ = two_planes(5)
    n = segmentator_vertex_normals(pts, faces)
    _, ref_n = reference_segmentator(pts, faces, 0.01, 1)
    np.testing.assert_allclose(n, ref_n, atol=1e-6)
    crease = 2  # floor vertex (0, 2, 0) is on the crease: mean of (0,0,1) and (1,0,0)-ish normals, not unit
    assert np.linalg.norm(n[crease]) < 0.95
    # convex edge weight is squared, concave is not: a ridge (convex) vs a valley (concave) of the same angle
    p = np.array([[0, 0, 0], [1, 0, 0]], np.float32)
    up = np.array([[0, 0, 1], [0.6, 0, 0.8]], np.float32)   # b's normal tilts away from a: convex
    dn = np.array([[0, 0, 1], [-0.6, 0, 0.8]], np.float32)  # tilts towards a: concave
    assert edge_weights(p, up, np.array([0]), np.array([1]))[0] == pytest.approx(0.2 ** 2)
    assert edge_weights(p, dn, np.array([0]), np.array([1]))[0] == pytest.approx(0.2)


@pytest.mark.parametrize("seed,k,min_verts", [(0, 0.01, 20), (1, 0.05, 5), (2, 0.001, 30)])
def test_matches_plain_python_reference(seed, k, min_verts):
    pts, faces = bumpy_mesh(seed, n=14)
    ref, _ = reference_segmentator(pts, faces, k, min_verts)
    sp = compute_superpoints(pts, faces, k, min_verts)
    assert np.unique(ref).size > 1
    np.testing.assert_array_equal(sp, ref)


def test_segments_connected_min_size_deterministic():
    pts, faces = bumpy_mesh(3)
    min_verts = 20
    sp = compute_superpoints(pts, faces, 0.01, min_verts)
    assert np.array_equal(sp, compute_superpoints(pts.copy(), faces.copy(), 0.01, min_verts))
    assert (sp[sp] == sp).all()  # ids are member vertices (segs.json convention)
    comp = mesh_components(len(pts), faces)
    a, b = mesh_edges(faces)
    same = sp[a] == sp[b]
    g = coo_matrix((np.ones(same.sum()), (a[same], b[same])), shape=(len(pts), len(pts)))
    n_within, _ = connected_components(g, directed=False)
    assert n_within == np.unique(sp).size  # every segment is one connected piece of the mesh
    ids, sizes = np.unique(sp, return_counts=True)
    comp_sizes = np.bincount(comp)
    for s, size in zip(ids, sizes):
        if size < min_verts:  # only a whole small component may stay small
            assert size == comp_sizes[comp[s]]
    assert (sizes < min_verts).sum() == 1  # the 4-vertex island
    assert np.unique(sp).size > 3
    c = compact_ids(sp)
    assert c.min() == 0 and c.max() == np.unique(sp).size - 1 and np.array_equal(sp[np.argsort(c)], np.sort(sp))


def test_knn_variant_and_scene_dispatch():
    pts, faces, nf = two_planes(20, 0.03)
    sp = compute_superpoints_knn(pts, k=8, k_thresh=0.01, min_verts=20)
    floor_interior = np.where(pts[:, 0] > 0.1)[0]
    wall_interior = np.where(pts[:, 2] > 0.1)[0]
    assert np.unique(sp[floor_interior]).size == 1 and np.unique(sp[wall_interior]).size == 1
    assert sp[floor_interior[0]] != sp[wall_interior[0]]

    colors = np.zeros((len(pts), 3), np.uint8)
    mesh_scene = Scene("s", pts, colors, faces=faces, dataset="scannet")
    np.testing.assert_array_equal(superpoints_for_scene(mesh_scene), compute_superpoints(pts, faces, 0.01, 20))
    official = np.arange(len(pts)) // 7
    with_official = Scene("s", pts, colors, faces=faces, superpoints=official, dataset="scannet")
    np.testing.assert_array_equal(superpoints_for_scene(with_official), official)
    forced = SuperpointConfig(min_verts=60, method="mesh")
    np.testing.assert_array_equal(superpoints_for_scene(with_official, forced), compute_superpoints(pts, faces, 0.01, 60))
    lidar = Scene("l", pts, colors, dataset="nuscenes")
    np.testing.assert_array_equal(superpoints_for_scene(lidar), np.arange(len(pts)))
    np.testing.assert_array_equal(superpoints_for_scene(lidar, SuperpointConfig(method="knn", knn_k=8)), sp)
    assert SuperpointConfig.from_preset("scannet", sas_release=True).min_verts == 60
    assert SuperpointConfig.from_preset("scannet").min_verts == 20
    with pytest.raises(SASInputError, match="needs a mesh"):
        superpoints_for_scene(lidar, SuperpointConfig(method="mesh"))
    with pytest.raises(SASInputError, match="faces"):
        compute_superpoints(pts, faces + len(pts))


def test_weld_lets_segments_cross_seams_of_a_mesh_written_part_by_part():
    # one flat floor written as two halves that repeat the vertices of their shared row (as the synthetic world's
    # part-by-part meshes do): no graph edge crosses the seam, so the Segmentator keeps the halves apart
    h = 0.05
    left, lf = grid(10, 12, lambda i, j: (i * h, j * h, 0.0))
    right, rf = grid(10, 12, lambda i, j: ((i + 9) * h, j * h, 0.0), offset=len(left))
    pts, faces = np.concatenate([left, right]), np.concatenate([lf, rf])
    raw = compute_superpoints(pts, faces, 0.01, 5)
    assert len(np.unique(raw)) == 2
    welded = compute_superpoints(pts, faces, 0.01, 5, weld=True)
    assert len(np.unique(welded)) == 1
    # ids are still vertex indices of the original mesh, and the duplicates share their twin's segment
    assert 0 <= welded.min() and welded.max() < len(pts) and welded[0] in range(len(pts))
    keep, canon, wf = weld_vertices(pts, faces)
    assert len(keep) == len(pts) - 12 and wf.max() == len(keep) - 1
    assert np.allclose(pts[keep][canon], pts)
    # a mesh without duplicates gets the same segments either way
    p2, f2, _ = two_planes()
    assert np.array_equal(compute_superpoints(p2, f2, 0.01, 20), compute_superpoints(p2, f2, 0.01, 20, weld=True))


def test_synthetic_segments_are_the_segmentator_on_the_welded_mesh():
    from sas_engine.synth import generate_scene
    from sas_engine.synth.config import SynthConfig

    room = generate_scene(7, "kitchen", SynthConfig(target_vertices=20_000))
    seg = compute_superpoints(room.vertices, room.faces, 0.01, 20, weld=True)
    # the written segments are those, split only where one spans two objects (ScanNet's annotated instances are
    # unions of segments); far fewer than the per-part patches of generator version 1 and than without welding
    pairs = np.unique(np.stack([seg, room.vertex_instance.astype(np.int64)], 1), axis=0)
    assert room.segments.max() + 1 == len(pairs)
    assert len(np.unique(seg)) <= len(pairs) <= 1.25 * len(np.unique(seg))
    raw = compute_superpoints(room.vertices, room.faces, 0.01, 20)
    assert len(np.unique(seg)) < 0.7 * len(np.unique(raw))
    old = generate_scene(7, "kitchen", SynthConfig(target_vertices=20_000, segments="patches"))
    assert room.segments.max() < old.segments.max()
