"""LSeg: the network at the released size (shapes on the meta device), a scaled-down network loaded from a
checkpoint written with the released key layout, outputs, and key-mismatch errors."""
import argparse

import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.teachers import build_teacher
from sas_engine.teachers.lseg import LSegConfig, LSegNet, load_lseg

TINY = LSegConfig(backbone_kwargs=dict(embed_dim=32, depth=4, num_heads=2, img_size=64), hooks=(0, 1, 2, 3),
                  reassemble=(8, 16, 32, 32), features=16, out_dim=32, clip_arch="sas-test-tiny")

#: key names of the released demo_e200.ckpt's state_dict (Lightning module attribute ``net``)
RELEASED_KEYS = [
    "net.pretrained.model.cls_token", "net.pretrained.model.pos_embed", "net.pretrained.model.patch_embed.proj.weight",
    "net.pretrained.model.blocks.0.attn.qkv.weight", "net.pretrained.model.blocks.0.mlp.fc2.bias",
    "net.pretrained.model.norm.weight", "net.pretrained.act_postprocess1.0.project.0.weight",
    "net.pretrained.act_postprocess1.3.weight", "net.pretrained.act_postprocess1.4.weight",
    "net.pretrained.act_postprocess2.4.bias", "net.pretrained.act_postprocess3.3.weight",
    "net.pretrained.act_postprocess4.4.weight", "net.scratch.layer1_rn.weight", "net.scratch.layer4_rn.weight",
    "net.scratch.refinenet1.out_conv.weight", "net.scratch.refinenet1.resConfUnit1.conv1.weight",
    "net.scratch.refinenet1.resConfUnit1.bn1.running_mean",
    "net.scratch.refinenet4.resConfUnit2.bn2.num_batches_tracked",
    "net.scratch.head1.weight", "net.scratch.head1.bias", "net.clip_pretrained.visual.conv1.weight",
    "net.clip_pretrained.token_embedding.weight", "net.clip_pretrained.text_projection",
]


def test_released_size_shapes_on_meta_device():
    with torch.device("meta"):
        net = LSegNet(LSegConfig())
    sd = net.state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["pretrained.model.pos_embed"] == (1, 577, 1024)  # ViT-L/16 at 384
    assert len([k for k in sd if k.endswith("attn.qkv.weight")]) == 24
    assert shapes["pretrained.act_postprocess1.0.project.0.weight"] == (1024, 2048)
    assert shapes["pretrained.act_postprocess1.3.weight"] == (256, 1024, 1, 1)
    assert shapes["pretrained.act_postprocess1.4.weight"] == (256, 256, 4, 4)
    assert shapes["pretrained.act_postprocess2.4.weight"] == (512, 512, 2, 2)
    assert "pretrained.act_postprocess3.4.weight" not in shapes
    assert shapes["pretrained.act_postprocess4.4.weight"] == (1024, 1024, 3, 3)
    assert shapes["scratch.layer4_rn.weight"] == (256, 1024, 3, 3)
    assert shapes["scratch.head1.weight"] == (512, 256, 1, 1)
    assert "scratch.refinenet1.resConfUnit1.conv1.bias" not in shapes  # batch norm instead of bias


@pytest.fixture(scope="module")
def tiny_lseg_ckpt(tiny_clip_archs, tmp_path_factory):
    import open_clip

    torch.manual_seed(3)
    net = LSegNet(TINY).eval()
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    clip = open_clip.create_model("sas-test-tiny", pretrained=None).eval()
    sd = {f"net.{k}": v for k, v in net.state_dict().items()}
    sd.update({f"net.clip_pretrained.{k}": v.half() for k, v in clip.state_dict().items()})  # fp16 like the release
    ckpt = {"epoch": 200, "global_step": 1, "state_dict": sd,
            "hyper_parameters": argparse.Namespace(backbone="clip_vitl16_384", num_features=256)}
    p = tmp_path_factory.mktemp("lseg") / "demo_e200.ckpt"
    torch.save(ckpt, p)
    return p, net, clip, sd


def test_checkpoint_uses_released_key_layout(tiny_lseg_ckpt):
    _, _, _, sd = tiny_lseg_ckpt
    missing = [k for k in RELEASED_KEYS if k not in sd]
    assert not missing


def test_load_and_predict(tiny_lseg_ckpt):
    import open_clip

    path, net, clip, _ = tiny_lseg_ckpt
    t = build_teacher("lseg", checkpoint=str(path), cfg=TINY)
    assert t.name == "lseg" and t.kind == "dense" and t.text_encoder.dim == 32
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(t.net(x), net(x), atol=1e-5)  # weights and batch-norm statistics loaded
    out = t.net(x)
    assert out.shape == (2, 32, 32, 48)
    im = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)  # padded to 64 x 96 inside
    f = t.predict(im)
    assert f.shape == (25, 35, 32) == (*t.output_size(50, 70), 32) and f.dtype == torch.float32
    assert torch.allclose(f.norm(dim=-1), torch.ones(25, 35), atol=1e-4)
    fb = t.predict_batch([im, im])
    assert torch.allclose(fb[1], f, atol=1e-5)
    e = t.text_encoder.encode(["a chair in a scene"])
    tok = open_clip.get_tokenizer("sas-test-tiny")
    ref = torch.nn.functional.normalize(clip.half().float().encode_text(tok(["a chair in a scene"])).detach(), dim=-1)
    assert torch.allclose(e, ref, atol=1e-4)  # text tower loaded from clip_pretrained.*


def test_key_mismatch_lists_missing_and_unexpected(tiny_lseg_ckpt, tmp_path):
    path, _, _, sd = tiny_lseg_ckpt
    bad = dict(sd)
    bad.pop("net.scratch.head1.bias")
    bad["net.scratch.head2.weight"] = torch.zeros(1)
    p = tmp_path / "bad.ckpt"
    torch.save({"state_dict": bad}, p)
    with pytest.raises(SASInputError, match=r"bad.ckpt.*missing keys: scratch.head1.bias.*"
                                             r"unexpected keys: scratch.head2.weight"):
        load_lseg(p, TINY)
    noclip = {k: v for k, v in sd.items() if not k.startswith("net.clip_pretrained.")}
    p2 = tmp_path / "noclip.ckpt"
    torch.save(noclip, p2)  # plain state dict, no Lightning wrapper
    with pytest.raises(SASInputError, match="clip_checkpoint"):
        load_lseg(p2, TINY)
    with pytest.raises(SASInputError, match="does not match the LSeg architecture"):
        load_lseg(path, LSegConfig(backbone_kwargs=dict(embed_dim=32, depth=2, num_heads=2, img_size=64),
                                   hooks=(0, 1, 1, 1), reassemble=(8, 16, 32, 32), features=16, out_dim=32,
                                   clip_arch="sas-test-tiny"))
    with pytest.raises(SASInputError, match="checkpoint not found"):
        load_lseg(tmp_path / "none.ckpt", TINY)


def test_clip_from_separate_checkpoint(tiny_lseg_ckpt, tiny_clip_ckpt, tmp_path):
    _, net, _, sd = tiny_lseg_ckpt
    clip_path, clip_model = tiny_clip_ckpt
    p = tmp_path / "minimal.ckpt"
    torch.save({"state_dict": {k: v for k, v in sd.items() if "clip_pretrained" not in k}}, p)
    t = build_teacher("lseg", checkpoint=str(p), clip_checkpoint=str(clip_path), cfg=TINY)
    assert t.clip is not None and torch.equal(t.clip.token_embedding.weight, clip_model.token_embedding.weight)
