"""Cross-attention capture during Stable Diffusion sampling and the paper's Eq. 2 aggregation.

diffusers' default attention processors (scaled-dot-product kernels) never materialise the attention probabilities, so
:class:`CaptureAttnProcessor` computes them explicitly with the same maths as diffusers' classic ``AttnProcessor``
(``probs = softmax(q k^T * scale)``, ``out = probs v``, then ``to_out``) through the ``Attention`` module's own helpers,
and hands the probabilities of the conditional half of the classifier-free-guidance batch to an
:class:`AttentionCapture`, which keeps running sums per UNet resolution.

Resolutions are named as in the paper for a 512x512 image (latent side 64): a cross-attention layer whose token grid is
``1/d`` of the latent side is at resolution ``reference_latent / d`` (64, 32, 16, 8). Naming relative to the latent makes
the selection scale-aware: a tiny test UNet at 64x64 pixels has its layers at "64" and "32" as well.
"""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import SASInputError

log = logging.getLogger(__name__)


class AttentionCapture:
    """Running Eq. 2 accumulators for one batch of images sharing one prompt.

    Args:
        token_indices: positions of the class-name tokens in the tokenised prompt (BOS included at index 0).
        latent_hw: (height, width) of the latent the UNet denoises.
        num_cond: number of conditional samples (the last ``num_cond`` entries of the UNet batch; with
            classifier-free guidance diffusers puts the unconditional half first).
        resolutions: paper resolutions to record (default 16, 32, 64; the 8x8 mid block is left out).
        reference_latent: latent side that the resolution names refer to (64 = SD at 512x512).
        keep_raw: also keep every recorded conditional probability tensor ``[b, heads, hw, tokens]`` (tests only).
    """

    def __init__(self, token_indices: Sequence[int], latent_hw: tuple[int, int], num_cond: int,
                 resolutions: Sequence[int] = (16, 32, 64), reference_latent: int = 64, keep_raw: bool = False):
        if not token_indices:
            raise ValueError("token_indices is empty")
        self.token_indices = list(int(t) for t in token_indices)
        self.latent_hw = (int(latent_hw[0]), int(latent_hw[1]))
        self.num_cond = int(num_cond)
        self.resolutions = tuple(int(r) for r in resolutions)
        self.reference_latent = int(reference_latent)
        self.keep_raw = keep_raw
        self.sums: dict[int, torch.Tensor] = {}
        self.counts: dict[int, int] = {}
        self.raw: list[tuple[str, int, torch.Tensor]] = []
        self.skipped: set[str] = set()

    def layer_grid(self, seq_len: int) -> Optional[tuple[int, int, int]]:
        """(resolution name, grid height, grid width) of a layer with ``seq_len`` spatial tokens, or ``None`` when
        the token count does not match a power-of-two downsampling of the latent."""
        h, w = self.latent_hw
        ratio = h * w / max(seq_len, 1)
        d = int(round(math.sqrt(ratio)))
        if d < 1 or d & (d - 1):
            return None
        gh, gw = -(-h // d), -(-w // d)
        if gh * gw != seq_len:
            return None
        return self.reference_latent // d, gh, gw

    def record(self, layer: str, probs: torch.Tensor, heads: int) -> None:
        """Add one layer call. ``probs``: [batch * heads, hw, tokens] attention probabilities."""
        grid = self.layer_grid(probs.shape[1])
        if grid is None:
            self.skipped.add(layer)
            return
        res, gh, gw = grid
        if res not in self.resolutions:
            return
        b_all = probs.shape[0] // heads
        p = probs.reshape(b_all, heads, probs.shape[1], probs.shape[2])[b_all - self.num_cond:]
        if self.keep_raw:
            self.raw.append((layer, res, p.detach().float().cpu().clone()))
        sel = p[..., self.token_indices].float()                              # [b, heads, hw, nt]
        sel = sel / sel.amax(dim=2, keepdim=True).clamp_min(1e-12)          # each map normalised by its max
        sel = sel.mean(dim=1).reshape(self.num_cond, gh, gw, len(self.token_indices))  # mean over heads
        if res in self.sums:
            self.sums[res] += sel
            self.counts[res] += 1
        else:
            self.sums[res] = sel.clone()
            self.counts[res] = 1

    def aggregate(self, image_hw: tuple[int, int]) -> torch.Tensor:
        """Eq. 2: mean over layers and steps per resolution, mean over the name's tokens, bilinear resize to the
        image, mean over resolutions. Returns float32 [b, H, W] (not yet min-max normalised)."""
        if not self.sums:
            raise SASInputError(None, "no cross-attention layer at the configured resolutions "
                                      f"{self.resolutions} was called during sampling (skipped: {sorted(self.skipped)})")
        maps = []
        for res in sorted(self.sums):
            m = (self.sums[res] / self.counts[res]).mean(dim=-1)            # [b, gh, gw]
            maps.append(F.interpolate(m[:, None], size=tuple(image_hw), mode="bilinear", align_corners=False)[:, 0])
        return torch.stack(maps).mean(dim=0)


def minmax_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map of a [b, H, W] stack to [0, 1] (a constant map becomes all zeros)."""
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).reshape(maps.shape)


class CaptureAttnProcessor:
    """Attention processor that materialises the attention probabilities and reports cross-attention to a capture.

    The computation is diffusers' classic ``AttnProcessor`` path (``Attention.get_attention_scores`` then a batched
    matmul with the values), so it honours ``upcast_attention`` / ``upcast_softmax`` and attention masks.
    ``capture`` may be ``None`` (then nothing is recorded: plain classic attention).
    """

    def __init__(self, name: str, capture: Optional[AttentionCapture] = None):
        self.name = name
        self.capture = capture

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        is_cross = encoder_hidden_states is not None
        batch, seq = (hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape)[:2]
        attention_mask = attn.prepare_attention_mask(attention_mask, seq, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)
        probs = attn.get_attention_scores(query, key, attention_mask)       # softmax(q k^T * scale)
        if is_cross and self.capture is not None:
            self.capture.record(self.name, probs, attn.heads)
        out = torch.bmm(probs, value)
        out = attn.batch_to_head_dim(out)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def cross_attention_names(unet) -> list[str]:
    """Names of the UNet's cross-attention processors (``...attn2.processor``)."""
    return [n for n in unet.attn_processors if n.endswith("attn2.processor")]


