"""Cross-attention capture (Eq. 2) and the Stable Diffusion synthesizer on a tiny random pipeline."""
import numpy as np
import pytest
import torch

from sas_engine.capability.attention import (AttentionCapture, CaptureAttnProcessor, capturing, class_token_indices,
                                             cross_attention_names, minmax_normalise)
from sas_engine.capability.sd import SDConfig, StableDiffusionSynthesizer, check_sd_folder, load_sd_pipeline
from sas_engine.errors import SASInputError

PROMPT = "a good photo of a chair in a room"


def _run(pipe, seed=0, steps=2, prompt=PROMPT):
    with torch.no_grad():
        return pipe(prompt, num_inference_steps=steps, guidance_scale=7.0, height=32, width=32,
                    generator=torch.Generator().manual_seed(seed), output_type="np").images


def test_token_indices_real_clip_bpe(tiny_sd_pipe):
    tok = tiny_sd_pipe.tokenizer
    assert class_token_indices(tok, PROMPT, "chair") == [6]
    # multi-token name: "a good photo of a shower curtain in a room" -> BOS a good photo of a shower curtain ...
    assert class_token_indices(tok, "a good photo of a shower curtain in a room", "shower curtain") == [6, 7]
    assert class_token_indices(tok, "a good photo of bathtub", "bathtub") == [5]
    with pytest.raises(SASInputError):
        class_token_indices(tok, PROMPT, "sofa")


def test_capture_shapes_probabilities_and_identical_images(tiny_sd_pipe):
    pipe = tiny_sd_pipe
    names = cross_attention_names(pipe.unet)
    assert len(names) == 4 and all(n.endswith("attn2.processor") for n in names)
    plain = _run(pipe)
    tokens = class_token_indices(pipe.tokenizer, PROMPT, "chair")
    cap = AttentionCapture(tokens, (16, 16), num_cond=1, keep_raw=True)
    before = dict(pipe.unet.attn_processors)
    with capturing(pipe.unet, cap):
        captured = _run(pipe)
    # processors restored afterwards
    assert {k: type(v) for k, v in pipe.unet.attn_processors.items()} == {k: type(v) for k, v in before.items()}
    # the tiny UNet: 3 cross-attn layers on the 16x16 latent ("64") and the mid block on 8x8 ("32"), 2 steps each
    assert cap.counts == {64: 6, 32: 2}
    assert len(cap.raw) == 8
    for layer, res, p in cap.raw:
        side = 16 if res == 64 else 8
        assert p.shape == (1, 4, side * side, 77)            # conditional half only: b=1, 4 heads, 77 tokens
        assert torch.allclose(p.sum(-1), torch.ones(()), atol=1e-5)   # probabilities over tokens, before selection
        assert bool((p >= 0).all())
    assert cap.sums[64].shape == (1, 16, 16, 1) and cap.sums[32].shape == (1, 8, 8, 1)
    agg = cap.aggregate((32, 32))
    assert agg.shape == (1, 32, 32) and bool(torch.isfinite(agg).all())
    # each recorded map was normalised by its max before averaging -> the aggregate lies in (0, 1]
    assert 0 < float(agg.max()) <= 1.0 + 1e-6
    # capture must not change sampling: bitwise equal to diffusers' classic processor, ~equal to the default SDPA one
    from diffusers.models.attention_processor import AttnProcessor

    procs = {n: (AttnProcessor() if n in names else p) for n, p in before.items()}
    pipe.unet.set_attn_processor(procs)
    try:
        classic = _run(pipe)
    finally:
        pipe.unet.set_attn_processor(before)
    assert np.array_equal(captured, classic)
    assert np.allclose(captured, plain, atol=1e-5)


