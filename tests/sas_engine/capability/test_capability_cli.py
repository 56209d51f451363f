"""``sas fuse --mode sas|add|linear`` end to end on a small OpenScene-layout scene and store artefacts."""
import numpy as np
import pytest
import torch

from sas_engine.capability import CapabilityTable, add_fuse, capability_fuse, linear_fuse, save_capability_table
from sas_engine.capability.artefacts import KIND, load_any
from sas_engine.cli import main
from sas_engine.store import ArtefactStore


@pytest.fixture()
def scene_and_store(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    scene = tmp_path / "data" / "scannet_3d" / "val" / "scene0007_00.pth"
    scene.parent.mkdir(parents=True)
    torch.save((rng.random((n, 3)).astype(np.float32), rng.uniform(-1, 1, (n, 3)).astype(np.float32),
                rng.integers(0, 20, n).astype(np.float32)), scene)
    store = ArtefactStore(tmp_path / "store")
    from sas_engine.io import load_scene
    from sas_engine.teachers import get_text_encoder

    geometry = load_scene(scene).geometry_digest

    enc = get_text_encoder(None)
    classes = ["chair", "table", "otherfurniture"]
    words = ["chair", "table", "other"]
    emb = enc.encode([f"a {w} in a scene" for w in words]).float()
    feats, masks = [], []
    for t in range(2):
        lab = rng.integers(0, 3, n)
        f = emb[lab] + 0.05 * torch.randn(n, emb.shape[1], generator=torch.Generator().manual_seed(t))
        m = torch.as_tensor(rng.random(n) > 0.2)
        f[~m] = 0
        feats.append(f.half())
        masks.append(m)
        store.save("scene0007_00", f"fused.{'ab'[t]}", {"features": f.half(), "mask": m,
                                                         "view_count": m.int()}, kind=KIND, config={"t": t},
                   geometry=geometry)
    table = CapabilityTable(scores=np.array([[0.8, 0.2, np.nan], [0.3, 0.6, 0.5]]), teachers=["a", "b"],
                            classes=classes, words=words, linear_weights=[0.3, 0.7], linear_miou=0.5)
    save_capability_table(store, table, "rooms")
    return scene, store, feats, masks, table, emb


def test_fuse_modes(scene_and_store):
    scene, store, feats, masks, table, emb = scene_and_store
    common = [str(scene), "--teachers", "a,b", "--store", str(store.root)]
    assert main(["fuse", *common, "--mode", "sas", "--tau", "0.1", "--weighting", "mean"]) == 0
    got = load_any(store, "scene0007_00", "fused.sas")
    want = capability_fuse(feats, masks, table.scores, emb, tau=0.1)
    assert got["teachers"] == ["a", "b"]
    assert torch.equal(got["mask"], masks[0] | masks[1])
    assert torch.allclose(got["weights"], want.weights, atol=1e-5)
    assert torch.allclose(got["features"].float(), want.features.float(), atol=1e-3)
    assert main(["fuse", *common, "--mode", "add"]) == 0
    assert torch.equal(load_any(store, "scene0007_00", "fused.add")["features"], add_fuse(feats, masks).features)
    assert main(["fuse", *common, "--mode", "linear"]) == 0
    lin = load_any(store, "scene0007_00", "fused.linear")
    assert torch.equal(lin["features"], linear_fuse(feats, masks, [0.3, 0.7]).features)
    assert main(["fuse", *common, "--mode", "sas", "--catch-all", "b:otherfurniture"]) == 0
    ca = load_any(store, "scene0007_00", "fused.sas")
    votes_other = masks[1] & ((feats[1].float() @ emb.T).argmax(1) == 2)
    assert bool(votes_other.any()) and torch.all(ca["weights"][votes_other] == torch.tensor([0.0, 1.0]))
    # bad input: a teacher without fused features, an unknown capability table -> exit status 2, no traceback
    assert main(["fuse", str(scene), "--teachers", "a,c", "--store", str(store.root), "--mode", "add"]) == 2
    assert main(["fuse", *common, "--mode", "sas", "--synth", "sd"]) == 2


def test_add_needs_no_table_and_combined_follows_its_inputs(scene_and_store):
    """Plain averaging runs without a capability table; a combination is recomputed when an input fusion changed
    and refused when it belongs to other points."""
    scene, store, feats, masks, table, emb = scene_and_store
    store.path(None, "capability.rooms", ".json").unlink()
    common = [str(scene), "--teachers", "a,b", "--store", str(store.root)]
    assert main(["fuse", *common, "--mode", "add"]) == 0
    assert torch.equal(load_any(store, "scene0007_00", "fused.add")["features"], add_fuse(feats, masks).features)
    assert main(["fuse", *common, "--mode", "sas"]) == 2          # capability-guided fusion does need the table
    # teacher b's fusion changes (e.g. a retrained checkpoint): fused.add must follow it, not be reused
    hdr = load_any(store, "scene0007_00", "fused.b")["__header__"]
    new_b = -feats[1]
    store.save("scene0007_00", "fused.b", {"features": new_b, "mask": masks[1], "view_count": masks[1].int()},
               kind=KIND, config={"t": 7}, geometry=hdr["geometry"])
    assert main(["fuse", *common, "--mode", "add"]) == 0
    assert torch.equal(load_any(store, "scene0007_00", "fused.add")["features"],
                       add_fuse([feats[0], new_b], masks).features)
    # an input fusion computed on other points is refused with a message, not combined
    store.save("scene0007_00", "fused.b", {"features": new_b, "mask": masks[1], "view_count": masks[1].int()},
               kind=KIND, config={"t": 7}, geometry="300:0000000000000000")
    assert main(["fuse", *common, "--mode", "add"]) == 2


class _MaskFromColour:
    """A mask teacher for the CLI test: labels the non-background pixels with a fixed class word."""

    kind = "mask"

    def __init__(self, word):
        self.word, self.name = word, "colour"

    def predict(self, image):
        from sas_engine.teachers import MaskPrediction

        fg = np.abs(image.astype(int) - image[0, 0].astype(int)).sum(-1) > 0
        return [MaskPrediction(fg, self.word, 1.0)]


def test_capability_command(tmp_path, monkeypatch):
    from sas_engine import labels, teachers

    monkeypatch.setitem(labels.LABEL_SETS, "tiny3", labels.LabelSet("tiny3", ("chair", "table", "otherfurniture"),
                                                                     ("chair", "table", "other")))
    monkeypatch.setitem(teachers.TEACHERS, "says_chair", lambda **kw: _MaskFromColour("chair"))
    monkeypatch.setitem(teachers.TEACHERS, "says_table", lambda **kw: _MaskFromColour("table"))
    store = tmp_path / "store"
    rc = main(["capability", "--synth", "synthetic", "--teachers", "says_chair,says_table", "--m", "1",
               "--vocab", "tiny3", "--exclude", "otherfurniture", "--size", "80x60", "--store", str(store)])
    assert rc == 0
    from sas_engine.capability import load_capability_table

    t = load_capability_table(ArtefactStore(store), "synthetic")
    assert t.teachers == ["says_chair", "says_table"] and t.classes == ["chair", "table", "otherfurniture"]
    assert t.prompt_words() == ["chair", "table", "other"]
    assert [p["class"] for p in t.provenance] == ["chair", "table"]
    # "says_chair" never labels a table (IoU 0) and labels chairs with some IoU > 0; the reverse for "says_table"
    assert t.scores[0, 0] > 0 and t.scores[0, 1] == 0 and t.scores[1, 0] == 0 and t.scores[1, 1] > 0
    assert np.isnan(t.scores[:, 2]).all()                  # excluded: unknown capability
    assert t.linear_weights is not None and abs(sum(t.linear_weights) - 1) < 1e-9
    assert (store / "_shared" / "capability.synthetic.png").is_file()


def test_fuse_single_teacher_mode(tmp_path, monkeypatch):
    """--mode <teacher>: a shipped teacher runs frame by frame without any cache; another teacher's cached per-frame
    outputs (``sas extract``) are fused with the geometry helper's multi-view fusion."""
    from PIL import Image

    from sas_engine.teachers import cache

    root = tmp_path / "data"
    rng = np.random.default_rng(1)
    n = 200
    pts = np.c_[rng.uniform(-0.5, 0.5, (n, 2)), np.full(n, 1.5)].astype(np.float32)
    pts[:20, 2] = 3.0                                   # behind the depth surface: occluded in the only view
    p3 = root / "scannet_3d" / "val" / "scene0008_00.pth"
    p3.parent.mkdir(parents=True)
    torch.save((pts, np.zeros((n, 3), np.float32), np.zeros(n, np.float32)), p3)
    f2 = root / "scannet_2d" / "scene0008_00"
    for sub in ("color", "depth", "pose"):
        (f2 / sub).mkdir(parents=True)
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(f2 / "color" / "0.jpg")
    Image.fromarray(np.full((240, 320), 1500, np.uint16)).save(f2 / "depth" / "0.png")
    np.savetxt(f2 / "pose" / "0.txt", np.eye(4))
    feat = torch.zeros(60, 80, 384)
    feat[..., 1] = 1.0

    def fake_source(store, scene, teacher_name, device="cpu"):
        assert teacher_name == "my_teacher"
        src = lambda i, frame: (feat, None)  # noqa: E731
        src.config = {"fake": True}
        return src

    store = tmp_path / "store"
    # the shipped dense teacher, streamed: no per-frame cache is written
    assert main(["fuse", str(p3), "--mode", "lseg_compact", "--store", str(store)]) == 0
    got = load_any(ArtefactStore(store), "scene0008_00", "fused.lseg_compact")
    assert got["features"].shape == (n, 384) and not bool(got["mask"][:20].any()) and bool(got["mask"][20:].all())
    assert not list((store / "scene0008_00").glob("feat2d.*"))
    # a teacher this command cannot build: without its cache the error names the extract command
    assert main(["fuse", str(p3), "--mode", "my_teacher", "--store", str(store)]) == 2
    monkeypatch.setattr(cache, "cached_feature_source", fake_source)
    ArtefactStore(store).save_json("scene0008_00", cache.index_artefact("my_teacher"), {"complete": True},
                                   kind=cache.INDEX_KIND, config={"fake": True})
    assert main(["fuse", str(p3), "--mode", "my_teacher", "--store", str(store)]) == 0
    got = load_any(ArtefactStore(store), "scene0008_00", "fused.my_teacher")
    assert got["features"].shape == (n, 384) and got["features"].dtype == torch.float16
    assert not bool(got["mask"][:20].any()) and bool(got["mask"][20:].all())
    assert torch.equal(got["view_count"][20:], torch.ones(n - 20, dtype=torch.int32))
    assert torch.all(got["features"][20:].float() == feat[0, 0])


def test_suggested_commands_parse_as_printed(scene_and_store, capsys):
    """Every command an error message suggests is accepted by the parser exactly as printed."""
    import re
    import shlex

    from sas_engine.cli import parse_args

    scene, store, *_ = scene_and_store
    store.path(None, "capability.rooms", ".json").unlink()
    capsys.readouterr()
    assert main(["fuse", str(scene), "--teachers", "a,b", "--store", str(store.root), "--mode", "sas"]) == 2
    assert main(["fuse", str(scene), "--store", str(store.root), "--mode", "my_teacher"]) == 2
    err = capsys.readouterr().err
    cmds = re.findall(r"`(sas [^`]+)`", err)
    assert len(cmds) == 2, err
    for cmd in cmds:
        argv = [a for a in shlex.split(cmd)[1:] if a != "..."]
        parse_args(argv)  # SystemExit (a test failure) if a required flag is missing
