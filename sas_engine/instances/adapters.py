"""Instance masks made elsewhere, in the formats real releases write, and the benchmark submission writer.

* **ScanNet benchmark / Mask3D submission** (what Mask3D's ``--save_visualizations false`` test run and the ScanNet
  instance benchmark use): ``<dir>/<scene>.txt`` with one line per instance, ``pred_mask/<scene>_<i>.txt <label_id>
  <score>``, the path relative to the ``.txt`` file, ``label_id`` a NYU40 id for ScanNet; each mask file holds one
  ``0``/``1`` per mesh vertex. :func:`read_submission` / :func:`write_submission`.
* **OpenMask3D-style arrays**: a ``.pt`` (torch) or ``.npy`` / ``.npz`` file of masks, ``[N, P]`` (OpenMask3D's
  ``<scene>_masks.pt`` is points x masks) or ``[P, N]`` (decided by the scene's point count), with scores from a dict
  key (``scores`` / ``confidences``), an ``.npz`` member of that name, or a sibling ``<stem>_scores.npy`` /
  ``<stem>_scores.pt``; without scores every mask scores 1. :func:`read_mask_array`.

Readers name the file and the problem on any inconsistency (:class:`SASInputError`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import SASInputError
from .metrics import InstancePrediction, as_mask
from .proposals import Proposals

MASK_DIR = "pred_mask"
"""Sub-folder of the submission's mask files (the benchmark's name)."""


def write_submission(out_dir: str | Path, scene_id: str, preds: Sequence[InstancePrediction], num_points: int) -> Path:
    """Write one scene's predictions in the benchmark's instance format: ``<out_dir>/<scene_id>.txt`` and
    ``<out_dir>/pred_mask/<scene_id>_<i>.txt`` (atomically, file by file). Returns the ``.txt`` path."""
    from ..store import atomic_write

    if not scene_id or any(c in scene_id for c in " /\\"):
        raise SASInputError(None, f"scene id {scene_id!r} cannot name a submission file (no spaces or slashes)")
    out = Path(out_dir)
    lines = []
    for i, p in enumerate(preds):
        m = as_mask(p.mask, num_points, f"prediction {i} of {scene_id}").astype(np.uint8)
        rel = f"{MASK_DIR}/{scene_id}_{i}.txt"
        text = "\n".join("1" if v else "0" for v in m.tolist()) + "\n"
        atomic_write(out / rel, lambda f, t=text: f.write(t), mode="w")
        if not np.isfinite(p.score):
            raise SASInputError(None, f"prediction {i} of {scene_id} has a non-finite score")
        lines.append(f"{rel} {int(p.label_id)} {float(p.score):.6f}")
    body = "\n".join(lines) + ("\n" if lines else "")
    return atomic_write(out / f"{scene_id}.txt", lambda f: f.write(body), mode="w")


def read_submission(path: str | Path, num_points: Optional[int] = None) -> list[InstancePrediction]:
    """Predictions of one ``<scene>.txt`` of a benchmark / Mask3D submission (masks as bool [N] arrays). The mask
    files must lie inside the submission's folder and have ``num_points`` lines when it is given."""
    p = Path(path)
    if not p.is_file():
        raise SASInputError(p, "instance submission file not found")
    root = p.parent.resolve()
    out = []
    for ln, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise SASInputError(p, f"line {ln}: expected '<relative mask path> <label id> <score>', got {line!r}")
        rel, lab, score = parts
        if Path(rel).is_absolute():
            raise SASInputError(p, f"line {ln}: the mask path must be relative, got {rel}")
        mf = (p.parent / rel).resolve()
        if root not in mf.parents:
            raise SASInputError(p, f"line {ln}: mask {rel} points outside the submission folder")
        try:
            label_id, conf = int(float(lab)), float(score)
        except ValueError:
            raise SASInputError(p, f"line {ln}: label id and score must be numbers, got {lab!r} {score!r}") from None
        if not mf.is_file():
            raise SASInputError(mf, f"mask file listed on line {ln} of {p.name} not found")
        try:
            m = np.array([int(s) for s in mf.read_text().split()], dtype=np.int64)
        except ValueError:
            raise SASInputError(mf, "mask file holds a non-integer line") from None
        if num_points is not None and m.size != num_points:
            raise SASInputError(mf, f"has {m.size} lines but the scene has {num_points} vertices")
        out.append(InstancePrediction(m != 0, label_id, conf))
    return out


