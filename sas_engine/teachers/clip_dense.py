"""Dense CLIP teacher (MaskCLIP-style) from any open_clip Vision Transformer.

The image runs through the ViT up to the input of its last block. There, instead of the block's attention, only its
value path is used per token: ``v = ln_1(x) W_v + b_v`` (the value third of the attention's ``in_proj``), then the
attention's ``out_proj``; queries and keys are skipped, so each patch keeps its own content. ``ln_post`` and ``proj``
map every patch token into CLIP's joint space -> ``[gh, gw, C]``, L2-normalised and bilinearly upsampled by
``upsample`` (native output = patch grid x upsample). Positional embeddings are interpolated (bicubic) to the
input's patch grid, so images keep their aspect ratio: the image is resized so that its short side is
``short_side`` px (default: the model's training resolution) and both sides are multiples of the patch size.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SASInputError
from .base import (CLIP_MEAN, CLIP_STD, DenseTeacher, check_image, group_by_size, image_to_tensor,
                   weights_id)


@dataclass
class ClipDenseConfig:
    """Settings of the dense CLIP teacher."""

    arch: str = "ViT-B-32"
    """open_clip architecture name (``ViT-B-32``, ``ViT-B-32-quickgelu`` for OpenAI weights, ``ViT-L-14-336``...)."""
    checkpoint: Optional[str] = None
    """Local weights file; ``None`` only for tests/timing with random weights."""
    short_side: Optional[int] = None
    """Resize the image so its short side has this many pixels (``None``: the model's training image size)."""
    upsample: int = 4
    """Bilinear upsampling of the patch grid: native output is ``(gh * upsample, gw * upsample)``."""


def _grid_hw(height: int, width: int, short_side: int, patch: int) -> tuple[int, int]:
    s = short_side / min(height, width)
    return max(1, int(round(height * s / patch))), max(1, int(round(width * s / patch)))


def interpolate_pos_embed(pos: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """[1 + gh*gw, C] positional embedding (class token first) -> [1 + nh*nw, C] (bicubic on the patch part)."""
    if tuple(grid) == tuple(new_grid):
        return pos
    cls, patch = pos[:1], pos[1:]
    c = patch.shape[-1]
    patch = patch.reshape(1, grid[0], grid[1], c).permute(0, 3, 1, 2)
    patch = F.interpolate(patch.float(), size=new_grid, mode="bicubic", align_corners=False).to(pos.dtype)
    return torch.cat([cls, patch.permute(0, 2, 3, 1).reshape(-1, c)], 0)


def maskclip_features(visual, x: torch.Tensor) -> torch.Tensor:
    """MaskCLIP dense features of an open_clip ``VisionTransformer``.

    Args:
        visual: ``model.visual`` of an open_clip CLIP model with a plain ViT (class token, ``nn.MultiheadAttention``).
        x: normalised images float [B, 3, H, W], H and W multiples of the patch size.

    Returns:
        float [B, gh, gw, C] patch features in the joint space (not normalised).
    """
    if not hasattr(visual, "transformer") or not hasattr(visual, "conv1"):
        raise SASInputError(None, f"{type(visual).__name__} is not an open_clip VisionTransformer")
    if getattr(visual, "attn_pool", None) is not None:
        raise SASInputError(None, "MaskCLIP features need a ViT without attentional pooling")
    ph, pw = visual.patch_size
    B, _, H, W = x.shape
    gh, gw = H // ph, W // pw
    x = visual.conv1(x.to(visual.conv1.weight.dtype))  # [B, width, gh, gw]
    x = x.reshape(B, x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(B, -1, -1)
    x = torch.cat([cls, x], 1)
    pos = interpolate_pos_embed(visual.positional_embedding, visual.grid_size, (gh, gw))
    x = visual.ln_pre(x + pos.to(x.dtype))
    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for blk in blocks[:-1]:
        x = blk(x)
    if not batch_first:
        x = x.transpose(0, 1)
    last = blocks[-1]
    attn = last.attn
    if not isinstance(attn, torch.nn.MultiheadAttention):
        raise SASInputError(None, f"last block's attention is {type(attn).__name__}, expected nn.MultiheadAttention")
    y = last.ln_1(x)
    d = y.shape[-1]
    w_v = attn.in_proj_weight[2 * d:]
    b_v = attn.in_proj_bias[2 * d:] if attn.in_proj_bias is not None else None
    v = F.linear(y, w_v, b_v)
    v = attn.out_proj(v)
    v = visual.ln_post(v[:, 1:])
    if visual.proj is not None:
        v = v @ visual.proj
    return v.reshape(B, gh, gw, -1)


class ClipDenseTeacher(DenseTeacher):
    """MaskCLIP-style dense teacher over an open_clip ViT; its text encoder is the same model's text tower.

    Args:
        model: a loaded open_clip CLIP model (see :func:`build_clip_dense` to load one from a checkpoint).
        tokenizer: the model's tokenizer.
        cfg: :class:`ClipDenseConfig`.
        device: where the network runs.
    """

    name = "clip_dense"
    display_name = "dense CLIP (MaskCLIP)"

    def __init__(self, model, tokenizer, cfg: Optional[ClipDenseConfig] = None, device: str = "cpu",
                 text_encoder=None):
        from .text import OpenCLIPTextEncoder

        self.cfg = cfg or ClipDenseConfig()
        self.model = model.eval()
        self.visual = model.visual
        self.device = str(device)
        self.model.to(self.device)
        spec = f"openclip:{self.cfg.arch}:{self.cfg.checkpoint or ''}"
        self.text_encoder = text_encoder or OpenCLIPTextEncoder(model, tokenizer, name=spec, device=self.device)
        self.patch = tuple(int(p) for p in self.visual.patch_size)
        self.short_side = int(self.cfg.short_side or min(self.visual.image_size))

    def config(self) -> dict:
        return {"name": self.name, "arch": self.cfg.arch, "checkpoint": weights_id(self.cfg.checkpoint),
                "short_side": self.short_side, "upsample": self.cfg.upsample}

    def to(self, device):
        self.device = str(device)
        self.model.to(self.device)
        if hasattr(self.text_encoder, "device"):
            self.text_encoder.device = self.device
        return self

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        gh, gw = _grid_hw(height, width, self.short_side, max(self.patch))
        return gh * self.patch[0], gw * self.patch[1]

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        ih, iw = self.input_size(height, width)
        return ih // self.patch[0] * self.cfg.upsample, iw // self.patch[1] * self.cfg.upsample

    @torch.no_grad()
    def predict_batch(self, images: Sequence[np.ndarray], *, frame_ids=None) -> list[torch.Tensor]:
        out: list[Optional[torch.Tensor]] = [None] * len(images)
        for (H, W), idx in group_by_size([check_image(im) for im in images]).items():
            x = image_to_tensor([images[i] for i in idx], CLIP_MEAN, CLIP_STD, self.device)
            x = F.interpolate(x, size=self.input_size(H, W), mode="bilinear", align_corners=False, antialias=True)
            f = maskclip_features(self.visual, x).float()  # [b, gh, gw, C]
            f = F.normalize(f, dim=-1).permute(0, 3, 1, 2)
            if self.cfg.upsample > 1:
                f = F.interpolate(f, scale_factor=self.cfg.upsample, mode="bilinear", align_corners=False)
            f = F.normalize(f, dim=1).permute(0, 2, 3, 1).contiguous().cpu()
            for j, i in enumerate(idx):
                out[i] = f[j]
        return out  # type: ignore[return-value]


def build_clip_dense(checkpoint: str | Path | None = None, arch: str = "ViT-B-32", device: str = "cpu",
                     short_side: Optional[int] = None, upsample: int = 4, allow_random: bool = False,
                     **_) -> ClipDenseTeacher:
    """Registry builder: dense CLIP teacher from a local open_clip checkpoint (``checkpoint`` is required unless
    ``allow_random`` is set, which builds random weights for timing)."""
    from .text import load_open_clip

    if checkpoint is None and not allow_random:
        raise SASInputError(None, "clip_dense needs checkpoint=<local open_clip weights file> (e.g. ViT-B-32.pt)")
    model, tok = load_open_clip(arch, checkpoint, device=device)
    cfg = ClipDenseConfig(arch=arch, checkpoint=None if checkpoint is None else str(checkpoint),
                          short_side=short_side, upsample=upsample)
    return ClipDenseTeacher(model, tok, cfg, device=device)
