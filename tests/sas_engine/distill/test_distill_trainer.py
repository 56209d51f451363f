"""Distillation trainer on a tiny procedural point set: loss decreases, resume equivalence, DDP with gloo."""
import os
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sas_engine.distill.data import DistillScene
from sas_engine.distill.trainer import DistillConfig, DistillTrainer
from sas_engine.store import ArtefactStore

C = 8


def _text():
    g = torch.Generator().manual_seed(1)
    return F.normalize(torch.randn(3, C, generator=g), dim=1)


def _scene(i: int, text) -> DistillScene:
    """A floor (class 0), a box (class 1) and a wall (class 2), 5 cm sampling; targets = noisy class texts."""
    rng = np.random.default_rng(i)
    floor = np.stack(np.meshgrid(np.arange(0, 1.0, 0.05), np.arange(0, 1.0, 0.05), [0.0]), -1).reshape(-1, 3)
    wall = np.stack(np.meshgrid(np.arange(0, 1.0, 0.05), [0.0], np.arange(0.05, 0.6, 0.05)), -1).reshape(-1, 3)
    box = np.stack(np.meshgrid(np.arange(0.4, 0.7, 0.05), np.arange(0.4, 0.7, 0.05), [0.3]), -1).reshape(-1, 3)
    pts = np.concatenate([floor, box, wall]).astype(np.float32) + rng.normal(0, 0.002, (1, 3)).astype(np.float32)
    lab = np.concatenate([np.zeros(len(floor)), np.ones(len(box)), np.full(len(wall), 2)]).astype(np.uint8)
    tgt = text[torch.as_tensor(lab).long()] + 0.3 * torch.randn(len(pts), C, generator=torch.Generator().manual_seed(i))
    valid = torch.as_tensor(rng.random(len(pts)) > 0.2)
    sp = torch.as_tensor(lab.astype(np.int64) * 1000 + (pts[:, 0] * 4).astype(np.int64))
    return DistillScene(f"s{i}", pts, sp, tgt.half(), valid, lab)


def _cfg(**kw):
    base = dict(run="t", model="mink18a_slim", out_channels=C, voxel_size=0.05, epochs_stage1=2, epochs_stage2=0,
                batch_size=2, lr=1e-2, lr_end=1e-3, augment=True, val_every=1, seed=3)
    base.update(kw)
    return DistillConfig(**base)


def test_training_reduces_loss_and_validates(tmp_path):
    text = _text()
    scenes = [_scene(i, text) for i in range(2)]
    tr = DistillTrainer(_cfg(epochs_stage1=3), scenes, scenes[:1], text, tmp_path / "runs", ArtefactStore(tmp_path / "st"))
    tr.fit()
    losses = [e["loss"] for e in tr.log]
    assert losses[-1] < losses[0]
    assert 0.0 <= tr.log[-1]["miou"] <= 100.0
    assert (tmp_path / "runs" / "t" / "last.pt").exists() and (tmp_path / "runs" / "t" / "best.pt").exists()


