"""Inputs shared by ``sas eval`` and ``sas export``: which scenes, which text embeddings, which prompt template."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ..errors import SASInputError
from ..labels import PROMPT_TEMPLATES, LabelSet

SCENE_FILE_SUFFIXES = (".pth", ".ply")
"""Files inside a split folder that are scenes of their own (OpenScene ``.pth``, bare point clouds)."""


def split_scene_paths(split: str | Path) -> list[Path]:
    """Scene paths of a split.

    ``split`` is a folder holding ``scans/<scene_id>/`` (ScanNet layout), or scene folders / ``.pth`` files directly
    (OpenScene's ``scannet_3d/val``), or the name of a synthetic split (``tiny``, ``train``, ``val``) that is generated
    on demand when no such folder exists.
    """
    p = Path(split)
    if not p.exists():
        from ..synth import SPLITS, ensure_split

        if str(split) in SPLITS:
            return [Path(x) for x in ensure_split(str(split))]
        raise SASInputError(p, "split folder does not exist (nor is it a synthetic split name)")
    if not p.is_dir():
        raise SASInputError(p, "a split must be a folder of scenes")
    root = p / "scans" if (p / "scans").is_dir() else p
    out = sorted(c for c in root.iterdir() if not c.name.startswith(".")
                 and (c.is_dir() or c.suffix in SCENE_FILE_SUFFIXES))
    if not out:
        raise SASInputError(root, "holds no scene folders or scene files")
    return out


def iter_scenes(paths: list[Path], dataset: Optional[str] = None, up: Optional[str] = None) -> Iterator:
    """Load scenes one at a time (frames stay lazy) so memory holds one scene; ``up`` as in ``load_scene``."""
    from ..io import load_scene

    for p in paths:
        yield load_scene(p, dataset=dataset, up=up)


def resolve_template(template: Optional[str], default: str) -> str:
    """A prompt template from a registry key (``scene``, ``capability``...) or a literal with ``{}``."""
    t = default if template is None else PROMPT_TEMPLATES.get(template, template)
    if "{}" not in t:
        raise SASInputError(None, f"prompt template {t!r} has no '{{}}' placeholder; known names: "
                                  f"{', '.join(PROMPT_TEMPLATES)}")
    return t


def load_text_embeddings(path: str | Path, label_set: LabelSet):
    """Precomputed text embeddings float32 [Q, C] from ``.pt`` (a tensor, or a dict with ``text_emb``/``embeddings``)
    or ``.npy``; Q must equal the number of prompts of ``label_set``."""
    import torch

    from ..io.files import torch_load

    p = Path(path)
    if not p.is_file():
        raise SASInputError(p, "text-embedding file does not exist")
    try:
        if p.suffix == ".npy":
            t = torch.from_numpy(np.load(p, allow_pickle=False))
        else:
            t = torch_load(p, what="text-embedding file")
            if isinstance(t, dict):
                t = t.get("text_emb", t.get("embeddings"))
    except SASInputError:
        raise
    except Exception as e:
        raise SASInputError(p, f"cannot read text embeddings ({type(e).__name__}: {e})") from e
    if not isinstance(t, torch.Tensor) or t.ndim != 2:
        raise SASInputError(p, "must hold one [Q, C] tensor (or a dict with key 'text_emb')")
    q = len(label_set.prompts())
    if t.shape[0] != q:
        raise SASInputError(p, f"has {t.shape[0]} rows but label set {label_set.name} has {q} prompts")
    return torch.nn.functional.normalize(t.float(), dim=1)


def fill_missing_nearest(points: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Give every point without a prediction (< 0) the prediction of its nearest predicted point."""
    from scipy.spatial import cKDTree

    pred = np.asarray(pred, dtype=np.int64).copy()
    miss = pred < 0
    if not miss.any():
        return pred
    have = ~miss
    if not have.any():
        raise SASInputError(None, "no point has a prediction; nothing to fill from")
    _, idx = cKDTree(points[have]).query(points[miss], k=1)
    pred[miss] = pred[have][idx]
    return pred


FRAME_FOLDERS = ("color", "depth", "pose", "exported")
"""Sub-folders that mark a folder as one RGB-D scene rather than a split."""


def target_scene_paths(target: str | Path) -> list[Path]:
    """Scene paths of ``target``: one scene (file, scan folder, RGB-D folder) or a split (see
    :func:`split_scene_paths`). A folder is a split when it holds ``scans/``, or only scene folders / ``.pth`` files
    and no frame folders (``color/``, ``depth/``...)."""
    p = Path(target)
    if not p.exists() or (p / "scans").is_dir():
        return split_scene_paths(target)
    if p.is_file():
        return [p]
    kids = [c for c in p.iterdir() if not c.name.startswith(".")]
    if kids and not any(c.name in FRAME_FOLDERS for c in kids) and all(
            c.is_dir() or c.suffix == ".pth" for c in kids):
        return split_scene_paths(p)
    return [p]
