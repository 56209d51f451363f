"""Scene identity: a capture's reconstruction gives the same points in every process and is built once; every
per-point artefact is tied to the points it was computed on and to its inputs by content, so a reordered scene or a
retrained teacher is never paired with old results."""
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sas_engine.capability.artefacts import KIND
from sas_engine.errors import SASInputError, StaleArtefactError
from sas_engine.io import reconstruct
from sas_engine.io.custom import load_custom
from sas_engine.labels import get_label_set
from sas_engine.pipeline import PipelineConfig, ensure_superpoints, fuse_combined, fuse_teacher, vocabulary_text
from sas_engine.scene import Scene, geometry_digest
from sas_engine.store import ArtefactStore
from sas_engine.synth import ensure_split
from sas_engine.teachers import build_teacher
from sas_engine.teachers.compact import save_compact
from sas_engine.teachers.compact_nets import CompactDenseNet, CompactMaskNet, DenseNetConfig, MaskNetConfig
from sas_engine.teachers.proposals import ProposalConfig

FRAMES = 6


@pytest.fixture(scope="module")
def room():
    from sas_engine.io import load_scene

    return load_scene(ensure_split("tiny")[0])


def _capture(room, folder, frames=FRAMES):
    """The room's first frames as a plain capture without a mesh (colour PNG, depth mm, poses, intrinsics)."""
    for sub in ("color", "depth", "poses"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    step = max(1, len(room.frames) // frames)
    for i in range(frames):
        f = room.frames[i * step]
        Image.fromarray(f.color).save(folder / "color" / f"{i}.png")
        Image.fromarray(np.round(f.depth * 1000).astype(np.uint16)).save(folder / "depth" / f"{i}.png")
        np.savetxt(folder / "poses" / f"{i}.txt", f.pose)
    np.savetxt(folder / "intrinsics.txt", room.frames[0].intrinsics)
    return folder


_LOAD = ("import sys; from sas_engine.io.custom import load_custom; "
         "s = load_custom(sys.argv[1], progress=False); print(s.geometry_digest)")


def _digest_in_new_process(cap) -> str:
    out = subprocess.run([sys.executable, "-c", _LOAD, str(cap)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_reconstruction_same_points_in_two_processes_and_built_once(room, tmp_path, monkeypatch):
    cap = _capture(room, tmp_path / "mycapture")
    first = _digest_in_new_process(cap)
    assert (cap / reconstruct.MESH_NAME).is_file() and (cap / reconstruct.SIDECAR_NAME).is_file()
    # recomputed from scratch in another process: the canonical order gives the very same points
    for name in (reconstruct.MESH_NAME, reconstruct.SIDECAR_NAME):
        (cap / name).unlink()
    assert _digest_in_new_process(cap) == first
    # a later load reuses the written mesh and never reconstructs again
    calls = []
    real = reconstruct.tsdf_reconstruct
    monkeypatch.setattr(reconstruct, "tsdf_reconstruct", lambda *a, **k: calls.append(1) or real(*a, **k))
    s = load_custom(cap, progress=False)
    assert s.geometry_digest == first and calls == [] and s.faces is not None and len(s.faces) > 1000
    # new poses make the cached mesh stale: it is rebuilt, not reused
    T = np.loadtxt(cap / "poses" / "0.txt")
    T[0, 3] += 0.05
    np.savetxt(cap / "poses" / "0.txt", T)
    s2 = load_custom(cap, progress=False)
    assert calls == [1] and s2.geometry_digest != first
    # an edited mesh file (points no longer those recorded) is not trusted either
    from sas_engine.io import read_ply, write_ply

    ply = read_ply(cap / reconstruct.MESH_NAME)
    v = dict(ply["vertex"])
    v["x"] = v["x"] + 1.0
    write_ply(cap / reconstruct.MESH_NAME, v, ply["face"])
    assert load_custom(cap, progress=False).geometry_digest == s2.geometry_digest and calls == [1, 1]


def test_canonical_mesh_ignores_input_order():
    g = np.random.default_rng(0)
    pts = g.normal(size=(50, 3)).astype(np.float32)
    col = g.integers(0, 255, (50, 3)).astype(np.uint8)
    faces = np.stack([g.permutation(50)[:3] for _ in range(40)])
    a = reconstruct.canonical_mesh(pts, col, faces)
    perm = g.permutation(50)
    inv = np.argsort(perm)
    fb = inv[faces][g.permutation(40)]
    fb = np.roll(fb, 1, axis=1)  # same triangles, other starting vertex
    b = reconstruct.canonical_mesh(pts[perm], col[perm], fb)
    for k in ("points", "colors", "normals", "faces"):
        np.testing.assert_array_equal(a[k], b[k])
    # every triangle survives with its orientation
    tri = {tuple(np.roll(t, -int(np.argmin(t)))) for t in reconstruct.canonical_mesh(pts, col, faces)["faces"]}
    assert len(tri) == len(set(map(tuple, a["faces"])))


def _reordered(scene: Scene, perm) -> Scene:
    return Scene(scene.scene_id, scene.points[perm], scene.colors[perm], labels=scene.labels[perm],
                 dataset=scene.dataset, label_set=scene.label_set, source="reordered")


def test_reordered_scene_is_refused_or_recomputed(room, tmp_path):
    from app.layers import SceneLayers
    from sas_engine.distill.data import load_distill_scene
    from sas_engine.eval.evaluate import store_source

    store = ArtefactStore(tmp_path / "store")
    scene = Scene(room.scene_id, room.points, room.colors, faces=room.faces, normals=room.normals,
                  labels=room.labels, dataset=room.dataset, label_set=room.label_set, source="orig")
    n = scene.num_points
    store.save(scene.scene_id, "fused.sas", {"features": torch.randn(n, 8).half(), "mask": torch.ones(n, dtype=bool)},
               kind=KIND, geometry=scene.geometry_digest)
    sp = ensure_superpoints(store, scene)
    other = _reordered(scene, np.random.default_rng(0).permutation(n))
    assert other.geometry_digest != scene.geometry_digest and other.num_points == n
    want = f"computed on points {scene.geometry_digest} but the scene now has points {other.geometry_digest}"
    with pytest.raises(SASInputError, match=want):
        store_source(store, "fused.sas")(other)
    with pytest.raises(SASInputError, match=want):
        load_distill_scene(store, other)
    with pytest.raises(SASInputError, match=want):
        SceneLayers(other, store).payload("fused.sas")
    with pytest.raises(StaleArtefactError, match=want):
        store.load(scene.scene_id, "superpoints", kind="superpoints", geometry=other.geometry_digest)
    # the original points still read fine; a cached stage recomputes for the new order instead of reusing
    assert store_source(store, "fused.sas")(scene) is not None
    assert store.header(scene.scene_id, "superpoints")["geometry"] == scene.geometry_digest
    ensure_superpoints(store, other)
    assert store.header(scene.scene_id, "superpoints")["geometry"] == other.geometry_digest
    assert np.array_equal(ensure_superpoints(store, scene), sp)  # and back again, same segmentation


def _compact(path, kind, seed):
    torch.manual_seed(seed)
    base = {"text_encoder": "minilm", "vocabulary": list(get_label_set("scannet20").prompt_names),
            "template": "a {} in a scene", "train": {}}
    net = CompactDenseNet(DenseNetConfig()) if kind == "compact_dense" else CompactMaskNet(MaskNetConfig())
    meta = {**base, "net": dataclasses.asdict(net.cfg)}
    if kind == "compact_mask":
        meta["proposals"] = dataclasses.asdict(ProposalConfig())
    save_compact(path, kind, net, meta, {})


def test_retrained_teacher_invalidates_fused_and_everything_built_on_it(room, tmp_path):
    torch.set_num_threads(1)
    scene = Scene(room.scene_id, room.points, room.colors, frames=list(room.frames[:3]), dataset=room.dataset,
                  label_set=room.label_set, source="three frames")
    store = ArtefactStore(tmp_path / "store")
    dense, mask = tmp_path / "dense.pt", tmp_path / "mask.pt"
    _compact(dense, "compact_dense", 0)
    _compact(mask, "compact_mask", 0)
    cfg = PipelineConfig(cache_frames=True)
    text = vocabulary_text(scene.label_set, cfg)

    def run():
        ts = [build_teacher("lseg_compact", checkpoint=str(dense)), build_teacher("seem_compact", checkpoint=str(mask))]
        fused = [fuse_teacher(store, scene, t, cfg, text, progress=False) for t in ts]
        add = fuse_combined(store, scene, "add", fused, [t.name for t in ts], None, cfg)
        return fused, add, {p.name: p.stat().st_mtime_ns for p in store.scene_dir(scene.scene_id).iterdir()}

    fused, add, files = run()
    assert any(k.startswith("feat2d.lseg_compact.") for k in files)
    again = run()[2]
    assert again == files                                          # nothing recomputed when nothing changed
    _compact(dense, "compact_dense", 1)                            # "retrained" under the same file name
    fused2, add2, files2 = run()
    changed = {k for k in files if files2.get(k) != files[k]}
    assert "fused.lseg_compact.pt" in changed and "fused.add.pt" in changed
    assert any(k.startswith("feat2d.lseg_compact.") for k in changed)  # the per-frame cache too
    assert "fused.seem_compact.pt" not in changed and not any(k.startswith("feat2d.seem") for k in changed)
    assert not torch.equal(fused[0]["features"], fused2[0]["features"])
    assert not torch.equal(add["features"], add2["features"])
    assert fused2[0]["__header__"]["config"]["extract"]["teacher"]["checkpoint"]["file"] == "dense.pt"


def test_geometry_digest_is_order_and_value_sensitive():
    p = np.arange(12, dtype=np.float32).reshape(4, 3)
    d = geometry_digest(p)
    assert d.startswith("4:") and geometry_digest(p.copy()) == d
    assert geometry_digest(p[[1, 0, 2, 3]]) != d
    q = p.copy()
    q[3, 2] = np.nextafter(q[3, 2], np.float32(100))
    assert geometry_digest(q) != d
