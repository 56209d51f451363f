"""evaluate_sources over store artefacts, the report files, and `sas eval` / `sas export` on a tiny ScanNet folder."""
import json

import numpy as np
import pytest
import torch

from sas_engine.cli import main
from sas_engine.errors import SASInputError
from sas_engine.eval.evaluate import evaluate_sources, store_source
from sas_engine.eval.metrics import confusion_matrix, summarize
from sas_engine.eval.report import markdown_table, write_report
from sas_engine.io import load_scene, read_scannet_submission, write_ply
from sas_engine.labels import SCANNET20, SCANNET20_NYU40
from sas_engine.store import ArtefactStore, make_header

K, C = 20, 32


def text_emb():
    g = np.random.default_rng(7).standard_normal((C, K))
    return torch.from_numpy(np.linalg.qr(g)[0].T.astype(np.float32))  # [K, C] orthonormal


def write_scan(root, scene_id, n, seed):
    """A ScanNet scan folder: mesh PLY (grid of vertices, faces) + labels PLY (NYU40 ids, some unannotated)."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    xy = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)[:n] * 0.05
    pts = np.concatenate([xy, rng.random((n, 1)) * 0.01], 1).astype(np.float32)
    gt = (np.arange(n) * K // n).astype(np.int64)  # spatially coherent blocks of every class
    nyu = np.asarray(SCANNET20_NYU40)[gt]
    nyu[rng.random(n) < 0.05] = 0  # unannotated -> ignore
    folder = root / "scans" / scene_id
    col = (rng.random((n, 3)) * 255).astype(np.uint8)
    vert = {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2], "red": col[:, 0], "green": col[:, 1], "blue": col[:, 2],
            "alpha": np.full(n, 255, np.uint8)}
    faces = np.stack([np.arange(n - 2), np.arange(1, n - 1), np.arange(2, n)], 1)
    write_ply(folder / f"{scene_id}_vh_clean_2.ply", vert, faces)
    write_ply(folder / f"{scene_id}_vh_clean_2.labels.ply", {**vert, "label": nyu.astype(np.uint16)}, faces)
    return folder, gt


@pytest.fixture
def tiny(tmp_path):
    """Two scenes + store artefacts: fused.a exact, fused.b half seen, pred3d.r exact where fused.b is blind."""
    root, store = tmp_path / "scannet", ArtefactStore(tmp_path / "store")
    t = text_emb()
    info = {}
    for i, (sid, n) in enumerate((("scene0001_00", 400), ("scene0002_00", 300))):
        folder, gt = write_scan(root, sid, n, i)
        exact = t[torch.from_numpy(gt)].half()
        wrong = t[torch.from_numpy((gt + 1) % K)].half()
        seen = torch.from_numpy(np.arange(n) % 2 == 0)
        fb = torch.where(seen[:, None], exact, torch.zeros_like(exact))
        f3 = torch.where(seen[:, None], 0.8 * wrong.float() + 0.6 * exact.float(), exact.float()).half()
        g = load_scene(folder).geometry_digest
        store.save(sid, "fused.a", {"features": exact, "mask": torch.ones(n, dtype=torch.bool),
                                    "view_count": torch.ones(n, dtype=torch.int32)}, kind="fused", config={"t": "a"},
                   geometry=g)
        store.save(sid, "fused.b", {"features": fb, "mask": seen}, kind="fused", config={"t": "b"}, geometry=g)
        store.save(sid, "pred3d.r", {"features": f3}, kind="pred3d", config={"run": "r"}, geometry=g)
        info[sid] = (folder, gt, seen.numpy())
    torch.save(t, tmp_path / "text.pt")
    return root, store, t, info, tmp_path


def test_evaluate_sources_sums_scenes_and_handles_ensemble(tiny):
    root, store, t, info, _ = tiny
    scenes = [load_scene(f) for f, _, _ in info.values()]
    names = ["fused.a", "fused.b", "pred3d.r", "fused.b+pred3d.r"]
    res = evaluate_sources(scenes, [(n, store_source(store, n)) for n in names], "scannet20", t, progress=False)
    assert res["scenes"] == ["scene0001_00", "scene0002_00"] and res["classes"] == list(SCANNET20)
    s = res["sources"]
    assert s["fused.a"]["miou"] == pytest.approx(100.0) and s["fused.a"]["coverage"] == pytest.approx(100.0)
    # fused.b: the same numbers as a hand-built confusion matrix of both scenes (misses where unseen)
    conf = sum(confusion_matrix(np.where(seen, gt, -1), sc.labels, K)
               for sc, (_, gt, seen) in zip(scenes, info.values()))
    want = summarize(conf, SCANNET20)
    assert s["fused.b"]["miou"] == pytest.approx(want["miou"]) and s["fused.b"]["confusion"] == conf.tolist()
    assert s["fused.b"]["coverage"] == pytest.approx(50.0, abs=2)
    assert s["fused.b"]["miou"] == pytest.approx(50.0, abs=3)
    assert s["pred3d.r"]["miou"] < 60  # wrong wherever fused.b sees
    assert s["fused.b+pred3d.r"]["miou"] == pytest.approx(100.0)  # ensemble picks the confident one everywhere
    assert set(s["fused.a"]["per_scene"]) == set(res["scenes"])


def test_missing_source_policies(tiny):
    root, store, t, info, _ = tiny
    (store.root / "scene0002_00" / "fused.b.pt").unlink()
    scenes = [load_scene(f) for f, _, _ in info.values()]
    src = [("fused.b", store_source(store, "fused.b"))]
    with pytest.raises(SASInputError, match="no features for scene scene0002_00"):
        evaluate_sources(scenes, src, "scannet20", t, progress=False)
    miss = evaluate_sources(scenes, src, "scannet20", t, on_missing="miss", progress=False)["sources"]["fused.b"]
    skip = evaluate_sources(scenes, src, "scannet20", t, on_missing="skip", progress=False)["sources"]["fused.b"]
    assert miss["missing_scenes"] == skip["missing_scenes"] == ["scene0002_00"]
    assert skip["points"] < miss["points"] and skip["coverage"] > miss["coverage"]


def test_stale_artefact_rows_are_refused(tiny):
    root, store, t, info, _ = tiny
    scene = load_scene(info["scene0001_00"][0])
    store.save("scene0001_00", "fused.c", {"features": torch.zeros(5, C, dtype=torch.float16)}, kind="fused",
               geometry="5:0123456789abcdef")
    with pytest.raises(SASInputError, match="fused.c.pt: computed on points 5:0123456789abcdef but the scene now "
                                            f"has points {scene.geometry_digest}"):
        store_source(store, "fused.c")(scene)
    # same digest but wrong rows: the store refuses to write it, and a hand-made file is refused on reading
    bad = {"features": torch.zeros(5, C, dtype=torch.float16)}
    with pytest.raises(SASInputError, match="fused.c.pt: 'fused' artefact: 'features' has shape .5, .*5 rows"):
        store.save("scene0001_00", "fused.c", bad, kind="fused", geometry=scene.geometry_digest)
    torch.save({"__header__": make_header("fused", None, geometry=scene.geometry_digest), **bad},
               store.path("scene0001_00", "fused.c"))
    with pytest.raises(SASInputError, match=f"fused.c.pt: 'fused' artefact: 'features' has shape .5, {C}.: 5 rows but "
                                            f"the points' geometry digest says N = {scene.num_points} points"):
        store_source(store, "fused.c")(scene)


def test_report_files_parse_back(tiny, tmp_path):
    root, store, t, info, _ = tiny
    scenes = [load_scene(f) for f, _, _ in info.values()]
    res = evaluate_sources(scenes, [(n, store_source(store, n)) for n in ("fused.a", "fused.b")], "scannet20", t,
                           convention="openscene", progress=False)
    files = write_report(res, tmp_path / "rep")
    back = json.loads(files["json"].read_text())
    assert back["sources"]["fused.b"]["miou"] == res["sources"]["fused.b"]["miou"]
    assert back["convention"] == "openscene"
    md = files["markdown"].read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| `")]
    assert len(table) == 2 and table[0].startswith("| `fused.a` | 100.0 | 100.0 | 100.0 |")
    assert "| source | mIoU | mAcc | cov. | wall | floor |" in md
    cells = [c.strip() for c in table[1].strip("|").split("|")]
    b = back["sources"]["fused.b"]
    assert cells[1:4] == [f"{b['miou']:.1f}", f"{b['macc']:.1f}", f"{b['coverage']:.1f}"]
    assert cells[4:] == [f"{b['iou'][c]:.1f}" for c in SCANNET20]
    for key in ("iou_bars", "confusion:fused.a", "confusion:fused.b"):
        assert files[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files[key].stat().st_size > 5000
    assert markdown_table(res).count("\n") == 3


def test_cli_eval_and_export(tiny, capsys):
    root, store, t, info, tmp = tiny
    out = tmp / "report"
    rc = main(["eval", "--split", str(root), "--sources", "fused.a,fused.b+pred3d.r,fused.b", "--store",
               str(store.root), "--text-emb", str(tmp / "text.pt"), "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "eval.json").read_text())
    assert list(res["sources"]) == ["fused.a", "fused.b+pred3d.r", "fused.b"]
    assert res["sources"]["fused.a"]["miou"] == pytest.approx(100.0)
    assert (out / "eval.md").is_file() and (out / "confusion_fused.b_pred3d.r.png").is_file()
    assert "| `fused.b` |" in capsys.readouterr().out

    # a source nobody produced: a clear error, exit status 2
    rc = main(["eval", "--scene", str(info["scene0001_00"][0]), "--sources", "pred3d.nope", "--store",
               str(store.root), "--text-emb", str(tmp / "text.pt"), "--out", str(out)])
    assert rc == 2 and "pred3d.nope" in capsys.readouterr().err

    sub = tmp / "submission"
    assert main(["export", str(root), "--source", "fused.b", "--out", str(sub), "--store", str(store.root),
                 "--text-emb", str(tmp / "text.pt")]) == 0
    for sid, (folder, gt, seen) in info.items():
        ids = read_scannet_submission(sub / f"{sid}.txt")
        assert len(ids) == len(gt)
        nyu = np.asarray(SCANNET20_NYU40)
        np.testing.assert_array_equal(ids[seen], nyu[gt[seen]])  # seen vertices: their class
        # unseen vertices took a neighbour's class: nearly always the same block
        assert (ids[~seen] == nyu[gt[~seen]]).mean() > 0.9


def test_nuscenes_scenes_evaluate_through_43_names():
    from sas_engine.eval.evaluate import default_eval_label_set
    from sas_engine.labels import get_label_set
    from sas_engine.scene import Scene

    assert default_eval_label_set("nuscenes16") == "nuscenes43" and default_eval_label_set("scannet20") == "scannet20"
    ls = get_label_set("nuscenes43")
    q2c = ls.query_to_class()
    g = np.random.default_rng(1).standard_normal((64, 43))
    t = torch.from_numpy(np.linalg.qr(g)[0].T.astype(np.float32))
    qi = np.arange(430) % 43
    labels = q2c[qi].astype(np.uint8)
    labels[:10] = 255
    scene = Scene("lidar0", np.random.default_rng(0).random((430, 3)).astype(np.float32), np.zeros((430, 3), np.uint8),
                  labels=labels, label_set="nuscenes16", dataset="nuscenes")
    from sas_engine.eval.zeroshot import FeatureSet

    res = evaluate_sources([scene], {"lidar": lambda s: FeatureSet.single(t[qi])}, "nuscenes43", t, progress=False)
    assert res["sources"]["lidar"]["miou"] == pytest.approx(100.0) and len(res["classes"]) == 16
    with pytest.raises(SASInputError, match="classes differ"):
        evaluate_sources([scene], {"lidar": lambda s: FeatureSet.single(t[qi])}, "scannet20", t[:20], progress=False)


def test_scene_path_resolution(tmp_path, tiny):
    from sas_engine.eval.inputs import split_scene_paths, target_scene_paths

    root, _, _, info, _ = tiny
    assert [p.name for p in split_scene_paths(root)] == ["scene0001_00", "scene0002_00"]
    assert target_scene_paths(root) == split_scene_paths(root)
    scan = info["scene0001_00"][0]
    assert target_scene_paths(scan) == [scan]
    pth = tmp_path / "openscene_val"
    pth.mkdir()
    for n in ("b_vh_clean_2.pth", "a_vh_clean_2.pth"):
        (pth / n).write_bytes(b"")
    assert [p.name for p in target_scene_paths(pth)] == ["a_vh_clean_2.pth", "b_vh_clean_2.pth"]
    with pytest.raises(SASInputError, match="does not exist"):
        split_scene_paths(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SASInputError, match="no scene"):
        split_scene_paths(tmp_path / "empty")
