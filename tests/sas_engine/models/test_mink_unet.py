"""MinkUNet18A: exact state_dict table (docs/network.md), forward contract, checkpoint loading."""
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.models import MinkUNet18A, MinkUNet18ASlim, build_model, load_mink_checkpoint
from sas_engine.sparse import forward_points, make_sparse_tensor

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# (block, input width, output width) of MinkUNet18A's eight stages; the first BasicBlock of a stage has a 1x1x1
# downsample when the widths differ.
BLOCKS = [("block1", 32, 32), ("block2", 32, 64), ("block3", 64, 128), ("block4", 128, 256),
          ("block5", 256, 128), ("block6", 192, 128), ("block7", 128, 96), ("block8", 128, 96)]
STRIDED = [("conv1p1s2", "bn1", 32, 32), ("conv2p2s2", "bn2", 32, 32), ("conv3p4s2", "bn3", 64, 64),
           ("conv4p8s2", "bn4", 128, 128)]
TRANSPOSED = [("convtr4p16s2", "bntr4", 256, 128), ("convtr5p8s2", "bntr5", 128, 128),
              ("convtr6p4s2", "bntr6", 128, 96), ("convtr7p2s2", "bntr7", 96, 96)]


def bn(prefix, c):
    return [(f"{prefix}.bn.{k}", () if k == "num_batches_tracked" else (c,)) for k in BN_KEYS]


def expected_table(out_channels=512):
    """The 289 (name, shape) entries of MinkUNet18A in module order."""
    t = [("conv0p1s1.kernel", (125, 3, 32))] + bn("bn0", 32)
    blocks = dict((b, (i, o)) for b, i, o in BLOCKS)

    def block(name):
        cin, cout = blocks[name]
        rows = []
        for j in range(2):
            rows += [(f"{name}.{j}.conv1.kernel", (27, cin if j == 0 else cout, cout))] + bn(f"{name}.{j}.norm1", cout)
            rows += [(f"{name}.{j}.conv2.kernel", (27, cout, cout))] + bn(f"{name}.{j}.norm2", cout)
            if j == 0 and cin != cout:
                rows += [(f"{name}.0.downsample.0.kernel", (cin, cout))] + bn(f"{name}.0.downsample.1", cout)
        return rows

    for (conv, norm, cin, cout), name in zip(STRIDED, ["block1", "block2", "block3", "block4"]):
        t += [(f"{conv}.kernel", (8, cin, cout))] + bn(norm, cout) + block(name)
    for (conv, norm, cin, cout), name in zip(TRANSPOSED, ["block5", "block6", "block7", "block8"]):
        t += [(f"{conv}.kernel", (8, cin, cout))] + bn(norm, cout) + block(name)
    return t + [("final.kernel", (96, out_channels))]


def test_state_dict_matches_network_md_table():
    sd = MinkUNet18A(out_channels=512).state_dict()
    got = [(k, tuple(v.shape)) for k, v in sd.items()]
    table = expected_table(512)
    assert len(table) == 289 and len(got) == 289
    assert sorted(got) == sorted(table)
    assert sum(v.numel() for k, v in sd.items() if "running" not in k and "num_batches" not in k) == pytest.approx(15.54e6, rel=1e-3)
    assert ("convtr4p16s2.kernel", (8, 256, 128)) in got and ("block1.0.downsample.0.kernel", (32, 32)) not in got


def test_slim_preset_same_names_half_width():
    slim = MinkUNet18ASlim(out_channels=384).state_dict()
    full = MinkUNet18A().state_dict()
    assert list(slim) == list(full)
    assert slim["conv0p1s1.kernel"].shape == (125, 3, 16) and slim["final.kernel"].shape == (48, 384)
    assert build_model("mink18a_slim", out_channels=64).state_dict()["final.kernel"].shape == (48, 64)
    with pytest.raises(SASInputError, match="mink18a"):
        build_model("nope")


