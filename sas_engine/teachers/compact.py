"""The demo's compact teachers as :class:`DenseTeacher` / :class:`MaskTeacher` adapters, and their checkpoint format.

Checkpoint (``checkpoints/lseg_compact.pt`` / ``seem_compact.pt``), loadable with ``weights_only=True``::

    {"format_version": 1, "kind": "compact_dense" | "compact_mask", "state_dict": {...},
     "config": {"net": {...}, "train": {...}, "text_encoder": "minilm", "vocabulary": [...], "template": "...",
                "proposals": {...}},            # proposals: mask teacher only
     "metrics": {"val_iou": {class: iou}, "val_miou": float}}
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import SASInputError
from .base import DenseTeacher, MaskPrediction, MaskTeacher, check_image, weights_id
from .compact_nets import CompactDenseNet, CompactMaskNet, DenseNetConfig, MaskNetConfig, to_input
from .proposals import ProposalConfig, propose_regions

FORMAT_VERSION = 1
CHECKPOINT_DIR = Path(__file__).resolve().parents[2] / "checkpoints"
"""The repository's ``checkpoints/`` folder, where the shipped compact teachers live."""


def save_compact(path: str | Path, kind: str, net: torch.nn.Module, config: dict, metrics: dict) -> Path:
    """Atomically write a compact-teacher checkpoint."""
    from ..store import atomic_write

    obj = {"format_version": FORMAT_VERSION, "kind": kind, "state_dict": net.state_dict(), "config": config,
           "metrics": metrics}
    return atomic_write(path, lambda f: torch.save(obj, f))


def read_compact(path: str | Path, kind: str) -> dict:
    """Read and check a compact-teacher checkpoint (clear errors for missing, foreign or wrong-kind files)."""
    from ..io.files import torch_load

    path = Path(path)
    ck = torch_load(path, what="compact teacher checkpoint (see scripts/train_compact_teachers.py)")
    if not isinstance(ck, dict) or ck.get("kind") != kind or ck.get("format_version") != FORMAT_VERSION:
        raise SASInputError(path, f"not a {kind} checkpoint of format {FORMAT_VERSION}")
    return ck


def _build(net_cls, cfg_cls, ck: dict, path) -> torch.nn.Module:
    try:
        net = net_cls(cfg_cls(**ck["config"]["net"]))
        missing, unexpected = net.load_state_dict(ck["state_dict"], strict=False)
    except (TypeError, RuntimeError) as e:  # unknown config fields / tensor shapes that do not fit
        raise SASInputError(path, f"weights do not match the recorded architecture: {str(e)[:300]}") from e
    if missing or unexpected:
        raise SASInputError(path, f"state dict does not match the architecture: missing {missing[:5]}, "
                                  f"unexpected {unexpected[:5]}")
    return net.eval()


class CompactDenseTeacher(DenseTeacher):
    """LSeg-style compact dense teacher: per-pixel features at 1/4 resolution in the MiniLM text space."""

    name = "lseg_compact"
    display_name = "dense teacher (compact, LSeg-style)"

    default_file = "lseg_compact.pt"

    def __init__(self, checkpoint: str | Path | None = None, device: str = "cpu"):
        from .text import get_text_encoder

        self.checkpoint = Path(checkpoint) if checkpoint else CHECKPOINT_DIR / self.default_file
        ck = read_compact(self.checkpoint, "compact_dense")
        self.meta = ck["config"]
        self.metrics = ck.get("metrics", {})
        self.net = _build(CompactDenseNet, DenseNetConfig, ck, self.checkpoint)
        self.text_encoder = get_text_encoder(self.meta.get("text_encoder", "minilm"))
        self.to(device)

    def to(self, device: str) -> "CompactDenseTeacher":
        self.device = str(device)
        self.net.to(self.device)
        return self

    def config(self) -> dict:
        return {"name": self.name, "checkpoint": weights_id(self.checkpoint), "net": self.meta["net"],
                "train": self.meta.get("train", {})}

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        s = float(self.meta["net"].get("input_scale", 1.0))
        h, w = (height, width) if s == 1.0 else (int(math.floor(height * s)), int(math.floor(width * s)))
        return (h + 3) // 4, (w + 3) // 4

    @torch.no_grad()
    def predict_batch(self, images: Sequence[np.ndarray], *, frame_ids=None) -> list[torch.Tensor]:
        out = []
        for im in images:
            x = to_input(torch.as_tensor(check_image(im))[None]).to(self.device)
            out.append(self.net(x)[0].permute(1, 2, 0).float().cpu())
        return out


class CompactContextTeacher(CompactDenseTeacher):
    """ODISE-style compact third teacher: a dense network at half input resolution whose receptive field spans the
    whole frame (features at 1/8 of the frame), trained on its own data source (:mod:`.sources`)."""

    name = "odise_compact"
    display_name = "context teacher (compact, ODISE-style)"
    default_file = "odise_compact.pt"


