"""SAM refinement of the coarse attention masks (paper 3.2; point rule of the authors' release).

Point prompts (x, y) are taken at maxima of the Euclidean distance transform of the coarse mask after zeroing a border
of 70 px (for 512 px images; scaled to the image size):

* one connected component: three successive maxima; after each pick, the picked pixel is set to background and the
  distance transform recomputed;
* two components: two successive maxima in the larger, one in the smaller;
* three or more: the maximum of each of the three largest.

If fewer than 10 pixels survive the border cut, four 2x2 blobs around the image centre are used as the mask (release).
Components are 8-connected. Ties pick the first pixel in row-major order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import SASInputError

REFERENCE_SIZE = 512
"""Image side the release's pixel constants refer to."""
BORDER_PX = 70
"""Border (px at 512) zeroed before sampling points: attention often lights up image corners."""
MIN_PIXELS = 10
"""Below this many mask pixels after the border cut, the centre-blob fallback is used."""


def _farthest_pixel(mask: np.ndarray) -> tuple[int, int]:
    from scipy.ndimage import distance_transform_edt

    dist = distance_transform_edt(mask)
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(r), int(c)


def _successive(mask: np.ndarray, n: int) -> list[tuple[int, int]]:
    m = mask.copy()
    pts = []
    for _ in range(n):
        r, c = _farthest_pixel(m)
        pts.append((r, c))
        m[r, c] = False
    return pts


def prompt_points(coarse: np.ndarray, border_px: int = BORDER_PX, reference_size: int = REFERENCE_SIZE) -> np.ndarray:
    """Three positive SAM point prompts for a coarse mask. Returns int64 [3, 2] as (x, y) pixel coordinates."""
    from scipy.ndimage import label

    m = np.asarray(coarse, dtype=bool).copy()
    if m.ndim != 2:
        raise SASInputError(None, f"coarse mask must be [H, W], got {list(m.shape)}")
    h, w = m.shape
    by = int(round(border_px * h / reference_size))
    bx = int(round(border_px * w / reference_size))
    if by:
        m[:by] = False
        m[h - by:] = False
    if bx:
        m[:, :bx] = False
        m[:, w - bx:] = False
    if m.sum() < MIN_PIXELS:
        m = _centre_blobs(h, w, reference_size)
    lab, n = label(m, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    order = np.argsort(-sizes, kind="stable") + 1                  # component labels, largest first
    if n == 1:
        pts = _successive(lab == order[0], 3)
    elif n == 2:
        pts = _successive(lab == order[0], 2) + _successive(lab == order[1], 1)
    else:
        pts = [_farthest_pixel(lab == order[i]) for i in range(3)]
    return np.array([[c, r] for r, c in pts], dtype=np.int64)


def _centre_blobs(h: int, w: int, reference_size: int) -> np.ndarray:
    """Four small square blobs around the centre (release: 2x2 px at +-15 px of 256 for 512 images)."""
    s = min(h, w) / reference_size
    size = max(1, int(round(2 * s)))
    near, far = int(round(16 * s)), int(round(14 * s))
    cy, cx = h // 2, w // 2
    m = np.zeros((h, w), dtype=bool)
    for dy in (-near, far):
        for dx in (-near, far):
            y0, x0 = min(max(cy + dy, 0), h - size), min(max(cx + dx, 0), w - size)
            m[y0:y0 + size, x0:x0 + size] = True
    return m


_SAM_TYPES = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


def load_sam(checkpoint: str | Path, device: str = "cpu"):
    """Build a ``segment_anything.Sam`` from a local checkpoint (type detected from the weights, loaded with
    ``weights_only=True``)."""
    from segment_anything import sam_model_registry

    from ..io.files import torch_load

    p = Path(checkpoint)
    state = torch_load(p, what="SAM checkpoint")
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    w = state.get("image_encoder.patch_embed.proj.weight") if isinstance(state, dict) else None
    if w is None or int(w.shape[0]) not in _SAM_TYPES:
        raise SASInputError(p, "not a SAM ViT-B/L/H checkpoint (image_encoder.patch_embed.proj.weight missing or unknown)")
    sam = sam_model_registry[_SAM_TYPES[int(w.shape[0])]](checkpoint=None)
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SASInputError(p, f"SAM checkpoint does not match its architecture ({e})") from e
    return sam.to(device).eval()


class SamRefiner:
    """Coarse mask -> SAM single-mask prediction from three distance-transform point prompts.

    Args:
        checkpoint: local SAM checkpoint (``sam_vit_h_4b8939.pth`` ...), or
        model: an already built ``Sam`` module.
        device: torch device string.
    """

    def __init__(self, checkpoint: Optional[str | Path] = None, model=None, device: str = "cpu"):
        from segment_anything import SamPredictor

        if model is None:
            if checkpoint is None:
                raise SASInputError(None, "SamRefiner needs a SAM checkpoint file or a model")
            model = load_sam(checkpoint, device)
        self.predictor = SamPredictor(model.to(device).eval())

    def refine(self, image: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        """bool [H, W] pseudo ground truth for ``image`` (uint8 [H, W, 3] RGB) from its coarse mask."""
        import torch

        pts = prompt_points(coarse)
        with torch.no_grad():
            self.predictor.set_image(np.ascontiguousarray(image, dtype=np.uint8), image_format="RGB")
            masks, _, _ = self.predictor.predict(point_coords=pts.astype(np.float32),
                                                 point_labels=np.ones(len(pts), dtype=np.int64),
                                                 multimask_output=False)
        return np.asarray(masks[0], dtype=bool)
