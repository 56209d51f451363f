"""Tiny randomly initialised Stable Diffusion and SAM models, built offline, for tests and benchmarks.

They exercise exactly the code paths of the real models (same classes, same processor API, same folder layout) at a
size that runs in well under a second on a CPU. Their outputs are meaningless images; nothing here downloads anything.
The tokenizer is a real CLIP BPE tokenizer whose vocabulary is rebuilt from the BPE merges file that ``open_clip`` ships.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def write_clip_tokenizer_files(folder: str | Path) -> Path:
    """Write ``vocab.json`` + ``merges.txt`` of the CLIP BPE tokenizer (49408 tokens) into ``folder`` from
    ``open_clip``'s packaged merges. Returns the folder."""
    import importlib.util

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = importlib.util.find_spec("open_clip")  # locate the package's data file without importing it
    if spec is None or spec.origin is None:
        raise ImportError("open_clip is not installed; its packaged BPE merges build the tiny tokenizer")
    bpe = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    chars = list(_bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


def build_tiny_sd_pipeline(seed: int = 0, tokenizer_dir: str | Path | None = None):
    """A tiny random ``StableDiffusionPipeline`` (UNet blocks (32, 64) with cross-attention, cross_attention_dim 32,
    2-block VAE -> latent = image / 2, DDIM scheduler, 2-layer CLIP text model with hidden size 32).

    ``tokenizer_dir``: where to write the tokenizer files (a temporary folder when ``None``).
    """
    import tempfile

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                                        vocab_size=49408, max_position_embeddings=77, projection_dim=32))
    tok_dir = Path(tokenizer_dir) if tokenizer_dir is not None else Path(tempfile.mkdtemp(prefix="sas_tok_"))
    write_clip_tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    return StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def build_tiny_sam(seed: int = 0):
    """A tiny random ``segment_anything.Sam`` (ViT depth 2, embed 64, 1024 px input, 256-d prompt space)."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    enc = ImageEncoderViT(depth=2, embed_dim=64, img_size=1024, mlp_ratio=4, num_heads=2, patch_size=16,
                          out_chans=256, qkv_bias=True, use_rel_pos=True, window_size=14, global_attn_indexes=(1,),
                          norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    prompt = PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16)
    dec = MaskDecoder(num_multimask_outputs=3, transformer_dim=256, iou_head_depth=2, iou_head_hidden_dim=64,
                      transformer=TwoWayTransformer(depth=1, embedding_dim=256, mlp_dim=256, num_heads=2))
    sam = Sam(image_encoder=enc, prompt_encoder=prompt, mask_decoder=dec)
    return sam.eval()