class CompactMaskTeacher(MaskTeacher):
    """SEEM-style compact mask teacher: class-agnostic region proposals + a region classifier over the vocabulary."""

    name = "seem_compact"
    display_name = "mask teacher (compact, SEEM-style)"

    def __init__(self, checkpoint: str | Path | None = None, vocabulary: Optional[Sequence[str]] = None,
                 device: str = "cpu"):
        from .text import get_text_encoder

        self.checkpoint = Path(checkpoint) if checkpoint else CHECKPOINT_DIR / "seem_compact.pt"
        ck = read_compact(self.checkpoint, "compact_mask")
        self.meta = ck["config"]
        self.metrics = ck.get("metrics", {})
        self.net = _build(CompactMaskNet, MaskNetConfig, ck, self.checkpoint)
        self.proposals = ProposalConfig(**self.meta.get("proposals", {}))
        self.text_encoder = get_text_encoder(self.meta.get("text_encoder", "minilm"))
        self.template = self.meta.get("template", "a {} in a scene")
        self.vocabulary = tuple(vocabulary or self.meta["vocabulary"])
        self._vocab_emb = self.text_encoder.encode_persistent([self.template.format(v) for v in self.vocabulary])
        self.temperature = float(self.meta.get("train", {}).get("temperature", 0.07))
        self.to(device)

    def to(self, device: str) -> "CompactMaskTeacher":
        self.device = str(device)
        self.net.to(self.device)
        return self

    def config(self) -> dict:
        return {"name": self.name, "checkpoint": weights_id(self.checkpoint), "net": self.meta["net"],
                "vocabulary": list(self.vocabulary), "proposals": dataclasses.asdict(self.proposals)}

    @torch.no_grad()
    def regions_and_labels(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(region map int64 [H, W] at full resolution, vocabulary index per region [R], score per region [R])."""
        image = check_image(image)
        small = propose_regions(image[::2, ::2], self.proposals)
        x = to_input(torch.as_tensor(image)[None]).to(self.device)
        emb = self.net(x, [torch.as_tensor(small, device=self.device)])[0].float().cpu()
        prob = torch.softmax(emb @ self._vocab_emb.T / self.temperature, 1)
        score, lab = prob.max(1)
        full = np.repeat(np.repeat(small, 2, 0), 2, 1)[: image.shape[0], : image.shape[1]]
        return full, lab.numpy(), score.numpy()

    def predict_batch(self, images: Sequence[np.ndarray], *, frame_ids=None) -> list[list[MaskPrediction]]:
        out = []
        for im in images:
            full, lab, score = self.regions_and_labels(im)
            out.append([MaskPrediction(full == r, self.vocabulary[int(lab[r])], float(score[r]))
                        for r in range(len(lab))])
        return out


def build_lseg_compact(checkpoint: str | Path | None = None, device: str = "cpu", **_) -> CompactDenseTeacher:
    """Registry builder for ``lseg_compact`` (default weights: the shipped ``checkpoints/lseg_compact.pt``)."""
    return CompactDenseTeacher(checkpoint, device=device)


def build_odise_compact(checkpoint: str | Path | None = None, device: str = "cpu", **_) -> CompactContextTeacher:
    """Registry builder for ``odise_compact`` (default weights: the shipped ``checkpoints/odise_compact.pt``)."""
    return CompactContextTeacher(checkpoint, device=device)


def build_seem_compact(checkpoint: str | Path | None = None, device: str = "cpu",
                       vocabulary: Sequence[str] | str | None = None, **_) -> CompactMaskTeacher:
    """Registry builder for ``seem_compact`` (default weights: ``checkpoints/seem_compact.pt``; ``vocabulary``: a
    label-set name or a list of words to classify regions into, default the training vocabulary)."""
    if isinstance(vocabulary, str):
        from ..labels import get_label_set

        vocabulary = list(get_label_set(vocabulary).prompt_names)
    return CompactMaskTeacher(checkpoint, vocabulary=vocabulary, device=device)


def shipped_text_strings() -> list[str]:
    """What the shipped text-embedding table (:data:`~sas_engine.teachers.text.SHIPPED_TEXT_DIR`) holds, in a fixed
    order: the demo label set's prompts (``a {name} in a scene``), the shipped mask teacher's vocabulary prompts and
    every Model-Alignment-via-Text sentence its captioner can give (:func:`~sas_engine.teachers.mat.mask_cue_sentences`)
    - every string a cold demo build encodes."""
    from ..labels import PROMPT_SCENE, get_label_set
    from .mat import mask_cue_sentences

    meta = read_compact(CHECKPOINT_DIR / "seem_compact.pt", "compact_mask")["config"]
    template = meta.get("template", "a {} in a scene")
    vocab = list(meta["vocabulary"])
    texts = list(get_label_set("scannet20").prompts(PROMPT_SCENE)) + [template.format(v) for v in vocab]
    return list(dict.fromkeys(texts + mask_cue_sentences(vocab)))
