"""The distillation trainer: stage 1 (point + superpoint cosine) then stage 2 (temporal-ensembling self-distillation).

Schedule: ``epochs_stage1`` epochs of stage 1, then ``epochs_stage2`` epochs with the stage-2 losses added (the paper's
70 + 30); stage 2 can also run as a separate run that starts from a stage-1 checkpoint (``init_checkpoint``).
Optimiser Adam, lr decayed linearly from ``lr`` to ``lr_end`` over all iterations (no 10x param-group quirk).

Determinism and resume: the data order and the augmentation of epoch e come from ``seed + e`` only, and a checkpoint
(model, optimiser, epoch, iteration, best score, per-scene histories in the store) is written atomically after every
epoch, so a killed run restarted with the same config continues from its last finished epoch and reaches the same
weights as an uninterrupted run.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel, each rank trains
on its static share of the scenes (scene i belongs to rank i % world_size, shuffled per epoch within the share), and
rank 0 alone writes checkpoints; each rank writes the stage-2 histories of its own scenes.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from ..config import config_dict
from ..errors import SASInputError
from ..geometry.voxelize import AugmentConfig
from ..scene import geometry_digest
from ..store import ArtefactStore, atomic_write
from .data import DistillScene
from .infer import COLOR_INPUT_CHANNELS, batch_voxels, forward_voxels, infer_points, voxel_colors
from .losses import class_balance_weights, ema_update, stage1_loss, stage2_loss

log = logging.getLogger(__name__)
CKPT_VERSION = 1


@dataclass
class DistillConfig:
    """Configuration of one distillation run."""

    run: str = "student"
    """Run name: checkpoints go to ``<out_dir>/<run>/``, histories to store artefacts ``history.<run>``."""
    model: str = "mink18a_slim"
    """Student preset in :data:`sas_engine.models.mink_unet.PRESETS` (``mink18a`` as in the paper, ``mink18a_slim`` for CPU)."""
    out_channels: int = 384
    """Feature dimension of the student's output (= the teachers' text space: 384 MiniLM, 512 LSeg, 768 OpenSeg)."""
    voxel_size: float = 0.02
    """Voxel edge in metres (2 cm indoor, 5 cm outdoor)."""
    epochs_stage1: int = 70
    """Epochs of stage 1 (paper: 70)."""
    epochs_stage2: int = 30
    """Epochs with the stage-2 self-distillation losses added (paper: 30). 0 disables stage 2."""
    batch_size: int = 2
    """Scenes per iteration (paper: 12 indoor / 8 outdoor on GPUs)."""
    lr: float = 1e-4
    """Initial learning rate (Adam)."""
    lr_end: float = 1e-5
    """Learning rate reached linearly at the last iteration."""
    use_superpoint: bool = True
    """Stage 1 with the superpoint targets and loss (SAS); False = OpenScene's plain point cosine loss."""
    alpha: float = 0.9999
    """EMA factor of the stage-2 feature history (release value; the paper leaves it open)."""
    temperature: float = 0.1
    """Temperature of the stage-2 cross-entropy logits (cosine / temperature)."""
    history_tta: int = 0
    """Augmented passes averaged into the initial stage-2 history (rotation / scale / flips, as test-time
    augmentation). 0 = the stage-1 model's plain output (the paper's wording); n > 0 starts the temporal ensemble
    from an ensemble of n + 1 views, so the first pseudo labels are already those of several augmentations."""
    history_unit: bool = False
    """Keep the stage-2 history as an EMA of L2-normalised outputs, so every view weighs the same, as in the cosine
    predictions (False = of the raw outputs, whose norms vary by orders of magnitude between points and views)."""
    stage2_weight: float = 1.0
    """Weight of the stage-2 cross-entropy terms added to the stage-1 cosine terms (paper: 1)."""
    stage1_weight_stage2: float = 1.0
    """Weight of the stage-1 terms (cosine to the fused 2D targets, and the label-set KD term) during the stage-2
    epochs (paper: 1, both losses). 0 trains stage 2 on the self-distillation terms alone, so the 2D targets the
    student has already outgrown no longer pull it back."""
    pseudo_keep: float = 1.0
    """Fraction of the stage-2 pseudo labels counted, per pseudo class, the most confident first (margin between
    the history's best and second-best class score). 1 counts all of them, as the paper does; lower values keep a
    weak stage-1 model from training on its own least certain guesses."""
    stage2_soft_temperature: float = 0.0
    """0 = the stage-2 terms are cross-entropies to hard pseudo labels (the history's argmax; the paper's loss).
    > 0 = KL divergences to the history's class distribution, its cosines to the label set's text at this
    temperature (the student's side stays at ``temperature``; lower sharpens the targets), on every point and
    superpoint (:func:`sas_engine.distill.losses.stage2_loss`; ``pseudo_keep`` then unused)."""
    augment: bool = True
    """OpenScene's augmentation (rotation, scale, flips) during training."""
    crop_points: int = 0
    """When > 0, each training scene is cut to the ``crop_points`` points nearest (horizontally) to a random point of
    it, a floor-to-ceiling disc, before voxelisation (0 = whole scenes, as OpenScene). On CPU this buys many more
    optimiser steps for the same time. Validation and inference always see whole scenes."""
    seed: int = 0
    """Seed of initialisation, data order and augmentation."""
    val_every: int = 5
    """Validate (eval mode, mIoU) every n epochs and at the last epoch; 0 = only at the end."""
    checkpoint_every: int = 1
    """Write ``last.pt`` (and the stage-2 histories) every n epochs and at the last one; a killed run resumes from
    the newest. Raise it when epochs are short (cropped scenes): a checkpoint with Adam state is ~50 MB."""
    amp: bool = True
    """bfloat16 autocast when running on CUDA (ignored on CPU)."""
    init_checkpoint: str = ""
    """Start from these weights (e.g. a stage-1 run's best.pt) instead of random initialisation. A geometry-only
    checkpoint may start a colour student: its stem is widened with zero colour weights, so training begins from the
    same function (:func:`sas_engine.models.checkpoint.widen_stem_for_color`)."""
    input_color: bool = False
    """Feed each voxel's mean point colour to the network (OpenScene's ``input_color`` option; the paper and
    OpenScene's released models read geometry only, False). The teachers saw colour; a geometry-only student cannot
    tell a picture from the wall it hangs on, or a shower curtain from a door. Training jitters the colours."""
    kd_weight: float = 0.0
    """Weight of a stage-1 knowledge-distillation term over the label set (:func:`sas_engine.distill.losses.
    label_kd_loss`, at ``temperature``), added to the point term; 0 = the paper's cosine losses only. The label set's
    text is already what stage 2's pseudo labels use; no annotation is read."""
    class_balance: float = 0.0
    """Exponent p of the stage-1 class balancing: a point whose fused 2D target votes class k (argmax against the
    label set's text, no annotation) weighs ``(share of k)^-p``, capped at 10x the lightest class, mean weight 1
    (:func:`sas_engine.distill.losses.class_balance_weights`). 0 = every point weighs the same (the paper's loss).
    With a plain mean, classes a few percent of the points (refrigerator, sink, shower curtain) were pulled to their
    large neighbours (wall, cabinet, door) and never predicted."""


