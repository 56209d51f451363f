"""Dense CLIP (MaskCLIP) teacher: value-path math on a random ViT-B-32, locality, shapes, loading."""
import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.teachers import build_teacher
from sas_engine.teachers.clip_dense import ClipDenseConfig, ClipDenseTeacher, maskclip_features


def _manual_maskclip(visual, x):
    """Reference: open_clip's own forward up to the last block's input, then the value path written out."""
    n = len(visual.transformer.resblocks)
    out = visual.forward_intermediates(x, indices=[n - 2], output_fmt="NLC", output_extra_tokens=True)
    h = torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], 1)
    blk = visual.transformer.resblocks[-1]
    y = torch.nn.functional.layer_norm(h, (h.shape[-1],), blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
    d = y.shape[-1]
    v = y @ blk.attn.in_proj_weight[2 * d:].T + blk.attn.in_proj_bias[2 * d:]
    v = v @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
    t = v[:, 1:]
    t = torch.nn.functional.layer_norm(t, (d,), visual.ln_post.weight, visual.ln_post.bias, visual.ln_post.eps)
    return t @ visual.proj


@pytest.fixture(scope="module")
def vitb32():
    import open_clip

    torch.manual_seed(0)
    return open_clip.create_model("ViT-B-32", pretrained=None).eval()


def test_maskclip_math_on_random_vitb32(vitb32):
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        mine = maskclip_features(vitb32.visual, x)
        ref = _manual_maskclip(vitb32.visual, x).reshape(1, 7, 7, 512)
    assert mine.shape == (1, 7, 7, 512)
    assert torch.allclose(mine, ref, atol=1e-4)
    # the value path is not the model's normal token output (q/k attention skipped)
    with torch.no_grad():
        _, tokens = vitb32.visual._pool(vitb32.visual.transformer(vitb32.visual._embeds(x)))
    assert not torch.allclose(mine.reshape(1, 49, 512), tokens @ vitb32.visual.proj, atol=1e-3)


def test_clip_dense_teacher_shapes_and_norms(vitb32):
    import open_clip

    t = ClipDenseTeacher(vitb32, open_clip.get_tokenizer("ViT-B-32"), ClipDenseConfig(upsample=4))
    im = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    assert t.input_size(240, 320) == (224, 288)  # short side 224, both sides multiples of 32
    f = t.predict(im)
    assert f.shape == (28, 36, 512) == (*t.output_size(240, 320), 512) and f.dtype == torch.float32
    assert torch.allclose(f.norm(dim=-1), torch.ones(28, 36), atol=1e-4)
    assert t.text_encoder.dim == 512 and t.kind == "dense" and t.name == "clip_dense"
    assert t.text_encoder.encode(["a chair in a scene"]).shape == (1, 512)


def test_patch_locality_of_one_block_model(tiny_clip_archs):
    """With a single block, MaskCLIP features of a patch depend only on that patch's pixels."""
    import open_clip

    torch.manual_seed(1)
    m = open_clip.create_model("sas-test-tiny-1layer", pretrained=None).eval()
    x = torch.randn(1, 3, 64, 96)  # 4 x 6 patches (positional embedding interpolated from 4 x 4)
    y = x.clone()
    y[:, :, 16:32, 32:48] += torch.randn(1, 3, 16, 16)  # change patch (1, 2) only
    with torch.no_grad():
        fx, fy = maskclip_features(m.visual, x), maskclip_features(m.visual, y)
    assert fx.shape == (1, 4, 6, 24)
    diff = (fx - fy).abs().amax(-1)[0]
    assert diff[1, 2] > 1e-3
    diff[1, 2] = 0
    assert diff.max() < 1e-5


def test_build_clip_dense_from_file_and_errors(tiny_clip_ckpt, tmp_path):
    path, model = tiny_clip_ckpt
    t = build_teacher("clip_dense", checkpoint=str(path), arch="sas-test-tiny", upsample=2)
    im = np.random.default_rng(1).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    f = t.predict(im)
    assert f.shape == (*t.output_size(48, 80), 32) == (8, 14, 32)  # 64 x 112 input, 4 x 7 patches
    assert torch.allclose(t.visual.conv1.weight, model.visual.conv1.weight)  # weights really loaded
    from sas_engine.io.files import file_digest

    assert t.config()["checkpoint"] == {"file": path.name, "sha": file_digest(path)}  # weights named by content
    fb = t.predict_batch([im, im[:, ::-1].copy(), im[:40]])  # batched, mixed sizes grouped
    assert torch.allclose(fb[0], f, atol=1e-5) and not torch.allclose(fb[1], f, atol=1e-3)
    assert fb[2].shape == (*t.output_size(40, 80), 32)
    with pytest.raises(SASInputError, match="missing.pt"):
        build_teacher("clip_dense", checkpoint=str(tmp_path / "missing.pt"), arch="sas-test-tiny")
    with pytest.raises(SASInputError, match="tiny_clip.pt"):
        build_teacher("clip_dense", checkpoint=str(path), arch="sas-test-tiny-1layer")
    with pytest.raises(SASInputError, match="needs checkpoint"):
        build_teacher("clip_dense")
    with pytest.raises(SASInputError, match="unknown teacher"):
        build_teacher("nope")
