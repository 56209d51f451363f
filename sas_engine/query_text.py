"""Query texts: clean-up and splitting of what users type, prompt templates, and the shared text-embedding cache.

Split out of :mod:`sas_engine.query`, which re-exports every name here.
"""
from __future__ import annotations

import threading
import unicodedata
from collections import OrderedDict
from typing import Optional, Sequence

import torch

from .errors import SASInputError

MAX_QUERY_CHARS = 200
"""Longest accepted query (characters, after whitespace clean-up)."""

MAX_QUERY_NAMES = 64
"""Most comma-separated names accepted in one labelled-segmentation query."""

QUERY_TEMPLATES = ("a {} in a scene", "a photo of a {}", "a {}", "{}")
"""Prompt ensemble of short queries and of vocabulary names (each embedding is the normalised mean over these)."""

NAME_DESCRIPTIONS: dict[str, str] = {
    "wall": "a wall: the flat vertical side of a room",
    "floor": "a floor: the surface of a room you walk and stand on",
    "cabinet": "a cabinet: a cupboard with doors or drawers for storing things",
    "bed": "a bed: a piece of furniture with a mattress for sleeping on",
    "chair": "a chair: a seat for one person, with a back and usually four legs",
    "sofa": "a sofa: a long upholstered seat for several people, a couch",
    "table": "a table: a piece of furniture with a flat top on legs, for eating or putting things on",
    "door": "a door: a hinged panel that opens and closes the entrance of a room",
    "window": "a window: an opening in a wall fitted with glass, to let in light and look outside",
    "bookshelf": "a bookshelf: shelves for keeping books",
    "picture": "a picture: a framed painting, photograph or print hung on a wall",
    "counter": "a counter: a kitchen worktop, a long flat surface to prepare food on",
    "desk": "a desk: a table to work or write at, often with a computer",
    "curtain": "a curtain: a piece of fabric hanging at a window",
    "refrigerator": "a refrigerator: a fridge, an appliance that keeps food and drinks cold",
    "shower curtain": "a shower curtain: a waterproof curtain around a shower or bathtub",
    "toilet": "a toilet: a lavatory bowl with a seat and a flush",
    "sink": "a sink: a basin with a tap and a drain, to wash your hands or the dishes",
    "bathtub": "a bathtub: a long tub filled with water to take a bath in",
}
"""What each ScanNet-20 name means and is for, in one line (hand-written; "other" has none). A query's aliases are
chosen against a name *and* its description, so "a place to wash hands" reaches sink through "... to wash your hands
...", where MiniLM puts the bare phrase nearer "toilet". The descriptions only pick aliases: every relevance column
is still the name's own prompt ensemble, so the fitted calibration applies unchanged. Written after the tuning and
reported paraphrase lists of :mod:`sas_engine.eval.queries` existed (some wording overlaps theirs); that module's
``PARAPHRASES_FRESH`` was written after them and measures what they do for unseen wordings."""



def clean_query(text: object, *, what: str = "query") -> str:
    """Normalise one free-text query: NFC, control characters dropped, whitespace collapsed.

    Raises:
        SASInputError: the text is not a string, empty after clean-up, or longer than :data:`MAX_QUERY_CHARS`.
    """
    if not isinstance(text, str):
        raise SASInputError(None, f"{what} must be text, got {type(text).__name__}")
    t = unicodedata.normalize("NFC", text)
    t = "".join(" " if unicodedata.category(c).startswith(("C", "Z")) else c for c in t)
    t = " ".join(t.split())
    if not t:
        raise SASInputError(None, f"{what} is empty: type a few words, e.g. 'somewhere to sit'")
    if len(t) > MAX_QUERY_CHARS:
        raise SASInputError(None, f"{what} is {len(t)} characters long; the limit is {MAX_QUERY_CHARS}")
    return t


def split_queries(text: object) -> list[str]:
    """Split ``"chair, sofa, lamp"`` into cleaned, de-duplicated names (order kept); empty items are dropped.

    Raises:
        SASInputError: no name left, one name too long, or more than :data:`MAX_QUERY_NAMES` names.
    """
    if not isinstance(text, str):
        raise SASInputError(None, f"query must be text, got {type(text).__name__}")
    names: list[str] = []
    for part in text.replace("\n", ",").split(","):
        if not part.strip():
            continue
        n = clean_query(part, what=f"name {part.strip()[:20]!r}")
        if n not in names:
            names.append(n)
    if not names:
        raise SASInputError(None, "query is empty: type a few words, or several names separated by commas")
    if len(names) > MAX_QUERY_NAMES:
        raise SASInputError(None, f"{len(names)} names given; at most {MAX_QUERY_NAMES} at once")
    return names


def apply_template(template: Optional[str], names: Sequence[str]) -> list[str]:
    """``template.format(name)`` per name (``None`` = names unchanged); the template must hold exactly one ``{}``."""
    if template is None:
        return list(names)
    if not isinstance(template, str) or template.count("{}") != 1 or template.count("{") != 1:
        raise SASInputError(None, f"prompt template {template!r} must contain exactly one '{{}}' placeholder")
    return [template.format(n) for n in names]


class TextEmbeddingCache:
    """Thread-safe LRU cache of text embeddings in front of a text encoder.

    Args:
        encoder: object with ``encode(list[str]) -> float32 [B, C]`` (L2-normalised rows); ``dim`` is read from it
            when present, else from the first result.
        max_entries: how many prompt strings to keep.
    """

    def __init__(self, encoder, max_entries: int = 4096):
        if not hasattr(encoder, "encode"):
            raise TypeError("text encoder must have an encode(list[str]) method")
        self.encoder = encoder
        self.max_entries = int(max_entries)
        self._emb: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.dim: Optional[int] = getattr(encoder, "dim", None)

    @property
    def name(self) -> str:
        return str(getattr(self.encoder, "name", type(self.encoder).__name__))

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """float32 [B, C] L2-normalised embeddings of ``texts`` (cached ones reused, the rest encoded in one batch)."""
        texts = list(texts)
        if not texts:
            raise SASInputError(None, "no text to encode")
        got: dict[str, torch.Tensor] = {}
        with self._lock:
            for t in dict.fromkeys(texts):
                e = self._emb.get(t)
                if e is not None:
                    got[t] = e
                    self._emb.move_to_end(t)
            self.hits += sum(t in got for t in texts)
        missing = [t for t in dict.fromkeys(texts) if t not in got]
        if missing:
            with self._encode_lock:  # one encoder call at a time; re-check what another thread encoded meanwhile
                with self._lock:
                    for t in missing:
                        if t in self._emb:
                            got[t] = self._emb[t]
                missing = [t for t in missing if t not in got]
                if missing:
                    got.update(self._encode(missing))
        return torch.stack([got[t] for t in texts])

    def _encode(self, missing: list[str]) -> dict[str, torch.Tensor]:
        out = torch.as_tensor(self.encoder.encode(missing)).detach().to("cpu", torch.float32)
        if out.ndim != 2 or out.shape[0] != len(missing):
            raise SASInputError(None, f"text encoder {self.name} returned shape {list(out.shape)} for "
                                      f"{len(missing)} texts")
        if not torch.isfinite(out).all():
            raise SASInputError(None, f"text encoder {self.name} returned non-finite values")
        out = torch.nn.functional.normalize(out, dim=1)
        new = {t: e.clone() for t, e in zip(missing, out)}
        with self._lock:
            self.dim = int(out.shape[1])
            self.misses += len(missing)
            self._emb.update(new)
            while len(self._emb) > self.max_entries:
                self._emb.popitem(last=False)
        return new
