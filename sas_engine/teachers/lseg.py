"""LSeg (Li et al., ICLR 2022): a DPT decoder over a ViT-L/16 backbone producing 512-d pixel embeddings in CLIP
ViT-B/32's text space; loads the authors' released ``demo_e200.ckpt``.

Architecture (the project's own implementation; module names follow the checkpoint's key layout):

* ``pretrained.model``: timm ``vit_large_patch16_384`` (created with ``pretrained=False``); positional embeddings are
  bilinearly resized to the input's 16-px patch grid; token maps are taken after blocks ``hooks`` (5, 11, 17, 23);
* ``pretrained.act_postprocess{1..4}``: per hook, the class token is fused into every patch token
  (``[0].project``: Linear(2C -> C) + GELU on [token, class token]), the tokens are reshaped to a map, projected by a
  1x1 conv (``[3]``) to 256/512/1024/1024 channels and resampled (``[4]``): transposed conv x4, transposed conv x2,
  none, 3x3 stride-2 conv -> strides 4, 8, 16, 32;
* ``scratch.layer{1..4}_rn``: 3x3 convs (no bias) to ``features`` (256) channels; ``scratch.refinenet{4..1}``: DPT
  fusion blocks (two residual conv units with batch norm, x2 bilinear upsampling with aligned corners, 1x1
  ``out_conv``), coarse to fine; ``scratch.head1``: 1x1 conv to 512 channels, at half the input resolution;
* pixel features are L2-normalised; LSeg's final x2 upsampling (``scratch.output_conv``, no weights) is not applied:
  the teacher's native output is at half the input resolution.
* text: CLIP ViT-B/32 (``clip_pretrained.*`` in the checkpoint, OpenAI layout = open_clip ``ViT-B-32-quickgelu``).

Images are normalised with mean = std = 0.5 (LSeg's), zero-padded at the bottom/right to multiples of 32 and the
padding is cropped off the output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import SASInputError
from .base import DenseTeacher, check_image, group_by_size, image_to_tensor, weights_id
from ..io.files import torch_load
from .ckpt import key_report, unwrap_state_dict


@dataclass
class LSegConfig:
    """LSeg network hyper-parameters (defaults: the released ``demo_e200.ckpt``, backbone ``clip_vitl16_384``)."""

    backbone: str = "vit_large_patch16_384"
    """timm model name of the ViT backbone."""
    backbone_kwargs: dict = field(default_factory=dict)
    """Overrides for ``timm.create_model`` (tests build a scaled-down ViT: embed_dim, depth, num_heads, img_size)."""
    hooks: tuple[int, ...] = (5, 11, 17, 23)
    """Blocks whose outputs feed the four decoder scales."""
    reassemble: tuple[int, ...] = (256, 512, 1024, 1024)
    """Channels of the four reassembled maps."""
    features: int = 256
    """Decoder width."""
    out_dim: int = 512
    """Pixel embedding size (= CLIP text embedding size)."""
    use_bn: bool = True
    """Batch norm in the residual conv units (the released LSegNet sets it)."""
    clip_arch: str = "ViT-B-32-quickgelu"
    """open_clip architecture of the text encoder stored under ``clip_pretrained``."""


class _ProjectReadout(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, x):
        cls = x[:, :1].expand(-1, x.shape[1] - 1, -1)
        return self.project(torch.cat([x[:, 1:], cls], -1))


class _ResidualConvUnit(nn.Module):
    def __init__(self, ch: int, bn: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=not bn)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=not bn)
        self.bn1 = nn.BatchNorm2d(ch) if bn else nn.Identity()
        self.bn2 = nn.BatchNorm2d(ch) if bn else nn.Identity()

    def forward(self, x):
        y = self.bn1(self.conv1(F.relu(x)))
        y = self.bn2(self.conv2(F.relu(y)))
        return y + x


class _FusionBlock(nn.Module):
    def __init__(self, ch: int, bn: bool):
        super().__init__()
        self.out_conv = nn.Conv2d(ch, ch, 1)
        self.resConfUnit1 = _ResidualConvUnit(ch, bn)
        self.resConfUnit2 = _ResidualConvUnit(ch, bn)

    def forward(self, x, skip=None):
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class LSegNet(nn.Module):
    """LSeg image network (backbone + DPT decoder + 1x1 head); ``forward`` -> normalised features [B, C, H/2, W/2]."""

    def __init__(self, cfg: Optional[LSegConfig] = None):
        super().__init__()
        import timm

        self.cfg = cfg = cfg or LSegConfig()
        vit = timm.create_model(cfg.backbone, pretrained=False, **cfg.backbone_kwargs)
        dim = int(vit.embed_dim)
        self.patch = int(vit.patch_embed.patch_size[0])
        if len(cfg.hooks) != 4 or len(cfg.reassemble) != 4 or max(cfg.hooks) >= len(vit.blocks):
            raise SASInputError(None, f"LSeg needs 4 hooks inside the {len(vit.blocks)} backbone blocks: {cfg.hooks}")
        self.pretrained = nn.Module()
        self.pretrained.model = vit
        r = cfg.reassemble
        resample = [nn.ConvTranspose2d(r[0], r[0], 4, stride=4), nn.ConvTranspose2d(r[1], r[1], 2, stride=2), None,
                    nn.Conv2d(r[3], r[3], 3, stride=2, padding=1)]
        for i in range(4):
            mods = [_ProjectReadout(dim), nn.Identity(), nn.Identity(), nn.Conv2d(dim, r[i], 1)]
            if resample[i] is not None:
                mods.append(resample[i])
            setattr(self.pretrained, f"act_postprocess{i + 1}", nn.Sequential(*mods))
        self.scratch = nn.Module()
        for i in range(4):
            setattr(self.scratch, f"layer{i + 1}_rn", nn.Conv2d(r[i], cfg.features, 3, padding=1, bias=False))
            setattr(self.scratch, f"refinenet{i + 1}", _FusionBlock(cfg.features, cfg.use_bn))
        self.scratch.head1 = nn.Conv2d(cfg.features, cfg.out_dim, 1)

    def _pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        pos = self.pretrained.model.pos_embed
        cls, grid = pos[:, :1], pos[0, 1:]
        g = int(round(grid.shape[0] ** 0.5))
        grid = grid.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bilinear", align_corners=False)
        return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        if H % (2 * self.patch) or W % (2 * self.patch):
            raise ValueError(f"LSegNet input {H}x{W} must be a multiple of {2 * self.patch}")
        vit = self.pretrained.model
        gh, gw = H // self.patch, W // self.patch
        t = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([vit.cls_token.expand(B, -1, -1), t], 1) + self._pos_embed(gh, gw)
        t = vit.pos_drop(t)
        acts = []
        for i, blk in enumerate(vit.blocks[:max(self.cfg.hooks) + 1]):
            t = blk(t)
            if i in self.cfg.hooks:
                acts.append(t)
        layers = []
        for i, a in enumerate(acts):
            post = getattr(self.pretrained, f"act_postprocess{i + 1}")
            y = post[0](a).transpose(1, 2).reshape(B, -1, gh, gw)
            for m in list(post)[3:]:
                y = m(y)
            layers.append(getattr(self.scratch, f"layer{i + 1}_rn")(y))
        s = self.scratch
        path = s.refinenet4(layers[3])
        path = s.refinenet3(path, layers[2])
        path = s.refinenet2(path, layers[1])
        path = s.refinenet1(path, layers[0])
        return F.normalize(s.head1(path), dim=1)


def load_lseg(checkpoint, cfg: Optional[LSegConfig] = None, clip_checkpoint=None, device: str = "cpu"):
    """Build :class:`LSegNet` and its CLIP text model from an LSeg checkpoint.

    Accepts the released PyTorch Lightning checkpoint (``ckpt["state_dict"]`` with keys prefixed ``net.``) or a
    plain state dict. ``net.clip_pretrained.*`` keys fill the CLIP model (``cfg.clip_arch``); a checkpoint without them
    needs ``clip_checkpoint`` (open_clip weights of that architecture). Any key that does not fit raises
    :class:`SASInputError` listing the missing / unexpected keys. Returns ``(net, clip_model, tokenizer)``.
    """
    import open_clip

    cfg = cfg or LSegConfig()
    path = Path(checkpoint).expanduser()
    sd = unwrap_state_dict(torch_load(path, what="checkpoint", inert_objects=True), path)
    sd = {k[len("net."):] if k.startswith("net.") else k: v for k, v in sd.items()}
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    clip_sd = {k[len("clip_pretrained."):]: v.float() for k, v in sd.items() if k.startswith("clip_pretrained.")}
    net_sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()
              if not k.startswith("clip_pretrained.")}
    net = LSegNet(cfg)
    # timm may carry a classifier head and buffers the checkpoint does not use; they are not part of LSeg
    optional = {k for k in net.state_dict() if k.startswith("pretrained.model.head.")
                or k.startswith("pretrained.model.fc_norm.")}
    missing, unexpected = net.load_state_dict(net_sd, strict=False)
    missing = [k for k in missing if k not in optional]
    unexpected = [k for k in unexpected if not k.startswith("pretrained.model.head.")]
    if missing or unexpected:
        raise SASInputError(path, f"does not match the LSeg architecture ({cfg.backbone}, hooks {list(cfg.hooks)}): "
                                  + key_report(missing, unexpected))
    if clip_sd:
        for k in ("input_resolution", "context_length", "vocab_size"):
            clip_sd.pop(k, None)
        clip = open_clip.create_model(cfg.clip_arch, pretrained=None)
        cm, cu = clip.load_state_dict(clip_sd, strict=False)
        cm = [k for k in cm if k != "attn_mask"]
        if cm or cu:
            raise SASInputError(path, f"clip_pretrained does not match open_clip {cfg.clip_arch}: "
                                      + key_report(cm, cu))
        tok = open_clip.get_tokenizer(cfg.clip_arch)
    elif clip_checkpoint is not None:
        from .text import load_open_clip

        clip, tok = load_open_clip(cfg.clip_arch, clip_checkpoint, device=device)
    else:
        raise SASInputError(path, "holds no clip_pretrained.* text encoder; pass clip_checkpoint=<open_clip "
                                  f"{cfg.clip_arch} weights>")
    if int(clip.text_projection.shape[-1]) != cfg.out_dim:
        raise SASInputError(path, f"CLIP text size {clip.text_projection.shape[-1]} != LSeg out_dim {cfg.out_dim}")
    return net.to(device).eval(), clip.to(device).eval(), tok


class LSegTeacher(DenseTeacher):
    """LSeg dense teacher: 512-d normalised pixel features at half the input resolution.

    Args:
        net / clip_model / tokenizer: see :func:`load_lseg`.
        checkpoint: the file the weights came from (recorded in artefact headers).
        short_side: resize images so the short side has this many pixels before the network (``None``: as given).
    """

    name = "lseg"
    display_name = "dense teacher (LSeg)"
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(self, net: LSegNet, clip_model, tokenizer, checkpoint: str = "", short_side: Optional[int] = None,
                 device: str = "cpu"):
        from .text import OpenCLIPTextEncoder

        self.net, self.clip = net.eval(), clip_model.eval()
        self.checkpoint, self.short_side, self.device = str(checkpoint), short_side, str(device)
        self.text_encoder = OpenCLIPTextEncoder(clip_model, tokenizer, name=f"lseg-clip:{self.checkpoint}",
                                                device=self.device)
        self.to(self.device)

    def config(self) -> dict:
        return {"name": self.name, "checkpoint": weights_id(self.checkpoint), "short_side": self.short_side,
                "net": {"backbone": self.net.cfg.backbone, "hooks": list(self.net.cfg.hooks),
                        "out_dim": self.net.cfg.out_dim}}

    def to(self, device):
        self.device = str(device)
        self.net.to(self.device)
        self.clip.to(self.device)
        self.text_encoder.device = self.device
        return self

    def _input_hw(self, H: int, W: int) -> tuple[int, int]:
        if not self.short_side:
            return H, W
        s = self.short_side / min(H, W)
        return max(1, int(round(H * s))), max(1, int(round(W * s)))

    def output_size(self, height, width):
        h, w = self._input_hw(height, width)
        return (h + 1) // 2, (w + 1) // 2

    @torch.no_grad()
    def predict_batch(self, images: Sequence[np.ndarray], *, frame_ids=None) -> list[torch.Tensor]:
        out: list = [None] * len(images)
        m = 2 * self.net.patch
        for (H, W), idx in group_by_size([check_image(im) for im in images]).items():
            x = image_to_tensor([images[i] for i in idx], self.mean, self.std, self.device)
            h, w = self._input_hw(H, W)
            if (h, w) != (H, W):
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=True)
            ph, pw = (-h) % m, (-w) % m
            x = F.pad(x, (0, pw, 0, ph))
            f = self.net(x)[:, :, :(h + 1) // 2, :(w + 1) // 2]
            f = f.permute(0, 2, 3, 1).float().contiguous().cpu()
            for j, i in enumerate(idx):
                out[i] = f[j]
        return out


def build_lseg(checkpoint=None, clip_checkpoint=None, device: str = "cpu", short_side: Optional[int] = None,
               cfg: Optional[LSegConfig] = None, **_) -> LSegTeacher:
    """Registry builder for ``lseg``: ``checkpoint`` = the released ``demo_e200.ckpt`` (local path)."""
    if not checkpoint:
        raise SASInputError(None, "lseg needs checkpoint=<local demo_e200.ckpt>")
    net, clip, tok = load_lseg(checkpoint, cfg, clip_checkpoint=clip_checkpoint, device=device)
    return LSegTeacher(net, clip, tok, checkpoint=str(checkpoint), short_side=short_side, device=device)
