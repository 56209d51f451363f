"""Teacher that reads 2D outputs produced elsewhere (SEEM, OpenSeg, TAP...) from a folder.

Layout (``<root>`` or, when it exists, ``<root>/<scene_id>`` for the scene being processed; ``<frame_id>`` is the
frame's name, e.g. ``120``):

* dense: ``<frame_id>.npy`` or ``<frame_id>.pt`` holding float ``[H, W, C]`` features (``.pt``: a tensor, or a dict
  with ``"feat"`` and optionally ``"valid"`` bool ``[H, W]``). Features are L2-normalised on reading; all-zero or
  non-finite pixels are invalid. ``C`` must equal the text encoder's dimension.
* mask: ``<frame_id>.png`` an id map (8 or 16 bit; 0 = no mask, id k -> segment k) and ``<frame_id>.json`` =
  ``{"segments": [{"id": k, "label": "chair", "score": 0.9}, ...]}``. Masks are resized (nearest) to the image.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import SASInputError
from ..io.files import torch_load
from .base import DenseTeacher, MaskPrediction, MaskTeacher, check_image


def _frame_file(root: Path, frame_id, exts: Sequence[str]) -> Path:
    if frame_id is None:
        raise SASInputError(root, "the precomputed teacher needs the frame id of each image")
    for e in exts:
        p = root / f"{frame_id}{e}"
        if p.is_file():
            return p
    raise SASInputError(root / f"{frame_id}{exts[0]}", f"no precomputed output for frame {frame_id} "
                                                          f"(looked for {', '.join(exts)})")


def read_dense_file(p: Path) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Read one dense feature file -> (float32 [H, W, C], valid bool [H, W] or None)."""
    valid = None
    try:
        if p.suffix == ".npy":
            feat = torch.from_numpy(np.load(p, allow_pickle=False))
        else:
            obj = torch_load(p, trust_pickle=False, what="feature file")
            if isinstance(obj, dict):
                feat, valid = obj.get("feat"), obj.get("valid")
            else:
                feat = obj
    except SASInputError:
        raise
    except (ValueError, OSError, RuntimeError, EOFError) as e:
        raise SASInputError(p, f"unreadable feature file ({type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(feat, torch.Tensor) or feat.ndim != 3 or not feat.is_floating_point():
        raise SASInputError(p, "expected float features [H, W, C]")
    feat = feat.float()
    if valid is not None:
        valid = torch.as_tensor(valid).bool()
        if valid.shape != feat.shape[:2]:
            raise SASInputError(p, f"'valid' has shape {list(valid.shape)}, features {list(feat.shape[:2])}")
    return feat, valid


class PrecomputedDenseTeacher(DenseTeacher):
    """Dense features read from ``<root>[/<scene_id>]/<frame_id>.{npy,pt}`` (see the module docstring)."""

    name = "precomputed"
    display_name = "precomputed dense features"

    def __init__(self, root, text_encoder, display_name: Optional[str] = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise SASInputError(self.root, "precomputed feature folder not found")
        self.text_encoder = text_encoder
        if display_name:
            self.display_name = display_name

    def config(self) -> dict:
        return {"name": self.name, "root": str(self.root), "kind": "dense",
                "text_encoder": getattr(self.text_encoder, "name", None)}

    def for_scene(self, scene_id):
        sub = self.root / str(scene_id)
        if sub.is_dir():
            t = PrecomputedDenseTeacher(sub, self.text_encoder, self.display_name)
            t.name = self.name
            return t
        return self

    def read(self, frame_id) -> tuple[torch.Tensor, torch.Tensor]:
        """(feat float32 [h, w, C] normalised, valid bool [h, w]) of one frame."""
        p = _frame_file(self.root, frame_id, (".npy", ".pt"))
        feat, valid = read_dense_file(p)
        dim = getattr(self.text_encoder, "dim", 0)
        if dim and feat.shape[-1] != dim:
            raise SASInputError(p, f"features have {feat.shape[-1]} channels, the text encoder "
                                   f"{getattr(self.text_encoder, 'name', '?')} has {dim}")
        norm = feat.norm(dim=-1)
        ok = torch.isfinite(feat).all(-1) & (norm > 0)
        valid = ok if valid is None else (valid & ok)
        feat = torch.where(valid[..., None], feat / norm.clamp(min=1e-12)[..., None], torch.zeros(()))
        return feat, valid

    def predict_batch(self, images, *, frame_ids=None):
        ids = list(frame_ids) if frame_ids is not None else [None] * len(images)
        return [self.read(f)[0] for f in ids]

    def predict_batch_valid(self, images, *, frame_ids=None):
        ids = list(frame_ids) if frame_ids is not None else [None] * len(images)
        return [self.read(f) for f in ids]


class PrecomputedMaskTeacher(MaskTeacher):
    """Masks read from ``<root>[/<scene_id>]/<frame_id>.png`` + ``.json`` (see the module docstring)."""

    name = "precomputed"
    display_name = "precomputed masks"

    def __init__(self, root, text_encoder=None, display_name: Optional[str] = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise SASInputError(self.root, "precomputed mask folder not found")
        self.text_encoder = text_encoder
        if display_name:
            self.display_name = display_name

    def config(self) -> dict:
        return {"name": self.name, "root": str(self.root), "kind": "mask"}

    def for_scene(self, scene_id):
        sub = self.root / str(scene_id)
        if sub.is_dir():
            t = PrecomputedMaskTeacher(sub, self.text_encoder, self.display_name)
            t.name = self.name
            return t
        return self

    def read(self, frame_id, size: Optional[tuple[int, int]] = None) -> list[MaskPrediction]:
        from PIL import Image

        png = _frame_file(self.root, frame_id, (".png",))
        js = png.with_suffix(".json")
        try:
            ids = np.asarray(Image.open(png))
        except OSError as e:
            raise SASInputError(png, f"unreadable id map ({e})") from e
        if ids.ndim != 2:
            raise SASInputError(png, f"id map must be a single-channel image, got shape {list(ids.shape)}")
        if size is not None and ids.shape != tuple(size):
            ids = np.asarray(Image.fromarray(ids).resize((size[1], size[0]), Image.NEAREST))
        if not js.is_file():
            raise SASInputError(js, "labels file missing next to the id map")
        try:
            segs = json.loads(js.read_text())["segments"]
            out = []
            for s in segs:
                m = ids == int(s["id"])
                if int(s["id"]) == 0:
                    raise ValueError("segment id 0 is reserved for 'no mask'")
                if m.any():
                    out.append(MaskPrediction(m, str(s["label"]), float(s.get("score", 1.0))))
        except (ValueError, KeyError, TypeError) as e:
            raise SASInputError(js, f"bad segments file ({type(e).__name__}: {e}); expected "
                                    '{"segments": [{"id": 1, "label": "chair", "score": 0.9}, ...]}') from e
        return out

    def predict_batch(self, images, *, frame_ids=None):
        ids = list(frame_ids) if frame_ids is not None else [None] * len(images)
        return [self.read(f, check_image(im).shape[:2]) for im, f in zip(images, ids)]


def build_precomputed(root=None, kind: str = "dense", text_encoder=None, display_name: Optional[str] = None,
                      device: str = "cpu", **_):
    """Registry builder for ``precomputed``: ``root`` folder, ``kind`` dense|mask, ``text_encoder`` spec string
    (the space the dense features live in, e.g. ``openclip:ViT-L-14-336:/w/clip.pt`` for OpenSeg)."""
    from .text import TextEncoder, get_text_encoder

    if not root:
        raise SASInputError(None, "precomputed needs root=<folder of per-frame outputs>")
    enc = text_encoder if isinstance(text_encoder, TextEncoder) else get_text_encoder(text_encoder, device=device)
    if kind == "dense":
        return PrecomputedDenseTeacher(root, enc, display_name)
    if kind == "mask":
        return PrecomputedMaskTeacher(root, enc, display_name)
    raise SASInputError(None, f"precomputed kind must be 'dense' or 'mask', got {kind!r}")
