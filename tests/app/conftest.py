"""Fixtures for the app tests: a deterministic fake text encoder and a tiny scene with a populated artefact store."""
from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
import torch

from sas_engine.labels import SCANNET20
from sas_engine.scene import Scene
from sas_engine.store import ArtefactStore

DIM = 16
TEMPLATE = "a {} in a scene"


_WORDS = sorted(set(SCANNET20) | {"other", "object", "things", "stuff", "texture"}, key=len, reverse=True)


def _unit(key: str) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    v = torch.randn(DIM, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


class HashEncoder:
    """A stand-in for MiniLM (deterministic, no weights): a text holding a class name (or a canonical negative) maps
    near that word's random unit vector, whatever template surrounds it ("a chair in a scene", "a photo of a chair",
    "chair"), plus a small template-specific part; any other text gets a unit vector seeded by its hash."""

    name = "hash16"
    dim = DIM

    def __init__(self):
        self.calls = 0
        self._lock = threading.Lock()

    def encode(self, texts):
        with self._lock:
            self.calls += 1
        out = []
        for t in texts:
            word = next((w for w in _WORDS if f" {w} " in f" {t} "), None)
            v = _unit(t) if word is None else _unit(word) + 0.1 * _unit("template:" + t.replace(word, "{}", 1))
            out.append(v / v.norm())
        return torch.stack(out)


CLASSES = {"floor": 1, "wall": 0, "chair": 4, "sofa": 5, "table": 6}


def make_scene(n_per: int = 400, seed: int = 0, scene_id: str = "fixture0000_00") -> Scene:
    """Five blobs laid out like a room: floor, wall, chair, sofa, table (ScanNet-20 labels), with superpoints."""
    g = np.random.default_rng(seed)
    centers = {"floor": (0, 0, 0), "wall": (0, 2.5, 1.2), "chair": (-1.5, 0, 0.5), "sofa": (1.5, 0.5, 0.4),
               "table": (0, -1.5, 0.7)}
    spreads = {"floor": (1.8, 1.8, 0.01), "wall": (1.8, 0.01, 1.0), "chair": (0.2, 0.2, 0.3),
               "sofa": (0.5, 0.3, 0.2), "table": (0.4, 0.3, 0.05)}
    pts, lab, col, sp = [], [], [], []
    for k, name in enumerate(CLASSES):
        p = g.uniform(-1, 1, (n_per, 3)) * np.array(spreads[name]) + np.array(centers[name])
        pts.append(p)
        lab.append(np.full(n_per, CLASSES[name]))
        col.append(np.clip(g.normal(60 + 40 * k, 15, (n_per, 3)), 0, 255))
        sp.append(k * 10 + (p[:, 0] > centers[name][0]).astype(int))  # two superpoints per blob
    labels = np.concatenate(lab).astype(np.uint8)
    labels[:7] = 255  # a few ignore points
    inst = np.concatenate([np.full(n_per, k) for k in range(len(CLASSES))]).astype(np.int64)
    return Scene(scene_id, np.concatenate(pts).astype(np.float32), np.concatenate(col).astype(np.uint8),
                 labels=labels, instances=inst, superpoints=np.concatenate(sp).astype(np.int64), dataset="synthetic",
                 source="fixture")


def class_features(enc: HashEncoder, scene: Scene, noise: float, wrong: dict, seed: int) -> torch.Tensor:
    """Features = text embedding of each point's class (+ noise); ``wrong`` maps a class to the class a teacher
    confuses it with."""
    g = np.random.default_rng(seed)
    names = list(SCANNET20[:-1]) + ["other"]
    emb = enc.encode([TEMPLATE.format(n) for n in names]).numpy()
    lab = scene.labels.astype(np.int64).copy()
    lab[lab == 255] = 19
    for a, b in wrong.items():
        lab[lab == SCANNET20.index(a)] = SCANNET20.index(b)
    f = emb[lab] + noise * g.normal(size=(len(lab), DIM))
    return torch.from_numpy(f.astype(np.float32)).to(torch.float16)


def populate_store(store: ArtefactStore, scene: Scene, enc: HashEncoder) -> None:
    n = scene.num_points
    sid = scene.scene_id
    mask = np.ones(n, bool)
    mask[-25:] = False  # points seen by no camera
    fl = class_features(enc, scene, 0.15, {"sofa": "chair"}, 1)  # dense teacher confuses sofas for chairs
    fs = class_features(enc, scene, 0.15, {"table": "desk"}, 2)  # mask teacher confuses tables for desks
    for t, f in (("lseg_compact", fl), ("seem_compact", fs)):
        f = f.clone()
        f[~torch.from_numpy(mask)] = 0
        store.save(sid, f"fused.{t}", {"features": f, "mask": torch.from_numpy(mask),
                                       "view_count": torch.from_numpy(np.where(mask, 3, 0).astype(np.int32))},
                   kind="fused", config={"teacher": t}, geometry=scene.geometry_digest)
    lab = scene.labels
    w = np.full((n, 2), 0.5, np.float32)
    w[lab == CLASSES["sofa"]] = (0.1, 0.9)  # SAS trusts the mask teacher on sofas
    w[lab == CLASSES["table"]] = (0.9, 0.1)  # and the dense teacher on tables
    fused = (torch.from_numpy(w[:, :1]) * fl.float() + torch.from_numpy(w[:, 1:]) * fs.float()).half()
    fused[~torch.from_numpy(mask)] = 0
    store.save(sid, "fused.sas", {"features": fused, "mask": torch.from_numpy(mask), "weights": torch.from_numpy(w),
                                  "teachers": ["lseg_compact", "seem_compact"]}, kind="fused",
               geometry=scene.geometry_digest)
    store.save(sid, "fused.add", {"features": ((fl.float() + fs.float()) / 2).half(), "mask": torch.from_numpy(mask),
                                  "weights": torch.full((n, 2), 0.5), "teachers": ["lseg_compact", "seem_compact"]},
               kind="fused", geometry=scene.geometry_digest)
    store.save(sid, "pred3d.demo", {"features": class_features(enc, scene, 0.1, {}, 3)}, kind="pred3d",
               geometry=scene.geometry_digest)
    # capability table with one synthesized image per class for chair
    from PIL import Image

    shared = store.scene_dir(None)
    (shared / "capimg").mkdir(parents=True, exist_ok=True)
    img = np.zeros((24, 32, 3), np.uint8) + 90
    m = np.zeros((24, 32), np.uint8)
    m[6:18, 8:20] = 255
    Image.fromarray(img).save(shared / "capimg" / "chair_0.png")
    Image.fromarray(m).save(shared / "capimg" / "chair_0_mask.png")
    store.save_json(None, "capability.tiny_sd", {
        "teachers": ["lseg_compact", "seem_compact"], "classes": ["chair", "sofa", "table"],
        "scores": [[0.8, 0.2, 0.7], [0.5, 0.9, 0.3]], "mode": "pooled", "provenance": {"m": 1},
        "images": [{"class": "chair", "image": "capimg/chair_0.png", "mask": "capimg/chair_0_mask.png",
                    "ious": {"lseg_compact": 0.8, "seem_compact": 0.5}},
                   {"class": "sofa", "image": "../../../etc/passwd", "mask": "capimg/chair_0_mask.png"}]},
        kind="capability")


@pytest.fixture
def scene_factory():
    """``make_scene`` for tests that need a second scene."""
    return make_scene


@pytest.fixture
def encoder():
    return HashEncoder()


@pytest.fixture
def fixture_state(tmp_path, encoder):
    from app.state import AppState

    scene = make_scene()
    store = ArtefactStore(tmp_path / "store")
    populate_store(store, scene, encoder)
    data = tmp_path / "data"
    data.mkdir()
    st = AppState(store, [data], text_encoder=encoder)
    st.add_scene(scene)
    yield st
    st.close()  # the export folder of this state (created on first export)