@contextmanager
def capturing(unet, capture: Optional[AttentionCapture]):
    """Install :class:`CaptureAttnProcessor` on every cross-attention layer for the duration of the block, then
    restore the previous processors (self-attention layers are never touched)."""
    previous = dict(unet.attn_processors)
    names = set(cross_attention_names(unet))
    if not names:
        raise SASInputError(None, "the UNet has no cross-attention layers (attn2) to capture")
    unet.set_attn_processor({n: (CaptureAttnProcessor(n, capture) if n in names else p) for n, p in previous.items()})
    try:
        yield capture
    finally:
        unet.set_attn_processor(dict(previous))  # diffusers pops entries from the dict it is given


def class_token_indices(tokenizer, prompt: str, class_name: str) -> list[int]:
    """Positions of ``class_name``'s tokens inside the tokenised ``prompt`` (BOS at index 0).

    Both strings are tokenised with the pipeline's tokenizer; the first occurrence of the name's token sequence is
    returned. Raises :class:`SASInputError` when the name's tokens do not occur (or fall beyond the 77-token window).
    """
    max_len = int(min(getattr(tokenizer, "model_max_length", 77) or 77, 77))
    ids = list(tokenizer(prompt, truncation=True, max_length=max_len).input_ids)
    name_ids = list(tokenizer(class_name, add_special_tokens=False).input_ids)
    n = len(name_ids)
    if n:
        for s in range(len(ids) - n + 1):
            if ids[s:s + n] == name_ids:
                return list(range(s, s + n))
    raise SASInputError(None, f"class name {class_name!r} is not a token subsequence of prompt {prompt!r}")
