"""Precomputed adapter, per-frame cache (sas extract), the fusion source reading it, split sharding."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from sas_engine.errors import SASInputError
from sas_engine.scene import Frame, Scene
from sas_engine.store import ArtefactStore
from sas_engine.teachers import build_teacher
from sas_engine.geometry.fusion import IndexedFeatureMap
from sas_engine.teachers.cache import (ExtractConfig, cached_feature_source, extract_scene, extract_split,
                                       frame_artefact, scene_done, shard)
from sas_engine.teachers.text import get_text_encoder

FIDS = ["0", "20", "40"]
H, W = 24, 32


def _scene(sid="scene0001_00", fids=FIDS):
    rng = np.random.default_rng(0)
    frames = [Frame(f, rng.integers(0, 255, (H, W, 3), dtype=np.uint8), np.ones((H, W), np.float32), np.eye(4),
                    np.array([[20.0, 0, 16], [0, 20, 12], [0, 0, 1]])) for f in fids]
    return Scene(sid, rng.random((50, 3)).astype(np.float32), np.zeros((50, 3), np.uint8), frames=frames)


@pytest.fixture
def enc(tiny_clip_ckpt):
    path, _ = tiny_clip_ckpt
    return get_text_encoder(f"openclip:sas-test-tiny:{path}")


@pytest.fixture
def dense_root(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "openseg"
    (root / "scene0001_00").mkdir(parents=True)
    feats = {}
    for k, f in enumerate(FIDS):
        x = rng.normal(size=(12, 16, 32)).astype(np.float32)
        x[0, 0] = 0  # an all-zero pixel -> invalid
        feats[f] = x
        if k == 1:
            torch.save({"feat": torch.from_numpy(x)}, root / "scene0001_00" / f"{f}.pt")
        else:
            np.save(root / "scene0001_00" / f"{f}.npy", x)
    return root, feats


def test_precomputed_dense_extract_resume_and_source(dense_root, enc, tmp_path):
    root, feats = dense_root
    t = build_teacher("precomputed", root=str(root), kind="dense", text_encoder=enc)
    scene = _scene()
    store = ArtefactStore(tmp_path / "store")
    s = extract_scene(scene, t, store, ExtractConfig(batch=2), progress=False)
    assert (s["computed"], s["skipped"], s["frames"]) == (3, 0, 3)
    assert s["bytes_per_frame"] > 12 * 16 * 32 * 2  # float16 features + header
    obj = store.load(scene.scene_id, frame_artefact("precomputed", "20"), kind="feat2d.dense",
                     config=cached_feature_source(store, scene, "precomputed").config,
                     inputs={"scene": scene.scene_id, "frame": "20"})
    assert obj["feat"].dtype == torch.float16 and obj["feat"].shape == (12, 16, 32)
    assert scene_done(store, scene.scene_id, "precomputed")
    src = cached_feature_source(store, scene.scene_id, "precomputed")
    for i, f in enumerate(scene.frames):
        feat, valid = src(i, f)
        ref = torch.nn.functional.normalize(torch.from_numpy(feats[f.frame_id]), dim=-1)
        assert feat.shape == (12, 16, 32) and valid.shape == (12, 16) and not valid[0, 0] and valid.sum() == 191
        assert torch.allclose(feat.float()[valid], ref[valid], atol=2e-3)
    # rerun: nothing recomputed; a deleted frame is recomputed alone
    s2 = extract_scene(scene, t, store, progress=False)
    assert (s2["computed"], s2["skipped"]) == (0, 3)
    store.path(scene.scene_id, frame_artefact("precomputed", "40")).unlink()
    s3 = extract_scene(scene, t, store, progress=False)
    assert (s3["computed"], s3["skipped"]) == (1, 2)
    # another cache config makes the old frames stale: all recomputed, at half resolution
    s4 = extract_scene(scene, t, store, ExtractConfig(cache_stride=2), progress=False)
    assert s4["computed"] == 3
    feat, valid = cached_feature_source(store, scene, "precomputed")(0, scene.frames[0])
    assert feat.shape == (6, 8, 32) and valid.all()
    assert torch.allclose(feat.float().norm(dim=-1), torch.ones(6, 8), atol=2e-3)


def test_precomputed_dense_errors(dense_root, tmp_path, minilm):
    root, _ = dense_root
    t = build_teacher("precomputed", root=str(root), kind="dense", text_encoder=minilm).for_scene("scene0001_00")
    with pytest.raises(SASInputError, match=r"0.npy.*32 channels.*384"):
        t.predict(np.zeros((H, W, 3), np.uint8), frame_id="0")
    with pytest.raises(SASInputError, match="99.npy"):
        t.predict(np.zeros((H, W, 3), np.uint8), frame_id="99")
    with pytest.raises(SASInputError, match="not found"):
        build_teacher("precomputed", root=str(tmp_path / "none"), text_encoder=minilm)
    with pytest.raises(SASInputError, match="scene0001_00"):
        cached_feature_source(tmp_path / "empty_store", "scene0001_00", "precomputed")


def test_precomputed_masks_extract_and_source(tmp_path, enc):
    root = tmp_path / "seem"
    root.mkdir()
    ids = np.zeros((12, 16), np.uint16)
    ids[:6] = 3
    ids[6:, :8] = 7
    for f in FIDS:
        Image.fromarray(ids).save(root / f"{f}.png")
        (root / f"{f}.json").write_text(json.dumps({"segments": [{"id": 3, "label": "wall", "score": 0.8},
                                                                 {"id": 7, "label": "chair", "score": 0.6},
                                                                 {"id": 9, "label": "bed", "score": 0.9}]}))
    t = build_teacher("precomputed", root=str(root), kind="mask")
    scene = _scene()
    preds = t.predict(scene.frames[0].color, frame_id="0")
    assert [p.label for p in preds] == ["wall", "chair"] and preds[0].mask.shape == (H, W)  # resized (nearest)
    assert preds[0].mask[:12].all() and not preds[0].mask[12:].any()
    store = ArtefactStore(tmp_path / "store")
    s = extract_scene(scene, t, store, text_encoder=enc, progress=False)
    assert s["kind"] == "feat2d.mask" and s["computed"] == 3
    assert s["bytes_per_frame"] < H * W * 2 + 4096
    feat, valid = cached_feature_source(store, scene, "precomputed")(1, scene.frames[1])
    assert isinstance(feat, IndexedFeatureMap)  # segment ids + one embedding per segment, never expanded
    assert feat.ids.shape == (H, W) and feat.table.shape == (2, 32) and feat.table.dtype == torch.float16
    assert torch.equal(valid, feat.ids >= 0)
    assert valid[:12].all() and valid[12:, :16].all() and not valid[12:, 16:].any()
    im = scene.frames[1].color
    from sas_engine.teachers.mat import MaskCueCaptioner, mat_sentence

    cap = MaskCueCaptioner()
    wall = enc.encode([mat_sentence(cap.adjectives(im, preds[0].mask), "wall")])[0]
    assert torch.allclose(feat.table[feat.ids[0, 0]].float(), wall, atol=2e-3)
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(ids).save(bad / "0.png")
    (bad / "0.json").write_text('{"segs": []}')
    with pytest.raises(SASInputError, match=r"0.json.*segments"):
        build_teacher("precomputed", root=str(bad), kind="mask").predict(scene.frames[0].color, frame_id="0")


def test_shard_partitions_and_split_resumes(dense_root, enc, tmp_path):
    items = [f"s{i}" for i in range(10)]
    parts = [shard(items, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == sorted(items) and all(set(a).isdisjoint(b) for a in parts for b in parts
                                                             if a is not b)
    assert parts[1] == ["s1", "s4", "s7"]  # sorted, then rank::world_size
    with pytest.raises(SASInputError):
        shard(items, 3, 3)
    root, _ = dense_root
    for sid in ("scene0002_00", "scene0003_00"):
        (root / sid).mkdir()
        for f in FIDS:
            np.save(root / sid / f"{f}.npy", np.ones((4, 4, 32), np.float32))
    scenes = {sid: _scene(sid) for sid in ("scene0001_00", "scene0002_00", "scene0003_00")}
    loaded = []

    def loader(p):
        loaded.append(p)
        return scenes[p]

    t = build_teacher("precomputed", root=str(root), kind="dense", text_encoder=enc)
    store = tmp_path / "store"
    outs = [extract_split(list(scenes), t, store, rank=r, world_size=2, loader=loader, progress=False)
            for r in range(2)]
    assert [o["scene"] for o in outs[0]] == ["scene0001_00", "scene0003_00"]
    assert [o["scene"] for o in outs[1]] == ["scene0002_00"]
    assert all(o["computed"] == 3 for o in outs[0] + outs[1])
    again = extract_split(list(scenes), t, store, rank=0, world_size=2, loader=loader, progress=False)
    assert [o["skipped"] for o in again] == ["scene", "scene"] and all(o["computed"] == 0 for o in again)
    f, _ = cached_feature_source(store, "scene0002_00", "precomputed")(0, scenes["scene0002_00"].frames[0])
    assert torch.allclose(f.float(), torch.full((4, 4, 32), 32 ** -0.5), atol=1e-3)


def test_cli_extract(dense_root, tiny_clip_ckpt, tmp_path, monkeypatch, capsys):
    import sas_engine.io as sio
    from sas_engine.cli import main

    root, _ = dense_root
    clip_path, _ = tiny_clip_ckpt
    monkeypatch.setattr(sio, "load_scene", lambda path, dataset=None, **kw: _scene())
    argv = ["extract", "some/scene", "--teacher", "precomputed", "--root", str(root), "--kind", "dense",
            "--text-encoder", f"openclip:sas-test-tiny:{clip_path}", "--store", str(tmp_path / "st"),
            "--no-progress", "--batch", "2"]
    assert main(argv) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert out[0]["computed"] == 3 and out[0]["teacher"] == "precomputed"
    assert (tmp_path / "st" / "scene0001_00" / "feat2d.precomputed.20.pt").is_file()
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip())["skipped"] == 3
    assert main(["extract", "--teacher", "precomputed"]) == 2  # neither scene nor split: clear error
    assert "either a scene or --split" in capsys.readouterr().err


def test_dense_network_teacher_through_cache(tiny_clip_ckpt, tmp_path):
    path, _ = tiny_clip_ckpt
    t = build_teacher("clip_dense", checkpoint=str(path), arch="sas-test-tiny", upsample=2)
    scene = _scene()
    s = extract_scene(scene, t, tmp_path / "store", ExtractConfig(batch=3), progress=False)
    assert s["computed"] == 3
    src = cached_feature_source(tmp_path / "store", scene, "clip_dense")
    feat, valid = src(2, scene.frames[2])
    ref = t.predict(scene.frames[2].color)
    assert valid is None and feat.dtype == torch.float16 and feat.shape == ref.shape == (*t.output_size(H, W), 32)
    assert torch.allclose(feat.float(), ref, atol=2e-3)
