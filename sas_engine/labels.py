"""Label sets, NYU40 mappings, pre-built vocabularies and prompt templates.

All names are facts of the public benchmarks (ScanNet v2, Matterport3D, nuScenes) and of the SAS paper (Table 9).
A *label set* is an ordered list of class names; a point label is the index into that list, 255 = ignore.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import SASInputError

IGNORE = 255
"""Label value of points without ground truth (never counted by metrics)."""

#: ScanNet-20 benchmark classes in benchmark order, with their NYU40 ids.
SCANNET20 = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "otherfurniture",
)
SCANNET20_NYU40 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)

#: The 40 NYU40 class names, index i is NYU40 id i+1.
NYU40 = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
    "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel", "shower curtain", "box", "whiteboard",
    "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)

#: Matterport 21 = ScanNet 20 + ceiling (index 20).
MATTERPORT21 = SCANNET20 + ("ceiling",)

#: nuScenes lidar-seg 16 classes.
NUSCENES16 = (
    "barrier", "bicycle", "bus", "car", "construction vehicle", "motorcycle", "pedestrian", "traffic cone",
    "trailer", "truck", "driveable surface", "other flat", "sidewalk", "terrain", "manmade", "vegetation",
)

#: SAS pre-built vocabularies (paper Table 9).
SAS_INDOOR_VOCAB = (
    "bookshelf", "table", "wall", "bathtub", "sofa", "ceiling", "door", "bed", "toilet", "picture", "desk", "floor",
    "counter", "shower curtain", "sink", "curtain", "window", "chair", "cabinet", "refrigerator",
)
SAS_OUTDOOR_VOCAB = (
    "person", "bus", "wall", "grass", "car", "bicycle", "crane", "sky", "tree", "excavator", "barricade", "trailer",
    "pavement", "building", "road", "motorcycle", "plant", "truck", "awning", "container", "lawn", "traffic cone",
    "bulldozer",
)

#: Prompt templates. ``{}`` is replaced by the class name.
PROMPT_SCENE = "a {} in a scene"
PROMPT_CAPABILITY = "a good photo of a {} in a room"
PROMPT_CAPABILITY_PAPER = "a good photo of {}"
PROMPT_TEMPLATES = {"scene": PROMPT_SCENE, "capability": PROMPT_CAPABILITY, "capability_paper": PROMPT_CAPABILITY_PAPER}


@dataclass(frozen=True)
class LabelSet:
    """An ordered list of class names plus how they are prompted.

    Attributes:
        name: registry name (``"scannet20"``...).
        names: class names, index = label value.
        prompt_names: the word actually put in the prompt per class (OpenScene prompts "otherfurniture" as "other").
        query_names: optional finer names queried instead of a class (nuScenes' 43 detailed names), each with the
            index of the class it maps back to, as a tuple of ``(name, class_index)``.
    """

    name: str
    names: tuple[str, ...]
    prompt_names: tuple[str, ...] = ()
    query_names: tuple[tuple[str, int], ...] = field(default=())

    def __post_init__(self):
        if not self.prompt_names:
            object.__setattr__(self, "prompt_names", self.names)

    def __len__(self) -> int:
        return len(self.names)

    def prompts(self, template: str = PROMPT_SCENE) -> list[str]:
        """Prompt strings, one per class (or per query name when ``query_names`` is set)."""
        words = [q for q, _ in self.query_names] if self.query_names else list(self.prompt_names)
        return [template.format(w) for w in words]

    def query_to_class(self) -> np.ndarray:
        """int64 [Q] class index of each prompt returned by :meth:`prompts`."""
        if self.query_names:
            return np.array([c for _, c in self.query_names], dtype=np.int64)
        return np.arange(len(self.names), dtype=np.int64)


def _nyu40_to_scannet20() -> np.ndarray:
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for idx, nyu in enumerate(SCANNET20_NYU40):
        lut[nyu] = idx
    return lut


NYU40_TO_SCANNET20 = _nyu40_to_scannet20()
"""uint8 [256] look-up table: NYU40 id -> ScanNet-20 index (255 for every other id)."""

SCANNET20_TO_NYU40 = np.array(SCANNET20_NYU40, dtype=np.int64)
"""int64 [20] ScanNet-20 index -> NYU40 id (for benchmark submission files)."""


def nyu40_to_scannet20(nyu_ids: np.ndarray) -> np.ndarray:
    """Map NYU40 ids (any int array) to ScanNet-20 labels, uint8, 255 = ignore."""
    ids = np.asarray(nyu_ids).astype(np.int64)
    out = np.full(ids.shape, IGNORE, dtype=np.uint8)
    ok = (ids >= 0) & (ids < 256)
    out[ok] = NYU40_TO_SCANNET20[ids[ok]]
    return out


LABEL_SETS: dict[str, LabelSet] = {
    "scannet20": LabelSet("scannet20", SCANNET20, SCANNET20[:-1] + ("other",)),
    "matterport21": LabelSet("matterport21", MATTERPORT21, SCANNET20[:-1] + ("other", "ceiling")),
    "nuscenes16": LabelSet("nuscenes16", NUSCENES16),
    "sas_indoor": LabelSet("sas_indoor", SAS_INDOOR_VOCAB),
    "sas_outdoor": LabelSet("sas_outdoor", SAS_OUTDOOR_VOCAB),
}
"""Plain registry of label sets by name. Other modules add theirs (Matterport 40/80/160, nuScenes 43) here."""


def get_label_set(name: str) -> LabelSet:
    """Look up a label set by name; unknown names raise :class:`SASInputError` listing the known ones."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise SASInputError(None, f"unknown label set {name!r}; known: {', '.join(sorted(LABEL_SETS))}") from None


# --- Matterport K-class variants and nuScenes detailed query names (appended by the io module) ---------------------
#: Matterport3D 40 / 80 / 160: the K most frequent NYU class names in Matterport3D, most frequent first (names as in
#: OpenScene's label constants; the 160 list there holds 160 names). The spellings "refridgerator" and "excercise
#: equipment" are the benchmark's; their prompts use the correct words.
MATTERPORT160 = (
    "wall", "door", "ceiling", "floor", "picture", "window", "chair", "pillow", "lamp", "cabinet",
    "curtain", "table", "plant", "mirror", "towel", "sink", "shelves", "sofa", "bed", "night stand",
    "toilet", "column", "banister", "stairs", "stool", "vase", "television", "pot", "desk", "box",
    "coffee table", "counter", "bench", "garbage bin", "fireplace", "clothes", "bathtub", "book", "air vent", "faucet",
    "photo", "toilet paper", "fan", "railing", "sculpture", "dresser", "rug", "ottoman", "bottle", "refridgerator",
    "bookshelf", "wardrobe", "pipe", "monitor", "stand", "drawer", "container", "light switch", "purse", "door way",
    "basket", "chandelier", "oven", "clock", "stove", "washing machine", "shower curtain", "fire alarm", "bin", "chest",
    "microwave", "blinds", "bowl", "tissue box", "plate", "tv stand", "shoe", "heater", "headboard", "bucket",
    "candle", "flower pot", "speaker", "furniture", "sign", "air conditioner", "fire extinguisher", "curtain rod",
    "floor mat", "printer",
    "telephone", "blanket", "handle", "shower head", "soap", "keyboard", "thermostat", "radiator", "kitchen island",
    "paper towel",
    "sheet", "glass", "dishwasher", "cup", "ladder", "garage door", "hat", "exit sign", "piano", "board",
    "rope", "ball", "excercise equipment", "hanger", "candlestick", "light", "scale", "bag", "laptop", "treadmill",
    "guitar", "display case", "toilet paper holder", "bar", "tray", "urn", "decorative plate", "pool table", "jacket",
    "bottle of soap",
    "water cooler", "utensil", "tea pot", "stuffed animal", "paper towel dispenser", "lamp shade", "car",
    "toilet brush",
    "doll", "drum",
    "whiteboard", "range hood", "candelabra", "toy", "foot rest", "soap dish", "placemat", "cleaner", "computer",
    "knob",
    "paper", "projector", "coat hanger", "case", "pan", "luggage", "trinket", "chimney", "person", "alarm",
)
MATTERPORT40 = MATTERPORT160[:40]
MATTERPORT80 = MATTERPORT160[:80]
_MP_PROMPT_FIX = {"refridgerator": "refrigerator", "excercise equipment": "exercise equipment"}

#: nuScenes: 43 unambiguous query names (SAS paper Table 8 / OpenScene) and the nuScenes-16 index each maps back to.
NUSCENES43 = (
    ("barrier", 0), ("barricade", 0), ("bicycle", 1), ("bus", 2), ("car", 3), ("bulldozer", 4), ("excavator", 4),
    ("concrete mixer", 4), ("crane", 4), ("dump truck", 4), ("motorcycle", 5), ("person", 6), ("pedestrian", 6),
    ("traffic cone", 7), ("trailer", 8), ("semi trailer", 8), ("cargo container", 8), ("shipping container", 8),
    ("freight container", 8), ("truck", 9), ("road", 10), ("curb", 11), ("traffic island", 11), ("traffic median", 11),
    ("sidewalk", 12), ("grass", 13), ("grassland", 13), ("lawn", 13), ("meadow", 13), ("turf", 13), ("sod", 13),
    ("building", 14), ("wall", 14), ("pole", 14), ("awning", 14), ("tree", 15), ("trunk", 15), ("tree trunk", 15),
    ("bush", 15), ("shrub", 15), ("plant", 15), ("flower", 15), ("woods", 15),
)


def _matterport_k(k: int) -> LabelSet:
    names = MATTERPORT160[:k]
    return LabelSet(f"matterport{k}", names, tuple(_MP_PROMPT_FIX.get(n, n) for n in names))


for _k in (40, 80, 160):
    LABEL_SETS[f"matterport{_k}"] = _matterport_k(_k)
LABEL_SETS["nuscenes43"] = LabelSet("nuscenes43", NUSCENES16, query_names=NUSCENES43)
"""``nuscenes43``: the 16 nuScenes classes queried through the 43 detailed names (predictions map back to 16)."""