def crop_disc(points: np.ndarray, max_points: int, rng: np.random.Generator) -> Optional[np.ndarray]:
    """Sorted indices of the ``max_points`` points horizontally nearest to a random point of ``points`` [N, 3]
    (a vertical cylinder through the room), or None when the scene is small enough or cropping is off."""
    n = points.shape[0]
    if max_points <= 0 or n <= max_points:
        return None
    c = points[int(rng.integers(n)), :2]
    d = ((points[:, :2] - c) ** 2).sum(1)
    return np.sort(np.argpartition(d, max_points - 1)[:max_points])


def jitter_colors(colors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training colour augmentation: float32 [N, 3] in [0, 1] from uint8 RGB, with one random gain (0.8-1.2) and
    offset (+-0.08) per channel and scene (lighting and white balance) and per-point noise (sigma 0.02)."""
    c = np.asarray(colors, dtype=np.float32) / 255.0
    c = c * rng.uniform(0.8, 1.2, size=3).astype(np.float32) + rng.uniform(-0.08, 0.08, size=3).astype(np.float32)
    c = c + rng.normal(0.0, 0.02, size=c.shape).astype(np.float32)
    return np.clip(c, 0.0, 1.0)


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class DistillTrainer:
    """Trains a student on :class:`DistillScene` lists.

    Args:
        cfg: the run configuration.
        train: training scenes (fused targets + superpoints).
        val: validation scenes with ground truth labels (may be empty).
        class_text: float32 [K, C] L2-normalised text embeddings of the label set (stage-2 pseudo labels, validation).
        out_dir: folder of the run's checkpoints (``<out_dir>/<run>/last.pt`` and ``best.pt``).
        store: artefact store for the per-scene stage-2 histories.
        device: torch device.
        progress: show a progress bar over the run's iterations (rank 0 only).
    """

    def __init__(self, cfg: DistillConfig, train: list[DistillScene], val: list[DistillScene],
                 class_text: torch.Tensor, out_dir: str | Path, store: ArtefactStore, device: str = "cpu",
                 progress: bool = True):
        from ..models.mink_unet import build_model

        if not train:
            raise SASInputError(None, "no training scenes")
        self.cfg, self.train_scenes, self.val_scenes = cfg, train, val
        self.device = torch.device(device)
        self.text = torch.nn.functional.normalize(class_text.float(), dim=-1).to(self.device)
        self.run_dir = Path(out_dir) / cfg.run
        self.store = store
        self.rank, self.world = _dist_info()
        self.progress = progress and self.rank == 0
        self._bar = None
        torch.manual_seed(cfg.seed)
        in_ch = COLOR_INPUT_CHANNELS if cfg.input_color else 3
        self.model = build_model(cfg.model, in_channels=in_ch, out_channels=cfg.out_channels).to(self.device)
        if cfg.init_checkpoint:
            from ..io.files import torch_load
            from ..models.checkpoint import extract_state_dict, load_mink_checkpoint, widen_stem_for_color

            sd = extract_state_dict(torch_load(cfg.init_checkpoint, what="initial student checkpoint"),
                                    cfg.init_checkpoint)
            load_mink_checkpoint(self.model, widen_stem_for_color(sd, in_ch) if cfg.input_color else sd)
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.mine = [i for i in range(len(train)) if i % self.world == self.rank]
        self.iters_per_epoch = math.ceil(len(self.mine) / cfg.batch_size)
        self.total_iters = max(1, self.iters_per_epoch * (cfg.epochs_stage1 + cfg.epochs_stage2))
        self.epoch, self.iteration, self.best = 0, 0, -1.0
        self.history: dict[str, torch.Tensor] = {}
        self.log: list[dict] = []
        self.weights: dict[str, torch.Tensor] = {}
        self.class_weights: Optional[torch.Tensor] = None
        if cfg.input_color and any(s.colors is None for s in train):
            raise SASInputError(None, "input_color needs point colours; a training scene has none")
        if cfg.class_balance > 0:
            mine = [train[i] for i in self.mine]
            ws, self.class_weights = class_balance_weights([(s.target, s.valid) for s in mine], self.text.cpu(),
                                                           cfg.class_balance)
            self.weights = {s.scene_id: w for s, w in zip(mine, ws)}
            log.info("class-balance weights: %s", [round(float(v), 2) for v in self.class_weights])

    # -- schedule -------------------------------------------------------------------------------------------
    def lr_at(self, it: int) -> float:
        """Linear decay from lr to lr_end over all iterations."""
        t = min(1.0, it / max(1, self.total_iters - 1))
        return self.cfg.lr + (self.cfg.lr_end - self.cfg.lr) * t

    @property
    def total_epochs(self) -> int:
        return self.cfg.epochs_stage1 + self.cfg.epochs_stage2

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _ckpt(self) -> dict:
        return {"version": CKPT_VERSION, "config": config_dict(self.cfg), "state_dict": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "epoch": self.epoch, "iteration": self.iteration,
                "best": self.best, "log": self.log}

    def save(self, name: str = "last.pt") -> Path:
        obj = self._ckpt()
        return atomic_write(self.run_dir / name, lambda f: torch.save(obj, f))

    def try_resume(self) -> bool:
        """Continue from ``last.pt`` when it exists and was made by the same config. Returns True if resumed."""
        p = self.run_dir / "last.pt"
        if not p.exists():
            return False
        from ..io.files import torch_load

        ck = torch_load(p, what="student run checkpoint", map_location=self.device)
        # a field added to DistillConfig after the checkpoint was written counts as its default (old behaviour)
        saved = {**config_dict(DistillConfig()), **ck["config"]} if isinstance(ck.get("config"), dict) else None
        if ck.get("version") != CKPT_VERSION or saved != config_dict(self.cfg):
            raise SASInputError(p, "checkpoint was made by another config; use another --run name or delete it")
        self.model.load_state_dict(ck["state_dict"])
        self.opt.load_state_dict(ck["optimizer"])
        self.epoch, self.iteration, self.best, self.log = ck["epoch"], ck["iteration"], ck["best"], ck["log"]
        if self.cfg.epochs_stage1 < self.epoch < self.total_epochs:
            self._load_histories()  # a finished run needs no histories (they may belong to another run by now)
        log.info("resumed %s at epoch %d", p, self.epoch)
        return True

    def _hist_cfg(self) -> dict:
        return {"run": self.cfg.run, "config": config_dict(self.cfg)}

    def _save_histories(self) -> None:
        for i in self.mine:
            s = self.train_scenes[i]
            self.store.save(s.scene_id, f"history.{self.cfg.run}", {"history": self.history[s.scene_id].cpu(),
                            "epoch": self.epoch}, kind="history", config=self._hist_cfg(),
                            geometry=geometry_digest(s.points))

    def _load_histories(self) -> None:
        for i in self.mine:
            s = self.train_scenes[i]
            got = self.store.load(s.scene_id, f"history.{self.cfg.run}", kind="history", config=self._hist_cfg(),
                                  geometry=geometry_digest(s.points))
            if got is None or got["epoch"] != self.epoch:
                raise SASInputError(self.store.path(s.scene_id, f"history.{self.cfg.run}"),
                                    "stage-2 history missing or from another epoch; cannot resume stage 2")
            self.history[s.scene_id] = got["history"].to(self.device)

    def _init_histories(self) -> None:
        """History H initialised from the stage-1 model's output on each whole scene (unaugmented, or averaged over
        ``history_tta`` augmented passes as well)."""
        for i in tqdm(self.mine, desc="stage-2 history init", disable=not self.progress, leave=False):
            s = self.train_scenes[i]
            h = infer_points(self.model, s.points, self.cfg.voxel_size, device=self.device,
                             tta=self.cfg.history_tta, seed=self.cfg.seed, colors=s.colors).to(self.device)
            if self.cfg.history_unit:
                h = torch.nn.functional.normalize(h.float(), dim=-1).to(h.dtype)
            self.history[s.scene_id] = h

    # -- training ---------------------------------------------------------------------------------------------
    def _autocast(self):
        on = self.cfg.amp and self.device.type == "cuda"
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=on) if on else torch.autocast("cpu", enabled=False)

    def train_epoch(self) -> dict:
        cfg, e = self.cfg, self.epoch
        rng = np.random.default_rng(cfg.seed * 100003 + e)
        order = [self.mine[j] for j in rng.permutation(len(self.mine))]
        stage2 = e >= cfg.epochs_stage1
        self.net.train()
        sums: dict[str, float] = {}
        for start in range(0, len(order), cfg.batch_size):
            batch = [self.train_scenes[i] for i in order[start:start + cfg.batch_size]]
            seeds = [int(x) for x in rng.integers(0, 2**31 - 1, size=len(batch))]
            crops = [crop_disc(s.points, cfg.crop_points, rng) for s in batch]
            coords, inverses, _ = batch_voxels([s.points if c is None else s.points[c] for s, c in zip(batch, crops)],
                                               cfg.voxel_size, AugmentConfig() if cfg.augment else None, seeds)
            cols = None
            if cfg.input_color:
                pc = [s.colors if c is None else s.colors[c] for s, c in zip(batch, crops)]
                if cfg.augment:
                    pc = [jitter_colors(x, np.random.default_rng(sd)) for x, sd in zip(pc, seeds)]
                cols = voxel_colors(pc, inverses, coords.shape[0])
            for g in self.opt.param_groups:
                g["lr"] = self.lr_at(self.iteration)
            with self._autocast():
                out = forward_voxels(self.net, coords, self.device, cols)
            out = out.float()
            loss, parts = 0.0, {}
            for s, inv, crop in zip(batch, inverses, crops):
                f3d = out[inv.to(self.device)]
                sp, tgt, valid, w = s.superpoints, s.target, s.valid, self.weights.get(s.scene_id)
                if crop is not None:
                    ci = torch.from_numpy(crop)
                    sp, tgt, valid = sp[ci], tgt[ci], valid[ci]
                    w = None if w is None else w[ci]
                sp, tgt, valid = sp.to(self.device), tgt.to(self.device), valid.to(self.device)
                l, p = stage1_loss(f3d, tgt, valid, sp, use_superpoint=cfg.use_superpoint,
                                   weight=None if w is None else w.to(self.device), text=self.text,
                                   kd_weight=cfg.kd_weight, temperature=cfg.temperature)
                if stage2:
                    hist = self.history[s.scene_id]
                    rows = slice(None) if crop is None else torch.from_numpy(crop).to(hist.device)
                    view = torch.nn.functional.normalize(f3d, dim=-1) if cfg.history_unit else f3d
                    hist[rows] = ema_update(hist[rows], view, cfg.alpha)
                    l2, p2 = stage2_loss(f3d, sp, self.text, hist[rows], temperature=cfg.temperature,
                                         keep=cfg.pseudo_keep, soft_temperature=cfg.stage2_soft_temperature)
                    l, p = cfg.stage1_weight_stage2 * l + cfg.stage2_weight * l2, {**p, **p2}
                loss = loss + l / len(batch)
                for k, v in p.items():
                    parts[k] = parts.get(k, 0.0) + v / len(batch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.iteration += 1
            parts["loss"] = float(loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            if self._bar is not None:
                self._bar.update(1)
                self._bar.set_postfix(epoch=f"{e + 1}/{self.total_epochs}", stage=2 if stage2 else 1,
                                      loss=f"{parts['loss']:.4f}", best=f"{self.best:.1f}")
        n = max(1, len(range(0, len(order), cfg.batch_size)))
        return {k: v / n for k, v in sums.items()}

    @torch.no_grad()
    def validate(self) -> dict:
        """mIoU of the student on the validation scenes, in eval mode (the OpenScene pitfall avoided)."""
        from ..eval.metrics import confusion_matrix, miou

        k = self.text.shape[0]
        conf = None
        for s in self.val_scenes:
            if s.labels is None:
                continue
            f = infer_points(self.model, s.points, self.cfg.voxel_size, device=self.device,
                             colors=s.colors).float().to(self.device)
            pred = (torch.nn.functional.normalize(f, dim=-1) @ self.text.T).argmax(1).cpu().numpy()
            c = confusion_matrix(pred, s.labels, k)
            conf = c if conf is None else conf + c
        if conf is None:
            return {}
        return {"miou": 100.0 * miou(conf)}

    def fit(self, on_epoch: Optional[Callable[[dict], None]] = None) -> dict:
        """Train until the configured number of epochs, resuming if possible. Returns the last log entry."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.try_resume()
        self._bar = tqdm(total=self.total_iters, initial=self.iteration, desc=f"distill {self.cfg.run}",
                         unit="it", disable=not self.progress)
        try:
            self._fit(on_epoch)
        finally:
            self._bar.close()
            self._bar = None
        if self.rank == 0 and not (self.run_dir / "best.pt").exists():
            self.save("best.pt")
        return self.log[-1] if self.log else {}

    def _fit(self, on_epoch) -> None:
        while self.epoch < self.total_epochs:
            if self.epoch == self.cfg.epochs_stage1 and self.cfg.epochs_stage2 > 0 and not self.history:
                self._init_histories()
            stats = self.train_epoch()
            self.epoch += 1
            last = self.epoch == self.total_epochs
            if self.val_scenes and (last or (self.cfg.val_every and self.epoch % self.cfg.val_every == 0)):
                stats.update(self.validate())
            stats["epoch"] = self.epoch
            self.log.append(stats)
            keep = last or self.epoch % max(1, self.cfg.checkpoint_every) == 0
            if self.history and keep:
                self._save_histories()
            if self.rank == 0:
                if stats.get("miou", -1.0) > self.best:
                    self.best = stats["miou"]
                    self.save("best.pt")
                if keep:
                    self.save("last.pt")
            if on_epoch:
                on_epoch(stats)
            log.info("epoch %d: %s", self.epoch, {k: round(v, 4) for k, v in stats.items()})
