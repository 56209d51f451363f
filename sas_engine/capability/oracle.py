"""Teachers measured with ground truth in rooms: the oracle capability table and the capability correlation.

Capability construction (paper 3.2) estimates each teacher's per-class accuracy *without* annotations. Two checks
of how well it does that need the accuracy it tries to estimate, measured where the teachers work, in rooms:

* :func:`in_room_iou`: each teacher's per-class IoU on the rendered frames of rooms with ground truth (pooled over
  the frames; a dense teacher's per-pixel argmax, a mask teacher's painted masks, exactly as capability scoring
  segments its images);
* :func:`oracle_table`: that IoU as a capability table (``capability.oracle``): capability-guided fusion fed the
  accuracies it tries to estimate (as far as a few rooms measure them: rare classes are seen in few frames);
* :func:`capability_correlation`: per teacher pair, Spearman's rho between the capability difference and the
  in-room IoU difference over the classes both are scored on: does the table rank the pair as the rooms do?

These rooms must be neither the validation rooms nor rooms a teacher learned from: the demo uses the ``teach``
split, on which no teacher trains (:mod:`sas_engine.synth.splits`).
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import torch

from ..errors import SASInputError
from ..labels import IGNORE, PROMPT_SCENE
from .scoring import _labels, _TextCache, teacher_logits
from .table import CapabilityTable


def in_room_iou(teachers: Sequence, scene_paths: Sequence, vocab_names: Sequence[str], text_encoder,
                frame_step: int = 2, template: str = PROMPT_SCENE, progress: bool = True) -> tuple[np.ndarray, dict]:
    """Per-teacher per-class pooled IoU float [T, K] on the ground-truth label images of the scenes' frames (every
    ``frame_step``-th frame), NaN for classes absent from that ground truth; and a provenance dict."""
    from tqdm import tqdm

    from ..io import load_scene

    k = len(vocab_names)
    cache = _TextCache()
    prompts = [template.format(n) for n in vocab_names]
    vocab = [cache.encode(getattr(t, "text_encoder", None) or text_encoder, prompts) for t in teachers]
    inter = np.zeros((len(teachers), k), np.int64)
    union = np.zeros((len(teachers), k), np.int64)
    gt_count = np.zeros(k, np.int64)
    frames_with = np.zeros(k, np.int64)
    frames = 0
    scenes = []
    for p in tqdm(list(scene_paths), desc="teachers in rooms", unit="room", disable=not progress):
        scene = load_scene(p)
        scenes.append(scene.scene_id)
        for i in range(0, len(scene.frames), max(1, int(frame_step))):
            fr = scene.frames[i]
            if fr.gt_labels is None:
                raise SASInputError(p, f"frame {fr.frame_id} has no ground-truth label image")
            gt = torch.as_tensor(np.asarray(fr.gt_labels).astype(np.int64))
            ok = gt != IGNORE
            here = np.bincount(gt[ok].numpy(), minlength=k)[:k]
            gt_count += here
            frames_with += here > 0
            frames += 1
            for ti, t in enumerate(teachers):
                enc = getattr(t, "text_encoder", None) or text_encoder
                logits, valid = teacher_logits(t, fr.color, vocab[ti], enc, template, cache)
                pred = _labels(logits, valid)
                if pred.shape != gt.shape:
                    raise SASInputError(p, f"frame {fr.frame_id}: label image {list(gt.shape)} does not match the "
                                           f"colour image {list(pred.shape)}")
                pv, gv = pred[ok], gt[ok]
                hit = pv == gv
                inter[ti] += np.bincount(gv[hit].numpy(), minlength=k)[:k]
                pc = np.bincount(pv[pv >= 0].numpy(), minlength=k)[:k]
                gc = np.bincount(gv.numpy(), minlength=k)[:k]
                union[ti] += pc + gc - np.bincount(gv[hit].numpy(), minlength=k)[:k]
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(gt_count[None] > 0, inter / np.maximum(union, 1), np.nan)
    return iou, {"scenes": scenes, "frames": frames, "frame_step": int(frame_step), "gt_pixels": gt_count.tolist(),
                 "frames_with_class": frames_with.tolist()}


def oracle_table(teachers: Sequence, scene_paths: Sequence, vocab_names: Sequence[str], text_encoder,
                 frame_step: int = 2, progress: bool = True) -> CapabilityTable:
    """The oracle capability table: :func:`in_room_iou` as capabilities (mode ``pooled``; no Linear weights)."""
    iou, prov = in_room_iou(teachers, scene_paths, vocab_names, text_encoder, frame_step, progress=progress)
    return CapabilityTable(scores=iou, teachers=[t.name for t in teachers], classes=list(vocab_names), mode="pooled",
                           scores_pooled=iou, scores_per_image=None,
                           image_counts=np.array(prov["frames_with_class"], np.int64),
                           provenance=[{"synthesizer": "oracle", **prov}])


def spearman(x, y) -> float:
    """Spearman's rank correlation of two 1-D arrays (average ranks for ties); NaN for fewer than 3 values or a
    constant input."""
    from scipy.stats import rankdata

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def capability_correlation(capability: np.ndarray, in_room: np.ndarray, teachers: Sequence[str],
                           classes: Sequence[str]) -> dict:
    """Per teacher pair ``"a|b"``: ``rho`` = Spearman(capability_a - capability_b, in-room IoU_a - IoU_b) over the
    classes where all four numbers are known, with the class names and both differences (for plots); and
    ``mean_rho`` over the pairs."""
    cap = np.asarray(capability, np.float64)
    room = np.asarray(in_room, np.float64)
    out: dict = {"pairs": {}}
    for a, b in itertools.combinations(range(len(teachers)), 2):
        dc, dr = cap[a] - cap[b], room[a] - room[b]
        ok = np.isfinite(dc) & np.isfinite(dr)
        out["pairs"][f"{teachers[a]}|{teachers[b]}"] = {
            "rho": spearman(dc[ok], dr[ok]), "classes": [classes[k] for k in np.flatnonzero(ok)],
            "capability_diff": [round(float(v), 4) for v in dc[ok]],
            "in_room_diff": [round(float(v), 4) for v in dr[ok]]}
    rhos = [v["rho"] for v in out["pairs"].values() if np.isfinite(v["rho"])]
    out["mean_rho"] = float(np.mean(rhos)) if rhos else float("nan")
    return out
