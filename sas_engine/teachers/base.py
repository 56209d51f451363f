"""Teacher interfaces: dense teachers (image -> per-pixel features) and mask teachers (image -> labelled masks).

Conventions (every teacher):
    * input images are ``uint8 [H, W, 3]`` RGB numpy arrays (``Frame.color``);
    * a dense teacher returns a float32 tensor ``[h, w, C]`` on the CPU in its text encoder's space, pixel features
      L2-normalised; ``h, w`` is the teacher's native output resolution and may be smaller than ``H, W`` (the feature
      at image pixel ``(v, u)`` is the one at ``(v * h // H, u * w // W)``);
    * a mask teacher returns a list of :class:`MaskPrediction` with masks at the image resolution;
    * ``name`` is the registry name, ``display_name`` the label shown in the app, ``kind`` "dense" or "mask",
      ``text_encoder`` the :class:`~sas_engine.teachers.text.TextEncoder` whose space the features (dense) or the
      classification (mask) live in;
    * ``config()`` returns a JSON-able description of everything that changes the output (stamped on cached artefacts).

Compact teachers trained on the synthetic world subclass these classes as well.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import SASInputError


@dataclass
class MaskPrediction:
    """One mask of a mask teacher.

    Attributes:
        mask: bool [H, W] at the image resolution.
        label: the teacher's class name for the mask (a vocabulary word, as put into prompts).
        score: confidence in [0, 1]; where masks overlap the higher score wins.
    """

    mask: np.ndarray
    label: str
    score: float


def weights_id(path) -> Optional[dict]:
    """``{"file": name, "sha": content digest}`` of a weights file, for :meth:`Teacher.config`: artefacts name the
    weights they were made with by content, so a retrained checkpoint under the same name makes them stale.
    ``None`` for no path; a path that does not exist is recorded as ``{"file": name, "sha": None}``."""
    if not path:
        return None
    from pathlib import Path

    from ..io.files import file_digest

    p = Path(path)
    return {"file": p.name, "sha": file_digest(p) if p.is_file() else None}


class Teacher:
    """Common base of dense and mask teachers."""

    name: str = "teacher"
    display_name: str = "teacher"
    kind: str = "dense"
    text_encoder = None
    device: str = "cpu"

    def config(self) -> dict:
        """JSON-able description of the teacher's output-relevant settings (for artefact headers)."""
        return {"name": self.name}

    def for_scene(self, scene_id: str) -> "Teacher":
        """The teacher to use for one scene (teachers reading per-scene files on disk override this)."""
        return self

    def to(self, device: str) -> "Teacher":
        """Move the teacher's networks to ``device``; returns ``self``."""
        self.device = str(device)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r})"


class DenseTeacher(Teacher):
    """Image -> ``[h, w, C]`` L2-normalised features in ``text_encoder``'s space."""

    kind = "dense"

    def predict(self, image: np.ndarray, *, frame_id: Optional[str] = None) -> torch.Tensor:
        """Features of one ``uint8 [H, W, 3]`` image: float32 ``[h, w, C]`` on the CPU."""
        return self.predict_batch([image], frame_ids=None if frame_id is None else [frame_id])[0]

    def predict_batch(self, images: Sequence[np.ndarray], *, frame_ids: Optional[Sequence[str]] = None
                      ) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_batch_valid(self, images: Sequence[np.ndarray], *, frame_ids: Optional[Sequence[str]] = None
                            ) -> list[tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """Like :meth:`predict_batch`, each map with a bool ``[h, w]`` validity mask (``None``: all valid)."""
        return [(f, None) for f in self.predict_batch(images, frame_ids=frame_ids)]

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Native ``(h, w)`` of the feature map for an ``H x W`` image."""
        return height, width


class MaskTeacher(Teacher):
    """Image -> list of :class:`MaskPrediction` (binary masks with a label and a score)."""

    kind = "mask"
    vocabulary: tuple[str, ...] = ()

    def predict(self, image: np.ndarray, *, frame_id: Optional[str] = None) -> list[MaskPrediction]:
        return self.predict_batch([image], frame_ids=None if frame_id is None else [frame_id])[0]

    def predict_batch(self, images: Sequence[np.ndarray], *, frame_ids: Optional[Sequence[str]] = None
                      ) -> list[list[MaskPrediction]]:  # pragma: no cover - abstract
        raise NotImplementedError


def check_image(image, where: str = "image") -> np.ndarray:
    """Validate an ``uint8 [H, W, 3]`` image (raises :class:`SASInputError`)."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise SASInputError(None, f"{where} must be uint8 [H, W, 3], got shape {list(a.shape)}")
    if a.dtype != np.uint8:
        raise SASInputError(None, f"{where} must be uint8 [H, W, 3], got dtype {a.dtype}")
    return a


def image_to_tensor(images: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float],
                    device: str = "cpu") -> torch.Tensor:
    """Stack same-sized ``uint8 [H, W, 3]`` images into a normalised float32 ``[B, 3, H, W]`` tensor."""
    x = torch.from_numpy(np.stack([check_image(im) for im in images])).to(device)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return (x - m) / s


def group_by_size(images: Sequence[np.ndarray]) -> dict[tuple[int, int], list[int]]:
    """Indices of images grouped by ``(H, W)`` so each group runs as one batch."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault((int(im.shape[0]), int(im.shape[1])), []).append(i)
    return groups


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""CLIP's image normalisation mean (RGB in [0, 1])."""
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""CLIP's image normalisation std."""