def test_eq2_aggregation_by_hand():
    """Two heads, CFG batch (uncond, cond), 4x4 latent + a 2x2 layer, tokens 2 and 3 of 5."""
    g = torch.Generator().manual_seed(0)
    cap = AttentionCapture([2, 3], (4, 4), num_cond=1, resolutions=(64, 32), reference_latent=64)
    p16 = torch.rand(2 * 2, 16, 5, generator=g).softmax(-1)     # [(uncond h0, uncond h1, cond h0, cond h1), hw, T]
    p4 = torch.rand(2 * 2, 4, 5, generator=g).softmax(-1)
    cap.record("a", p16, heads=2)
    cap.record("b", p4, heads=2)
    cap.record("c", p16 * 0.5, heads=2)                          # a scaled map normalises to the same map
    cap.record("d", torch.rand(4, 1, 5).softmax(-1), heads=2)    # 1x1 = resolution 16: not configured, ignored
    assert cap.counts == {64: 2, 32: 1}

    def norm_mean(p, side):
        cond = p[2:]                                             # conditional heads
        m = cond[..., [2, 3]] / cond[..., [2, 3]].amax(dim=1, keepdim=True)
        return m.mean(0).mean(-1).reshape(side, side)           # heads, then the name's tokens

    m64 = norm_mean(p16, 4)
    m32 = torch.nn.functional.interpolate(norm_mean(p4, 2)[None, None], size=(4, 4), mode="bilinear",
                                          align_corners=False)[0, 0]
    want = (m64 + m32) / 2
    assert torch.allclose(cap.aggregate((4, 4))[0], want, atol=1e-6)
    mm = minmax_normalise(cap.aggregate((4, 4)))
    assert float(mm.min()) == 0.0 and abs(float(mm.max()) - 1.0) < 1e-6


def test_processor_without_capture_matches_classic_attention():
    from diffusers.models.attention_processor import Attention, AttnProcessor

    torch.manual_seed(0)
    attn = Attention(query_dim=16, cross_attention_dim=8, heads=2, dim_head=8)
    x, ctx = torch.randn(2, 10, 16), torch.randn(2, 7, 8)
    want = AttnProcessor()(attn, x, ctx)
    got = CaptureAttnProcessor("x", None)(attn, x, ctx)
    assert torch.equal(want, got)


def test_sd_synthesizer_end_to_end(tiny_sd_dir, tiny_sd_pipe):
    cfg = SDConfig(model_dir=str(tiny_sd_dir), steps=1, image_size=32, batch_size=2)
    syn = StableDiffusionSynthesizer(cfg, pipeline=tiny_sd_pipe)
    out = syn.synthesize(["shower curtain"], m=3, seed=5)
    assert len(out) == 3
    assert [o.class_index for o in out] == [0, 0, 0]
    assert [o.provenance["seed"] for o in out] == [5, 6, 7]
    assert out[0].provenance["prompt"] == "a good photo of a shower curtain in a room"
    assert out[0].provenance["synthesizer"] == "sd" and out[0].provenance["refined"] == "none"
    for o in out:
        assert o.image.shape == (32, 32, 3) and o.image.dtype == np.uint8
        att = o.extras["attention"]
        assert att.shape == (32, 32) and abs(float(att.min())) < 1e-6 and abs(float(att.max()) - 1) < 1e-5
        assert np.array_equal(o.mask, att > 0.7) and 0 < o.mask.sum() < 32 * 32
    # seed i per image: batch of 2 + 1 gives the same image as sampling seed 6 alone
    single, _, _ = syn.sample("a good photo of a shower curtain in a room", "shower curtain", [6])
    assert np.abs(single[0].astype(int) - out[1].image.astype(int)).max() <= 1
    # paper prompt variant
    cfg2 = SDConfig(model_dir=str(tiny_sd_dir), steps=1, image_size=32, prompt="capability_paper")
    o2 = StableDiffusionSynthesizer(cfg2, pipeline=tiny_sd_pipe).synthesize(["chair"], 1)
    assert o2[0].provenance["prompt"] == "a good photo of chair"


def test_sd_folder_errors(tmp_path, tiny_sd_dir):
    with pytest.raises(SASInputError, match="does not exist"):
        check_sd_folder(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model_index.json").write_text("{}")
    with pytest.raises(SASInputError, match="unet config"):
        load_sd_pipeline(tmp_path / "half")
    assert check_sd_folder(tiny_sd_dir) == tiny_sd_dir
    with pytest.raises(SASInputError, match="placeholder"):
        SDConfig(prompt="no placeholder").template()
