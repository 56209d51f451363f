"""Stable Diffusion synthesizer: images + cross-attention coarse masks (+ SAM refinement) per class (paper 3.2).

For each class, ``m`` images are sampled with the capability prompt and seed ``seed + i`` for image ``i``; the
cross-attention probabilities of the class-name tokens are captured on the conditional branch at the configured UNet
resolutions, aggregated with Eq. 2 (:mod:`sas_engine.capability.attention`), min-max normalised and thresholded into
a coarse mask, which SAM refines into the pseudo ground truth (:mod:`sas_engine.capability.sam`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import SASInputError
from ..labels import PROMPT_TEMPLATES
from .synthesizer import SynthImage

log = logging.getLogger(__name__)

#: Files a local diffusers Stable Diffusion folder must hold (any one of the alternatives per entry).
_REQUIRED = {
    "model_index.json": ("model_index.json",),
    "unet config": ("unet/config.json",),
    "unet weights": ("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin",
                     "unet/diffusion_pytorch_model.fp16.safetensors"),
    "vae config": ("vae/config.json",),
    "vae weights": ("vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin",
                    "vae/diffusion_pytorch_model.fp16.safetensors"),
    "text encoder config": ("text_encoder/config.json",),
    "text encoder weights": ("text_encoder/model.safetensors", "text_encoder/pytorch_model.bin",
                             "text_encoder/model.fp16.safetensors"),
    "tokenizer": ("tokenizer/vocab.json", "tokenizer/tokenizer.json"),
    "scheduler config": ("scheduler/scheduler_config.json",),
}


@dataclass
class SDConfig:
    """Stable Diffusion synthesis settings (defaults: the authors' release)."""

    model_dir: str = ""
    """Local diffusers Stable Diffusion folder (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``...)."""
    prompt: str = "capability"
    """Prompt template: a key of ``labels.PROMPT_TEMPLATES`` (``capability`` = release "a good photo of a {} in a
    room", ``capability_paper`` = paper "a good photo of {}") or a literal template containing ``{}``."""
    steps: int = 50
    """Denoising steps (release 50)."""
    guidance: float = 7.0
    """Classifier-free guidance scale (release 7)."""
    image_size: int = 512
    """Square image side in pixels (SD 1.x: 512)."""
    resolutions: tuple[int, ...] = (16, 32, 64)
    """Cross-attention resolutions recorded, named for a 64x64 latent (scaled for other latent sizes)."""
    reference_latent: int = 64
    """Latent side the resolution names refer to."""
    threshold: float = 0.7
    """Coarse mask = min-max normalised attention map > threshold."""
    batch_size: int = 1
    """Images of one class sampled together (each with its own seeded generator)."""
    dtype: str = "float32"
    """Model dtype: ``float32`` or ``float16`` (CUDA only)."""

    def template(self) -> str:
        t = PROMPT_TEMPLATES.get(self.prompt, self.prompt)
        if "{}" not in t:
            raise SASInputError(None, f"prompt template {t!r} has no '{{}}' placeholder for the class name")
        return t


def check_sd_folder(path: str | Path) -> Path:
    """Raise :class:`SASInputError` naming ``path`` when it is not a complete local diffusers SD folder."""
    p = Path(path) if path else None
    if p is None or not str(path):
        raise SASInputError(None, "no Stable Diffusion model folder given (--sd-model DIR)")
    if not p.is_dir():
        raise SASInputError(p, "Stable Diffusion model folder does not exist")
    missing = [what for what, alts in _REQUIRED.items() if not any((p / a).is_file() for a in alts)]
    if missing:
        raise SASInputError(p, "incomplete diffusers Stable Diffusion folder, missing: " + ", ".join(missing))
    return p


def load_sd_pipeline(path: str | Path, device: str = "cpu", dtype: str = "float32"):
    """Load a ``StableDiffusionPipeline`` from a local folder only (no hub access, no safety checker)."""
    import torch
    from diffusers import StableDiffusionPipeline

    p = check_sd_folder(path)
    td = {"float32": torch.float32, "float16": torch.float16}.get(dtype)
    if td is None:
        raise SASInputError(None, f"unknown dtype {dtype!r} (float32 or float16)")
    try:
        pipe = StableDiffusionPipeline.from_pretrained(str(p), local_files_only=True, safety_checker=None,
                                                       requires_safety_checker=False, dtype=td)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise SASInputError(p, f"cannot load the Stable Diffusion pipeline ({type(e).__name__}: {e})") from e
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class StableDiffusionSynthesizer:
    """Stable Diffusion images with cross-attention coarse masks, optionally refined by SAM.

    Args:
        cfg: synthesis settings.
        pipeline: an already built ``StableDiffusionPipeline`` (else loaded from ``cfg.model_dir``).
        refiner: a :class:`~sas_engine.capability.sam.SamRefiner`; ``None`` keeps the coarse mask as pseudo ground
            truth (recorded in the provenance).
        device: torch device string.
    """

    name = "sd"

    def __init__(self, cfg: SDConfig, pipeline=None, refiner=None, device: str = "cpu"):
        self.cfg = cfg
        self.device = device
        self.pipe = pipeline if pipeline is not None else load_sd_pipeline(cfg.model_dir, device, cfg.dtype)
        self.refiner = refiner

    # -- one batch ---------------------------------------------------------------------------------------------
    def sample(self, prompt: str, class_name: str, seeds: Sequence[int], capture: bool = True, keep_raw: bool = False):
        """Sample ``len(seeds)`` images of one prompt. Returns ``(images uint8 [b,H,W,3], attention float32 [b,H,W]
        min-max normalised or None, capture object or None)``."""
        import torch

        from .attention import AttentionCapture, capturing, class_token_indices, minmax_normalise

        size = int(self.cfg.image_size)
        gens = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
        kw = dict(prompt=[prompt] * len(seeds), num_inference_steps=int(self.cfg.steps),
                  guidance_scale=float(self.cfg.guidance), height=size, width=size, generator=gens, output_type="np")
        if not capture:
            with torch.no_grad():
                images = self.pipe(**kw).images
            return _to_uint8(images), None, None
        tokens = class_token_indices(self.pipe.tokenizer, prompt, class_name)
        f = int(self.pipe.vae_scale_factor)
        cap = AttentionCapture(tokens, (size // f, size // f), num_cond=len(seeds), resolutions=self.cfg.resolutions,
                               reference_latent=self.cfg.reference_latent, keep_raw=keep_raw)
        with torch.no_grad(), capturing(self.pipe.unet, cap):
            images = self.pipe(**kw).images
        att = minmax_normalise(cap.aggregate((size, size))).cpu().numpy().astype(np.float32)
        return _to_uint8(images), att, cap

    # -- the Synthesizer interface -----------------------------------------------------------------------------
    def synthesize(self, class_names: Sequence[str], m: int, seed: int = 0) -> list[SynthImage]:
        from tqdm import tqdm

        template = self.cfg.template()
        bs = max(1, int(self.cfg.batch_size))
        out: list[SynthImage] = []
        bar = tqdm(total=len(class_names) * m, desc="stable diffusion", unit="img")
        for k, name in enumerate(class_names):
            prompt = template.format(name)
            for start in range(0, m, bs):
                seeds = [seed + i for i in range(start, min(m, start + bs))]
                images, att, _ = self.sample(prompt, name, seeds)
                for j, s in enumerate(seeds):
                    coarse = att[j] > self.cfg.threshold
                    mask = self.refiner.refine(images[j], coarse) if self.refiner is not None else coarse
                    prov = {"synthesizer": self.name, "class": name, "seed": int(s), "prompt": prompt,
                            "steps": int(self.cfg.steps), "guidance": float(self.cfg.guidance),
                            "model": str(self.cfg.model_dir), "threshold": float(self.cfg.threshold),
                            "refined": "sam" if self.refiner is not None else "none"}
                    out.append(SynthImage(images[j], mask, k, prov, extras={"coarse_mask": coarse, "attention": att[j]}))
                bar.update(len(seeds))
        bar.close()
        return out


def _to_uint8(images) -> np.ndarray:
    a = np.asarray(images)
    return np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)


def build_sd_synthesizer(model_dir: str = "", sam_checkpoint: Optional[str] = None, device: str = "cpu",
                         **cfg_kw) -> StableDiffusionSynthesizer:
    """Build the SD synthesizer from a local model folder and an optional local SAM checkpoint."""
    from .sam import SamRefiner

    cfg = SDConfig(model_dir=str(model_dir), **cfg_kw)
    check_sd_folder(cfg.model_dir)
    refiner = SamRefiner(checkpoint=sam_checkpoint, device=device) if sam_checkpoint else None
    return StableDiffusionSynthesizer(cfg, refiner=refiner, device=device)
