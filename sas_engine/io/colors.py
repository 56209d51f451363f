"""Label palettes for coloured exports and viewers.

:func:`palette` gives a 256-entry ScanNet-style palette: entries 0..19 are the ScanNet benchmark colours of the
20 classes (in ScanNet-20 order), index 20 the colour Matterport's ``ceiling`` uses, further classes get
well-separated deterministic colours (golden-ratio hues), and index 255 (ignore) is black.
"""
from __future__ import annotations

import colorsys

import numpy as np

#: ScanNet benchmark colours of the 20 classes in ScanNet-20 order (wall ... otherfurniture), then ceiling.
SCANNET20_COLORS = (
    (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120), (188, 189, 34), (140, 86, 75),
    (255, 152, 150), (214, 39, 40), (197, 176, 213), (148, 103, 189), (196, 156, 148), (23, 190, 207),
    (247, 182, 210), (219, 219, 141), (255, 127, 14), (158, 218, 229), (44, 160, 44), (112, 128, 144),
    (227, 119, 194), (82, 84, 163), (58, 98, 26),
)
IGNORE_COLOR = (0, 0, 0)


def palette(num_classes: int = 255) -> np.ndarray:
    """uint8 [256, 3] colour per label value; the first ``num_classes`` entries are the class colours, all
    entries >= ``num_classes`` are black, and 255 (ignore) is always black."""
    if not 0 <= num_classes <= 256:
        raise ValueError(f"palette: num_classes must be in 0..256, got {num_classes}")
    pal = np.zeros((256, 3), np.uint8)
    fixed = np.array(SCANNET20_COLORS, np.uint8)
    k = min(num_classes, len(fixed))
    pal[:k] = fixed[:k]
    golden = 0.618033988749895
    for i in range(len(fixed), min(num_classes, 255)):
        h = (i * golden) % 1.0
        s = 0.55 + 0.35 * ((i * 7) % 3) / 2
        v = 0.65 + 0.3 * ((i * 5) % 2)
        pal[i] = np.round(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    pal[255] = IGNORE_COLOR
    return pal


def colorize(labels: np.ndarray, num_classes: int = 255) -> np.ndarray:
    """uint8 [..., 3] colours of integer labels (values outside 0..255 count as ignore)."""
    lab = np.asarray(labels).astype(np.int64)
    lab = np.where((lab >= 0) & (lab < 256), lab, 255)
    return palette(num_classes)[lab]