def test_resume_equals_uninterrupted_run_with_stage2(tmp_path):
    text = _text()
    scenes = [_scene(i, text) for i in range(2)]
    cfg = _cfg(epochs_stage1=1, epochs_stage2=2, alpha=0.5, val_every=0)
    full = DistillTrainer(cfg, scenes, [], text, tmp_path / "a", ArtefactStore(tmp_path / "sa"))
    full.fit()

    class Killed(Exception):
        pass

    def kill(stats):
        if stats["epoch"] == 2:  # after the first stage-2 epoch, once its checkpoint is written
            raise Killed

    part = DistillTrainer(cfg, scenes, [], text, tmp_path / "b", ArtefactStore(tmp_path / "sb"))
    with pytest.raises(Killed):
        part.fit(on_epoch=kill)
    again = DistillTrainer(cfg, scenes, [], text, tmp_path / "b", ArtefactStore(tmp_path / "sb"))
    again.fit()
    assert again.epoch == full.epoch == 3
    for (k, a), b in zip(full.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k
    assert "loss_ce_point" in again.log[-1]


def test_a_finished_stage2_run_resumes_without_its_histories(tmp_path):
    """A finished run (a second `sas ablate` over the same runs) needs no stage-2 histories: it loads its weights even
    when another run has replaced them in the store, while an unfinished stage-2 run still refuses to go on without
    them."""
    import shutil

    text = _text()
    scenes = [_scene(i, text) for i in range(2)]
    cfg = _cfg(epochs_stage1=1, epochs_stage2=2, alpha=0.5, val_every=0)
    done = DistillTrainer(cfg, scenes, [], text, tmp_path / "runs", ArtefactStore(tmp_path / "st"))
    done.fit()
    shutil.rmtree(tmp_path / "st")
    again = DistillTrainer(cfg, scenes, [], text, tmp_path / "runs", ArtefactStore(tmp_path / "st"))
    assert again.try_resume() and again.epoch == 3 and not again.history
    for (k, a), b in zip(done.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k
    longer = _cfg(epochs_stage1=1, epochs_stage2=2, alpha=0.5, val_every=0, checkpoint_every=1)

    class Killed(Exception):
        pass

    def kill(stats):
        if stats["epoch"] == 2:
            raise Killed

    with pytest.raises(Killed):
        DistillTrainer(longer, scenes, [], text, tmp_path / "b", ArtefactStore(tmp_path / "sb")).fit(on_epoch=kill)
    shutil.rmtree(tmp_path / "sb")
    from sas_engine.errors import SASInputError

    with pytest.raises(SASInputError, match="stage-2 history missing"):
        DistillTrainer(longer, scenes, [], text, tmp_path / "b", ArtefactStore(tmp_path / "sb")).try_resume()


def test_crop_disc_keeps_the_nearest_points_horizontally():
    from sas_engine.distill.trainer import crop_disc

    rng = np.random.default_rng(0)
    pts = rng.random((500, 3)).astype(np.float32)
    assert crop_disc(pts, 0, rng) is None and crop_disc(pts, 500, rng) is None
    idx = crop_disc(pts, 120, np.random.default_rng(5))
    assert idx.shape == (120,) and np.all(np.diff(idx) > 0)
    centre = pts[np.random.default_rng(5).integers(500), :2]  # the same draw crop_disc made
    d = ((pts[:, :2] - centre) ** 2).sum(1)
    assert d[idx].max() <= np.delete(d, idx).min()  # nobody outside is nearer than anyone inside
    assert np.ptp(pts[idx, 2]) > 0.9  # floor to ceiling: height is not cropped


def test_cropped_training_resumes_exactly_with_sparse_checkpoints(tmp_path):
    """Crops (and stage-2 history updates on crop rows) stay reproducible across a kill when last.pt is written
    every 2 epochs: the resumed run redoes the unsaved epoch and lands on the same weights."""
    text = _text()
    scenes = [_scene(i, text) for i in range(2)]
    cfg = _cfg(epochs_stage1=2, epochs_stage2=2, alpha=0.5, val_every=0, crop_points=300, checkpoint_every=2)
    full = DistillTrainer(cfg, scenes, [], text, tmp_path / "a", ArtefactStore(tmp_path / "sa"))
    full.fit()
    saved = []

    class Killed(Exception):
        pass

    def kill(stats):
        saved.append((stats["epoch"], (tmp_path / "b" / "t" / "last.pt").is_file()))
        if stats["epoch"] == 3:  # stage 2 under way; the newest checkpoint is epoch 2's
            raise Killed

    with pytest.raises(Killed):
        DistillTrainer(cfg, scenes, [], text, tmp_path / "b", ArtefactStore(tmp_path / "sb")).fit(on_epoch=kill)
    assert saved[0] == (1, False) and saved[1] == (2, True)
    again = DistillTrainer(cfg, scenes, [], text, tmp_path / "b", ArtefactStore(tmp_path / "sb"))
    assert again.try_resume() and again.epoch == 2
    again.fit()
    assert again.epoch == full.epoch == 4
    for (k, a), b in zip(full.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k


def test_stage2_weight_scales_the_self_distillation_terms(tmp_path):
    """With stage2_weight 0 the stage-2 epochs train exactly like stage-1 epochs (same schedule, data, crops); with
    the default weight, and with only the confident half of the pseudo labels, the CE terms move the weights."""
    text = _text()
    scenes = [_scene(i, text) for i in range(2)]

    def weights(name, **kw):
        tr = DistillTrainer(_cfg(val_every=0, alpha=0.5, **kw), scenes, [], text, tmp_path / name,
                            ArtefactStore(tmp_path / f"s{name}"))
        tr.fit()
        return tr, torch.cat([v.float().flatten() for v in tr.model.state_dict().values()])

    _, plain = weights("plain", epochs_stage1=2, epochs_stage2=0)
    tr0, off = weights("off", epochs_stage1=1, epochs_stage2=1, stage2_weight=0.0)
    assert "loss_ce_point" in tr0.log[-1]  # the terms were computed and logged, just not weighted in
    assert torch.allclose(plain, off, atol=1e-6)
    tr_on, on = weights("on", epochs_stage1=1, epochs_stage2=1)
    trk, half = weights("half", epochs_stage1=1, epochs_stage2=1, pseudo_keep=0.5)
    assert not torch.allclose(plain, on, atol=1e-4) and not torch.allclose(on, half, atol=1e-4)
    assert trk.cfg.pseudo_keep == 0.5
    # stage1_weight_stage2 0: the stage-2 epochs' loss is the self-distillation terms alone (the stage-1 terms are
    # still computed and logged); with the default both count
    tr_a, alone = weights("alone", epochs_stage1=1, epochs_stage2=1, stage1_weight_stage2=0.0)
    a, b = tr_a.log[-1], tr_on.log[-1]
    assert "loss_point" in a and a["loss"] == pytest.approx(a["loss_ce_point"] + a["loss_ce_superpoint"], rel=1e-5)
    assert b["loss"] == pytest.approx(b["loss_point"] + b["loss_superpoint"] + b["loss_ce_point"] +
                                      b["loss_ce_superpoint"], rel=1e-5)
    assert not torch.allclose(alone, on, atol=1e-4)


def test_unit_history_from_augmented_views(tmp_path):
    """history_unit keeps the EMA over L2-normalised views (norms <= 1, > 0 where views agree); history_tta starts it
    from an average over augmented passes, which differs from the plain pass."""
    text = _text()
    scenes = [_scene(i, text) for i in range(2)]

    def trainer(name, **kw):
        return DistillTrainer(_cfg(val_every=0, alpha=0.5, epochs_stage1=1, epochs_stage2=1, **kw), scenes, [], text,
                              tmp_path / name, ArtefactStore(tmp_path / f"s{name}"))

    unit = trainer("unit", history_unit=True, history_tta=2)
    unit.fit()
    for h in unit.history.values():
        n = h.float().norm(dim=1)
        assert bool((n <= 1.001).all()) and float(n.mean()) > 0.5
    raw = trainer("raw")
    raw._init_histories()
    plain_init = torch.cat([h.float() for h in raw.history.values()])
    norms = plain_init.norm(dim=1)
    assert not torch.allclose(norms, torch.ones_like(norms), atol=0.05)  # raw outputs are not unit vectors
    tta = trainer("tta", history_unit=True, history_tta=2)
    tta._init_histories()
    tta_init = torch.cat([h.float() for h in tta.history.values()])
    cos = F.cosine_similarity(tta_init, plain_init, dim=1)
    assert float(cos.mean()) > 0.5 and not torch.allclose(F.normalize(plain_init, dim=1), tta_init, atol=1e-3)


def test_resume_refuses_other_config(tmp_path):
    text = _text()
    scenes = [_scene(0, text)]
    DistillTrainer(_cfg(epochs_stage1=1), scenes, [], text, tmp_path / "r", ArtefactStore(tmp_path / "s")).fit()
    from sas_engine.errors import SASInputError

    with pytest.raises(SASInputError, match="another config"):
        DistillTrainer(_cfg(epochs_stage1=1, lr=0.5), scenes, [], text, tmp_path / "r",
                       ArtefactStore(tmp_path / "s")).fit()
    # a checkpoint written before a config field existed resumes as if it had the field's default, and only then
    last = tmp_path / "r" / "t" / "last.pt"
    ck = torch.load(last, weights_only=True)
    del ck["config"]["pseudo_keep"]
    torch.save(ck, last)
    old = DistillTrainer(_cfg(epochs_stage1=1), scenes, [], text, tmp_path / "r", ArtefactStore(tmp_path / "s"))
    assert old.try_resume()
    with pytest.raises(SASInputError, match="another config"):
        DistillTrainer(_cfg(epochs_stage1=1, pseudo_keep=0.5), scenes, [], text, tmp_path / "r",
                       ArtefactStore(tmp_path / "s")).try_resume()


DDP_SCRIPT = """
import sys, torch
sys.path.insert(0, {here!r})
from test_distill_trainer import _cfg, _scene, _text
from sas_engine.distill.trainer import DistillTrainer
from sas_engine.store import ArtefactStore
torch.set_num_threads(1)
torch.distributed.init_process_group("gloo")
text = _text()
scenes = [_scene(i, text) for i in range(4)]
tr = DistillTrainer(_cfg(epochs_stage1=1, epochs_stage2=1, val_every=0), scenes, [], text, {root!r} + "/runs",
                    ArtefactStore({root!r} + "/store"))
tr.fit()
r = torch.distributed.get_rank()
torch.save({{"mine": tr.mine, "params": [p.detach() for p in tr.model.parameters()][:3]}}, {root!r} + f"/rank{{r}}.pt")
torch.distributed.destroy_process_group()
"""


def test_ddp_gloo_two_processes_under_torchrun(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(here=str(Path(__file__).parent), root=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(port), str(script)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["mine"] == [0, 2] and r1["mine"] == [1, 3]  # static shards
    for a, b in zip(r0["params"], r1["params"]):
        assert torch.allclose(a, b)  # DDP keeps the replicas identical
    assert (tmp_path / "runs" / "t" / "last.pt").exists()
    st = ArtefactStore(tmp_path / "store")
    assert all(st.path(f"s{i}", "history.t").exists() for i in range(4))  # each rank wrote its scenes' histories