def tiny_scene(n=600, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.unique(torch.randint(0, 24, (n, 3), generator=g), dim=0)
    return c[torch.randperm(c.shape[0], generator=g)]


def test_forward_shape_rows_and_batch_independence():
    torch.manual_seed(0)
    model = MinkUNet18ASlim(out_channels=8).eval()
    a, b = tiny_scene(500, 1), tiny_scene(400, 2) - 11  # second scene with negative coordinates
    out_a = forward_points(model, a)
    assert out_a.shape == (a.shape[0], 8) and torch.isfinite(out_a).all()
    both = torch.cat([torch.cat([torch.zeros(len(a), 1, dtype=torch.int64), a], 1),
                      torch.cat([torch.ones(len(b), 1, dtype=torch.int64), b], 1)])
    out_both = forward_points(model, both)
    torch.testing.assert_close(out_both[: len(a)], out_a, atol=1e-5, rtol=1e-4)  # eval BN: scenes do not interact
    inverse = torch.tensor([3, 0, 3])
    torch.testing.assert_close(forward_points(model, a, inverse=inverse), out_a[inverse])


def test_training_step_reduces_loss():
    torch.manual_seed(0)
    model = MinkUNet18ASlim(out_channels=4)
    coords = tiny_scene(400)
    target = torch.randn(coords.shape[0], 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(4):
        out = model(make_sparse_tensor(torch.ones(coords.shape[0], 3), coords))
        loss = (out.features - target).square().mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_checkpoint_prefixes_load_and_reproduce(tmp_path):
    torch.manual_seed(0)
    src = MinkUNet18ASlim(out_channels=8).eval()
    sd = src.state_dict()
    coords = tiny_scene(300)
    ref = forward_points(src, coords)
    for wrapped in ({"state_dict": {f"module.net3d.{k}": v for k, v in sd.items()}, "epoch": 3},
                    {"state_dict": {f"net3d.{k}": v for k, v in sd.items()}},
                    {f"module.{k}": v for k, v in sd.items()}, dict(sd)):
        path = tmp_path / "ckpt.pth.tar"
        torch.save(wrapped, path)
        dst = MinkUNet18ASlim(out_channels=8).eval()
        info = load_mink_checkpoint(dst, path)
        assert info["entries"] == 289
        torch.testing.assert_close(forward_points(dst, coords), ref)
    # other sub-networks next to net3d are ignored; old checkpoints without BN counters load
    mixed = {f"net3d.{k}": v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    mixed["net2d.head.weight"] = torch.zeros(3)
    info = load_mink_checkpoint(MinkUNet18ASlim(out_channels=8), {"state_dict": mixed})
    assert len(info["filled"]) == sum(k.endswith("num_batches_tracked") for k in sd)


def test_checkpoint_mismatch_lists_keys(tmp_path):
    sd = MinkUNet18ASlim(out_channels=8).state_dict()
    bad = dict(sd)
    bad.pop("block3.1.conv2.kernel")
    bad["extra.kernel"] = torch.zeros(2)
    bad["final.kernel"] = torch.zeros(48, 16)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": bad}, path)
    with pytest.raises(SASInputError) as err:
        load_mink_checkpoint(MinkUNet18ASlim(out_channels=8), path)
    msg = str(err.value)
    assert "bad.pth" in msg and "block3.1.conv2.kernel" in msg and "extra.kernel" in msg
    assert "final.kernel (48, 16) vs model (48, 8)" in msg and "1 missing keys" in msg
    with pytest.raises(SASInputError, match="full MinkUNet|does not fit"):
        load_mink_checkpoint(MinkUNet18A(), {"state_dict": sd})  # slim weights into the full network


def test_checkpoint_unreadable_files(tmp_path):
    model = MinkUNet18ASlim(out_channels=8)
    with pytest.raises(SASInputError, match="not found"):
        load_mink_checkpoint(model, tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SASInputError, match="cannot read"):
        load_mink_checkpoint(model, junk)
    with pytest.raises(SASInputError, match="not a tensor"):
        load_mink_checkpoint(model, {"state_dict": {"conv0p1s1.kernel": [1, 2]}})
