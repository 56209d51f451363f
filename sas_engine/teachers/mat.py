"""Model Alignment via Text (SAS paper 3.1): turn a mask teacher's labelled masks into per-pixel features.

For each mask a captioner describes the masked region; only the caption's adjectives are kept and the caption's noun
is replaced by the teacher's label, giving ``"a {adj1 and adj2} {label} in a scene"`` (``"a {label} in a scene"`` when
no adjective survives). The shared text encoder embeds that sentence and the embedding is painted onto the mask's
pixels; where masks overlap the higher-scoring mask wins. Pixels covered by no mask are *invalid* (valid = False),
never zero-filled features.

Captioners are pluggable (:class:`Captioner`):

* :class:`MaskCueCaptioner` (default, CPU, no weights): adjectives read off the mask itself - the colour name nearest
  (in CIE Lab) to the masked pixels' mean colour, ``small`` / ``large`` from the mask's area fraction and shape cues
  (``tall`` / ``wide`` from the bounding-box aspect, ``round`` from how much of the box an ellipse-like mask fills);
* :class:`HFCaptioner`: a Hugging Face image-to-text model (BLIP-style) from a local folder; adjectives are extracted
  from its caption by :func:`extract_adjectives`.

The release tags the caption with a POS tagger (keeps JJ). No tagger data can be downloaded here, so
:func:`extract_adjectives` uses a compact rule instead: a word is an adjective when it is in the built-in
:data:`ADJECTIVES` list (colours, sizes, shapes, materials, states, ...) or, when it stands before the caption's first
head noun, ends in a typical adjective suffix (-ous, -ful, -ive, -able, -ible, -less, -ish, -ic, -en, -ed) after a
stem of at least 3 letters and is not a stop word (which also lists common nouns with those endings: table, kitchen...).
Known limitation: rare adjectives without those suffixes that are not in the list are dropped.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import SASInputError
from .base import MaskPrediction, check_image

# --- colour names --------------------------------------------------------------------------------------------
#: Small named-colour table (sRGB 0..255) used by the default captioner.
COLOR_NAMES: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20), "gray": (128, 128, 128), "white": (240, 240, 240), "red": (200, 30, 30),
    "orange": (240, 140, 20), "yellow": (235, 220, 40), "green": (40, 160, 60), "blue": (40, 80, 200),
    "purple": (120, 50, 160), "pink": (240, 150, 190), "brown": (120, 75, 35), "beige": (215, 195, 155),
}

ADJECTIVES = frozenset("""
black white gray grey red orange yellow green blue purple pink brown beige dark light pale bright colorful colourful
small large big tiny huge little tall short long wide narrow thin thick round square rectangular flat curved
wooden metal metallic plastic glass leather fabric soft hard shiny glossy matte striped plain patterned empty full
open closed old new modern vintage clean dirty white-washed tidy messy cozy wet dry high low broken
double single upper lower left right front back empty stacked folded
""".split())
"""Built-in adjective list used by :func:`extract_adjectives` (lower case)."""

_STOP = frozenset("""a an the this that these those some two three several many of in on at with and or to from by for
near next behind under over above below inside outside into onto is are was were be being been it its there
room scene image picture photo view
table cable kitchen garden screen children women chicken music""".split())
_SUFFIXES = ("ous", "ful", "ive", "able", "ible", "less", "ish", "ic", "en", "ed")
_NOUN_BREAK = frozenset("in on at with near next behind under over above below inside outside into onto by of "
                        "is are was were and".split())


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """float sRGB in 0..255, [..., 3] -> CIE Lab (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


_COLOR_LAB = _srgb_to_lab(np.array(list(COLOR_NAMES.values()), dtype=np.float64))
_COLOR_KEYS = list(COLOR_NAMES)


def color_name(rgb) -> str:
    """Name of the table colour nearest (CIE Lab distance) to an RGB triple (0..255)."""
    lab = _srgb_to_lab(np.asarray(rgb, dtype=np.float64).reshape(3))
    return _COLOR_KEYS[int(np.argmin(((_COLOR_LAB - lab) ** 2).sum(1)))]


def extract_adjectives(caption: str, max_adjectives: int = 3) -> list[str]:
    """Adjectives of a caption by the built-in rule (see the module docstring), in order, without repeats."""
    words = re.findall(r"[a-z][a-z\-]*", caption.lower())
    # modifiers before the first head noun: the words after a leading determiner up to a preposition/verb
    pre: set[int] = set()
    for i, w in enumerate(words):
        if w in _NOUN_BREAK:
            break
        pre.add(i)
    last_pre = max(pre) if pre else -1  # the head noun itself is the last word of that span
    out: list[str] = []
    for i, w in enumerate(words):
        if w in _STOP or w in out:
            continue
        suffix = next((x for x in _SUFFIXES if w.endswith(x)), "")
        ok = w in ADJECTIVES or (i in pre and i != last_pre and suffix and len(w) - len(suffix) >= 3)
        if ok:
            out.append(w)
        if len(out) >= max_adjectives:
            break
    return out


def mat_sentence(adjectives: Sequence[str], label: str) -> str:
    """``"a {adj1 and adj2} {label} in a scene"`` (``"a {label} in a scene"`` without adjectives)."""
    adj = " and ".join(a for a in adjectives if a)
    return f"a {adj} {label} in a scene" if adj else f"a {label} in a scene"


def mask_cue_sentences(labels: Sequence[str], captioner: Optional["MaskCueCaptioner"] = None) -> list[str]:
    """Every MAT sentence :class:`MaskCueCaptioner` can give a mask labelled with one of ``labels``: (no size, small,
    large) x its colour names x (no shape, tall, wide, round) x label, 2,880 for 20 labels, in a fixed order. A
    shipped text-embedding table (:mod:`.text`) holds them for the compact mask teacher, so a cold demo build needs
    no text model."""
    c = captioner or MaskCueCaptioner()
    sizes = [[]] + ([["small"], ["large"]] if c.use_size else [])
    colors = [[k] for k in _COLOR_KEYS] if c.use_color else [[]]
    shapes = [[]] + ([["tall"], ["wide"], ["round"]] if c.use_shape else [])
    return [mat_sentence(a + b + d, lab) for lab in labels for a in sizes for b in colors for d in shapes]


# --- captioners ----------------------------------------------------------------------------------------------
class Captioner:
    """Describes masked regions; :meth:`adjectives` returns the adjectives kept for the MAT sentence."""

    name: str = "captioner"

    def adjectives(self, image: np.ndarray, mask: np.ndarray) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def adjectives_batch(self, image: np.ndarray, masks: Sequence[np.ndarray]) -> list[list[str]]:
        return [self.adjectives(image, m) for m in masks]

    def config(self) -> dict:
        return {"name": self.name}


class MaskCueCaptioner(Captioner):
    """CPU default: adjectives from the mask itself (colour name, size, shape cue).

    Args:
        small_frac / large_frac: area fractions of the image below / above which a mask is "small" / "large".
        elongation: bounding-box aspect ratio beyond which a mask is "tall" or "wide".
        round_fill: (lo, hi) fill ratio of the bounding box for which a roughly square mask is "round"
            (an ellipse fills pi/4 = 0.785 of its box; a rectangle fills 1).
    """

    name = "mask_cues"

    def __init__(self, small_frac: float = 0.02, large_frac: float = 0.25, elongation: float = 2.0,
                 round_fill: tuple[float, float] = (0.70, 0.86), use_color: bool = True, use_size: bool = True,
                 use_shape: bool = True):
        self.small_frac, self.large_frac, self.elongation = small_frac, large_frac, elongation
        self.round_fill = tuple(round_fill)
        self.use_color, self.use_size, self.use_shape = use_color, use_size, use_shape

    def config(self) -> dict:
        return {"name": self.name, "small_frac": self.small_frac, "large_frac": self.large_frac,
                "elongation": self.elongation, "round_fill": list(self.round_fill), "color": self.use_color,
                "size": self.use_size, "shape": self.use_shape}

    def adjectives(self, image: np.ndarray, mask: np.ndarray) -> list[str]:
        return self.adjectives_batch(image, [mask])[0]

    def adjectives_batch(self, image: np.ndarray, masks: Sequence[np.ndarray]) -> list[list[str]]:
        """The adjectives of every mask, from all masks' pixel counts, colour sums and bounding boxes at once (one
        matrix product for the colours: integer sums, exact in any order, so each mean colour is what averaging the
        mask's pixels gives)."""
        if len(masks) == 0:
            return []
        img = np.asarray(image)
        H, W = img.shape[:2]
        M = np.stack([np.asarray(m, dtype=bool).reshape(H * W) for m in masks])  # [K, H*W]
        n = M.sum(1)
        sums = M.astype(np.float64) @ img.reshape(H * W, 3).astype(np.float64) if self.use_color else None
        grid = M.reshape(-1, H, W)
        rows, cols = grid.any(2), grid.any(1)
        hs = H - rows[:, ::-1].argmax(1) - rows.argmax(1)  # bounding-box height and width (last - first + 1)
        ws = W - cols[:, ::-1].argmax(1) - cols.argmax(1)
        out: list[list[str]] = []
        for k in range(len(masks)):
            out.append(self._words(int(n[k]), H * W, None if sums is None else sums[k] / n[k], int(hs[k]),
                                   int(ws[k])) if n[k] else [])
        return out

    def _words(self, n: int, size: int, rgb: Optional[np.ndarray], h: int, w: int) -> list[str]:
        """Size, colour and shape words of a mask of ``n`` pixels in an image of ``size``, mean colour ``rgb``,
        bounding box ``h`` x ``w``."""
        out: list[str] = []
        if self.use_size:
            frac = n / size
            if frac < self.small_frac:
                out.append("small")
            elif frac > self.large_frac:
                out.append("large")
        if self.use_color:
            out.append(color_name(rgb))
        if self.use_shape:
            if h >= self.elongation * w:
                out.append("tall")
            elif w >= self.elongation * h:
                out.append("wide")
            elif self.round_fill[0] <= n / (h * w) <= self.round_fill[1] and min(h, w) >= 4:
                out.append("round")
        return out


class HFCaptioner(Captioner):
    """A Hugging Face image-to-text model (BLIP-style) loaded from a local folder.

    Each mask is captioned on its bounding-box crop (padded by ``context`` of the box size, pixels outside the mask
    greyed out by ``dim_background``); adjectives come from :func:`extract_adjectives`.

    Args:
        path: folder with ``config.json``, weights and processor files (``save_pretrained`` output).
        device: where the model runs.
        max_new_tokens: caption length limit.
    """

    name = "hf"

    def __init__(self, path, device: str = "cpu", max_new_tokens: int = 20, context: float = 0.1,
                 dim_background: float = 0.5):
        import os
        from pathlib import Path

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        p = Path(path).expanduser()
        if not (p / "config.json").is_file():
            raise SASInputError(p, "captioner folder has no config.json (expected a save_pretrained folder)")
        try:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self.processor = AutoProcessor.from_pretrained(str(p), local_files_only=True)
            self.model = AutoModelForImageTextToText.from_pretrained(str(p), local_files_only=True).to(device).eval()
        except (OSError, ValueError, KeyError) as e:
            raise SASInputError(p, f"cannot load an image-to-text captioner: {str(e).splitlines()[0][:300]}") from e
        self.path, self.device, self.max_new_tokens = str(p), str(device), int(max_new_tokens)
        self.context, self.dim_background = float(context), float(dim_background)
        self.name = f"hf:{p.name}"

    def config(self) -> dict:
        return {"name": self.name, "path": self.path, "max_new_tokens": self.max_new_tokens,
                "context": self.context, "dim_background": self.dim_background}

    def crop(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(mask)
        h, w = mask.shape
        if len(ys) == 0:
            return image
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        py, px = int((y1 - y0) * self.context), int((x1 - x0) * self.context)
        y0, y1, x0, x1 = max(0, y0 - py), min(h, y1 + py), max(0, x0 - px), min(w, x1 + px)
        im = image.astype(np.float32)
        im[~mask] = im[~mask] * (1 - self.dim_background) + 128 * self.dim_background
        return im[y0:y1, x0:x1].round().clip(0, 255).astype(np.uint8)

    def captions(self, image: np.ndarray, masks: Sequence[np.ndarray]) -> list[str]:
        from PIL import Image

        crops = [Image.fromarray(self.crop(np.asarray(image), np.asarray(m, bool))) for m in masks]
        if not crops:
            return []
        inputs = self.processor(images=crops, return_tensors="pt").to(self.device)
        with torch.no_grad():
            ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]

    def adjectives(self, image, mask):
        return self.adjectives_batch(image, [mask])[0]

    def adjectives_batch(self, image, masks):
        return [extract_adjectives(c) for c in self.captions(image, masks)]


CAPTIONERS = {"mask_cues": MaskCueCaptioner}
"""Plain registry of captioners that need no weights; :class:`HFCaptioner` is built from a folder with ``hf:<path>``."""


def get_captioner(spec: str | None = None, device: str = "cpu") -> Captioner:
    """``None``/``"mask_cues"`` -> :class:`MaskCueCaptioner`; ``"hf:<folder>"`` -> :class:`HFCaptioner`."""
    if spec in (None, "", "mask_cues"):
        return MaskCueCaptioner()
    if spec.startswith("hf:"):
        return HFCaptioner(spec[3:], device=device)
    raise SASInputError(None, f"unknown captioner {spec!r}; use 'mask_cues' or 'hf:<folder>'")


# --- alignment -----------------------------------------------------------------------------------------------
def align_masks_compact(preds: Sequence[MaskPrediction], image: np.ndarray, text_encoder,
                        captioner: Optional[Captioner] = None):
    """MAT in compact form.

    Returns ``(seg, emb, texts, labels, scores)``: ``seg`` int64 [H, W] index into the segments (-1 = no mask),
    ``emb`` float32 [S, C] the encoded sentences, ``texts`` the sentences, ``labels`` / ``scores`` per segment.
    Segments are the predictions with a non-empty visible part, ordered as given.
    """
    image = check_image(image)
    H, W = image.shape[:2]
    captioner = captioner or MaskCueCaptioner()
    masks = []
    for k, p in enumerate(preds):
        m = np.asarray(p.mask, dtype=bool)
        if m.shape != (H, W):
            raise SASInputError(None, f"mask {k} ({p.label!r}) has shape {list(m.shape)}, image is {[H, W]}")
        masks.append(m)
    # paint in ascending score order so that the higher score wins on overlaps (stable for equal scores)
    order = sorted(range(len(preds)), key=lambda k: float(preds[k].score))
    owner = np.full((H, W), -1, dtype=np.int64)
    for k in order:
        owner[masks[k]] = k
    visible = [k for k in range(len(preds)) if masks[k].any() and (owner == k).any()]
    remap = np.full(len(preds) + 1, -1, dtype=np.int64)
    remap[np.array(visible, dtype=np.int64)] = np.arange(len(visible))
    seg = remap[owner]  # owner -1 indexes the last entry, which stays -1
    adjs = captioner.adjectives_batch(image, [masks[k] for k in visible]) if visible else []
    texts = [mat_sentence(a, preds[k].label) for a, k in zip(adjs, visible)]
    emb = text_encoder.encode(texts) if texts else torch.zeros(0, text_encoder.dim)
    labels = [preds[k].label for k in visible]
    scores = [float(preds[k].score) for k in visible]
    return seg, emb, texts, labels, scores


def align_masks(preds: Sequence[MaskPrediction], image: np.ndarray, text_encoder,
                captioner: Optional[Captioner] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Model Alignment via Text: ``(feat float32 [H, W, C], valid bool [H, W])``; invalid pixels hold zeros that must
    not be used (check ``valid``)."""
    seg, emb, _, _, _ = align_masks_compact(preds, image, text_encoder, captioner)
    return expand_segments(torch.from_numpy(seg), emb)


def expand_segments(seg: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment-id map (-1 = none) + per-segment features -> ``(feat [H, W, C] float32, valid bool [H, W])``."""
    seg = seg.long()
    valid = seg >= 0
    emb = emb.float()
    if emb.shape[0] == 0:
        return torch.zeros(*seg.shape, emb.shape[1]), valid
    feat = emb[seg.clamp(min=0)]
    feat[~valid] = 0.0
    return feat, valid