def _load_array(p: Path, key_hint: Sequence[str] = ()):
    if p.suffix == ".npy":
        try:
            return np.load(p, allow_pickle=False), None
        except Exception as e:
            raise SASInputError(p, f"cannot read ({type(e).__name__}: {e})") from e
    if p.suffix == ".npz":
        try:
            z = np.load(p, allow_pickle=False)
        except Exception as e:
            raise SASInputError(p, f"cannot read ({type(e).__name__}: {e})") from e
        keys = list(z.files)
        mk = next((k for k in ("masks", "pred_masks", "ins_masks") if k in keys), None)
        if mk is None:
            raise SASInputError(p, f"has no 'masks' array (members: {keys})")
        sk = next((k for k in ("scores", "confidences", "pred_scores") if k in keys), None)
        return z[mk], (z[sk] if sk else None)
    from ..io.files import torch_load

    obj = torch_load(p, what="instance mask file")
    if isinstance(obj, dict):
        mk = next((k for k in ("masks", "pred_masks", "ins_masks") if k in obj), None)
        if mk is None:
            raise SASInputError(p, f"holds a dict without 'masks' (keys: {sorted(map(str, obj))[:8]})")
        sk = next((k for k in ("scores", "confidences", "pred_scores") if k in obj), None)
        return _np(obj[mk]), (_np(obj[sk]) if sk else None)
    return _np(obj), None


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if hasattr(x, "is_sparse") and x.is_sparse:
            x = x.to_dense()
        x = x.numpy()
    return np.asarray(x)


def read_mask_array(path: str | Path, num_points: int, min_points: int = 1) -> Proposals:
    """Class-agnostic proposals from an OpenMask3D-style mask array file (see the module docstring); masks below
    ``min_points`` points are dropped; the file's scores (if any) are kept in ``Proposals.scores``."""
    p = Path(path)
    if not p.is_file():
        raise SASInputError(p, "instance mask file not found")
    masks, scores = _load_array(p)
    if scores is None:
        for ext in (".npy", ".pt"):
            sib = p.with_name(f"{p.stem.removesuffix('_masks')}_scores{ext}")
            if sib.is_file():
                scores = _load_array(sib)[0]
                break
    if masks.ndim != 2:
        raise SASInputError(p, f"masks must be 2-D [N, P] or [P, N], got shape {list(masks.shape)}")
    if masks.shape[0] == num_points:
        masks = masks.T
    elif masks.shape[1] != num_points:
        raise SASInputError(p, f"masks {list(masks.shape)} have no axis of the scene's {num_points} points")
    masks = masks != 0
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        if scores.size != masks.shape[0]:
            raise SASInputError(p, f"{scores.size} scores for {masks.shape[0]} masks")
    keep = masks.sum(1) >= min_points
    return Proposals.from_masks(masks[keep], source=f"file:{p.name}",
                                scores=None if scores is None else scores[keep])


def read_proposal_file(path: str | Path, num_points: int, min_points: int = 1) -> Proposals:
    """Class-agnostic proposals from any supported file: a benchmark / Mask3D ``<scene>.txt`` (its labels are
    dropped; its scores kept) or an OpenMask3D-style ``.pt`` / ``.npy`` / ``.npz`` array."""
    p = Path(path)
    if p.suffix == ".txt":
        preds = [q for q in read_submission(p, num_points) if int(np.asarray(q.mask).sum()) >= min_points]
        if not preds:
            return Proposals.from_lists([], num_points)
        return Proposals.from_masks(np.stack([q.mask for q in preds]), source=f"file:{p.name}",
                                    scores=np.array([q.score for q in preds], np.float32))
    if p.suffix in (".pt", ".pth", ".npy", ".npz"):
        return read_mask_array(p, num_points, min_points)
    raise SASInputError(p, "unknown instance mask format (expected a benchmark .txt, or .pt / .npy / .npz masks)")
