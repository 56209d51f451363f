"""SAM + CLIP mask teacher: segment-anything automatic masks, each classified by CLIP over a vocabulary.

SAM (``segment_anything``) proposes class-agnostic masks with ``SamAutomaticMaskGenerator``; each mask's bounding-box
crop (with some context, pixels outside the mask filled with CLIP's mean grey) is embedded by the CLIP image tower
and compared with the vocabulary's text embeddings (``"a {name} in a scene"``). The label is the most similar
vocabulary entry; the score is its softmax probability (logit scale 100, CLIP's) times SAM's predicted IoU.

Checkpoints are local files: SAM's released ``sam_vit_{h,l,b}_*.pth`` state dicts and an open_clip image/text model.
The SAM architecture is read off the checkpoint (embedding width, depth, heads and global-attention blocks follow
from the tensor shapes), built with segment-anything's own builders and loaded with ``torch.load(...,
map_location="cpu", weights_only=True)``; keys that do not fit are listed in the error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SASInputError
from ..labels import PROMPT_SCENE, LABEL_SETS
from ..io.files import torch_load
from .ckpt import key_report, unwrap_state_dict
from .base import CLIP_MEAN, CLIP_STD, MaskPrediction, MaskTeacher, check_image, weights_id

SAM_TYPES = {
    "vit_h": dict(encoder_embed_dim=1280, encoder_depth=32, encoder_num_heads=16,
                  encoder_global_attn_indexes=[7, 15, 23, 31]),
    "vit_l": dict(encoder_embed_dim=1024, encoder_depth=24, encoder_num_heads=16,
                  encoder_global_attn_indexes=[5, 11, 17, 23]),
    "vit_b": dict(encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12,
                  encoder_global_attn_indexes=[2, 5, 8, 11]),
}
"""The released SAM image-encoder sizes (segment-anything's registry)."""


def infer_sam_arch(sd: dict, path=None) -> dict:
    """SAM encoder hyper-parameters from a state dict's tensor shapes."""
    key = "image_encoder.patch_embed.proj.weight"
    if key not in sd:
        raise SASInputError(path, f"not a SAM checkpoint (no {key!r})")
    embed = int(sd[key].shape[0])
    blocks = sorted({int(k.split(".")[2]) for k in sd if k.startswith("image_encoder.blocks.")})
    if not blocks:
        raise SASInputError(path, "not a SAM checkpoint (no image_encoder.blocks.*)")
    grid = 1024 // 16
    glob, head_dim = [], None
    for b in blocks:
        rp = sd.get(f"image_encoder.blocks.{b}.attn.rel_pos_h")
        if rp is None:
            raise SASInputError(path, f"SAM block {b} has no relative position table")
        head_dim = int(rp.shape[1])
        if int(rp.shape[0]) == 2 * grid - 1:
            glob.append(b)
    return dict(encoder_embed_dim=embed, encoder_depth=len(blocks), encoder_num_heads=embed // head_dim,
                encoder_global_attn_indexes=glob)


def load_sam(checkpoint, sam_type: str = "auto", device: str = "cpu"):
    """Build SAM for a local checkpoint and load it (see the module docstring). ``sam_type``: auto/vit_h/vit_l/vit_b."""
    from segment_anything import sam_model_registry
    from segment_anything.build_sam import _build_sam

    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise SASInputError(path, "SAM checkpoint not found")
    sd = unwrap_state_dict(torch_load(path, what="SAM checkpoint", inert_objects=True), path)
    arch = infer_sam_arch(sd, path)
    if sam_type != "auto":
        if sam_type not in SAM_TYPES:
            raise SASInputError(None, f"unknown SAM type {sam_type!r}; known: auto, {', '.join(SAM_TYPES)}")
        if arch != SAM_TYPES[sam_type]:
            raise SASInputError(path, f"does not match SAM {sam_type}: the checkpoint holds an encoder with {arch}")
    named = [t for t, a in SAM_TYPES.items() if a == arch]
    sam = sam_model_registry[named[0]](checkpoint=None) if named else _build_sam(**arch, checkpoint=None)
    missing, unexpected = sam.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise SASInputError(path, "does not match the SAM architecture: " + key_report(missing, unexpected))
    return sam.to(device).eval()


@dataclass
class SamClipConfig:
    """Settings of the SAM + CLIP mask teacher."""

    sam_checkpoint: str = ""
    """Local SAM checkpoint (``sam_vit_h_4b8939.pth`` ...)."""
    sam_type: str = "auto"
    """``auto`` (read from the checkpoint), ``vit_h``, ``vit_l`` or ``vit_b``."""
    clip_arch: str = "ViT-L-14-336"
    """open_clip architecture of the classifier."""
    clip_checkpoint: Optional[str] = None
    """Local open_clip weights (``None`` only for tests with random weights)."""
    vocabulary: tuple[str, ...] = field(default_factory=lambda: tuple(LABEL_SETS["scannet20"].prompt_names))
    """Words the masks are classified into (ScanNet-20 prompt names by default)."""
    prompt: str = PROMPT_SCENE
    """Template of the vocabulary prompts."""
    points_per_side: int = 32
    """SAM automatic generator's point grid (SAM default 32)."""
    pred_iou_thresh: float = 0.88
    """Drop masks whose predicted IoU is below this (SAM default)."""
    stability_score_thresh: float = 0.95
    """Drop masks less stable than this (SAM default)."""
    points_per_batch: int = 64
    """Points decoded per batch."""
    min_area_frac: float = 0.0005
    """Masks smaller than this fraction of the image are dropped."""
    crop_context: float = 0.1
    """Crop = the mask's box grown by this fraction of its size on every side."""
    logit_scale: float = 100.0
    """CLIP's logit scale for the softmax over the vocabulary."""


class SamClipTeacher(MaskTeacher):
    """SAM proposals + CLIP crop classification. Build with :func:`build_sam_clip` from checkpoints."""

    name = "sam_clip"
    display_name = "mask teacher (SAM + CLIP)"

    def __init__(self, sam, clip_model, tokenizer, cfg: SamClipConfig, device: str = "cpu"):
        from segment_anything import SamAutomaticMaskGenerator

        from .text import OpenCLIPTextEncoder

        self.cfg = cfg
        self.device = str(device)
        self.sam = sam.to(self.device).eval()
        self.clip = clip_model.to(self.device).eval()
        self.vocabulary = tuple(cfg.vocabulary)
        spec = f"openclip:{cfg.clip_arch}:{cfg.clip_checkpoint or ''}"
        self.text_encoder = OpenCLIPTextEncoder(clip_model, tokenizer, name=spec, device=self.device)
        self.generator = SamAutomaticMaskGenerator(
            self.sam, points_per_side=cfg.points_per_side, points_per_batch=cfg.points_per_batch,
            pred_iou_thresh=cfg.pred_iou_thresh, stability_score_thresh=cfg.stability_score_thresh)
        size = self.clip.visual.image_size
        self.clip_size = (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) else (int(size), int(size))

    def config(self) -> dict:
        from ..config import config_dict

        return {"name": self.name, **config_dict(self.cfg), "sam_weights": weights_id(self.cfg.sam_checkpoint),
                "clip_weights": weights_id(self.cfg.clip_checkpoint)}

    def to(self, device):
        self.device = str(device)
        self.sam.to(self.device)
        self.clip.to(self.device)
        self.text_encoder.device = self.device
        return self

    def crops(self, image: np.ndarray, masks: Sequence[np.ndarray]) -> torch.Tensor:
        """Normalised CLIP inputs [M, 3, s, s] of the masks' context crops (outside-mask pixels set to CLIP grey)."""
        H, W = image.shape[:2]
        grey = np.array([round(255 * m) for m in CLIP_MEAN], dtype=np.uint8)
        out = []
        for m in masks:
            ys, xs = np.nonzero(m)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            py, px = int((y1 - y0) * self.cfg.crop_context), int((x1 - x0) * self.cfg.crop_context)
            y0, y1, x0, x1 = max(0, y0 - py), min(H, y1 + py), max(0, x0 - px), min(W, x1 + px)
            crop = np.where(m[..., None], image, grey)[y0:y1, x0:x1]
            side = max(crop.shape[:2])  # pad to square, keeping the aspect ratio
            sq = np.broadcast_to(grey, (side, side, 3)).copy()
            oy, ox = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
            sq[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
            t = torch.from_numpy(sq).permute(2, 0, 1).float().div(255.0)[None]
            out.append(F.interpolate(t, size=self.clip_size, mode="bicubic", align_corners=False, antialias=True))
        x = torch.cat(out).clamp(0, 1)
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    @torch.no_grad()
    def classify(self, image: np.ndarray, masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(vocabulary index int64 [M], probability float [M]) of each mask."""
        if not masks:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        text = self.text_encoder.encode_labels(self.vocabulary, self.cfg.prompt).to(self.device)
        emb = F.normalize(self.clip.encode_image(self.crops(image, masks)).float(), dim=-1)
        prob = (self.cfg.logit_scale * emb @ text.T).softmax(-1)
        p, k = prob.max(-1)
        return k.cpu().numpy(), p.cpu().numpy()

    @torch.no_grad()
    def predict_batch(self, images, *, frame_ids=None) -> list[list[MaskPrediction]]:
        results = []
        for im in images:
            im = check_image(im)
            props = self.generator.generate(im)
            min_area = self.cfg.min_area_frac * im.shape[0] * im.shape[1]
            props = [p for p in props if p["area"] >= max(1.0, min_area)]
            masks = [np.asarray(p["segmentation"], dtype=bool) for p in props]
            k, prob = self.classify(im, masks)
            results.append([MaskPrediction(m, self.vocabulary[int(c)], float(pr) * float(p["predicted_iou"]))
                            for m, c, pr, p in zip(masks, k, prob, props)])
        return results


def build_sam_clip(sam_checkpoint=None, clip_checkpoint=None, clip_arch: str = "ViT-L-14-336",
                   sam_type: str = "auto", vocabulary: Sequence[str] | str | None = None, device: str = "cpu",
                   allow_random_clip: bool = False, **kw) -> SamClipTeacher:
    """Registry builder for ``sam_clip`` (``vocabulary``: a label-set name or a list of words)."""
    from ..labels import get_label_set
    from .text import load_open_clip

    if not sam_checkpoint:
        raise SASInputError(None, "sam_clip needs sam_checkpoint=<local SAM .pth>")
    if clip_checkpoint is None and not allow_random_clip:
        raise SASInputError(None, "sam_clip needs clip_checkpoint=<local open_clip weights file>")
    if isinstance(vocabulary, str):
        vocabulary = get_label_set(vocabulary).prompt_names
    fields = {k: v for k, v in kw.items() if k in SamClipConfig.__dataclass_fields__}
    cfg = SamClipConfig(sam_checkpoint=str(sam_checkpoint), sam_type=sam_type, clip_arch=clip_arch,
                        clip_checkpoint=None if clip_checkpoint is None else str(clip_checkpoint), **fields)
    if vocabulary is not None:
        cfg.vocabulary = tuple(vocabulary)
    sam = load_sam(sam_checkpoint, sam_type, device=device)
    model, tok = load_open_clip(clip_arch, clip_checkpoint, device=device)
    return SamClipTeacher(sam, model, tok, cfg, device=device)
