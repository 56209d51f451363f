"""The paper's Table 3 on the synthetic world, end to end from a clean store (``sas ablate``).

Rows: each single teacher's 2D fusion, Add, Linear, capability-guided SAS fusion (2D), and the distilled 3D student
trained (a) with the point cosine loss only (OpenScene's stage 1), (b) with the superpoint loss added (SAS stage 1),
(c) then with temporal-ensembling self-distillation (SAS stage 2, a separate run from (b)'s checkpoint, as the release
does). Every stage is cached in the store or resumes from its checkpoint, so an interrupted run continues.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from .pipeline import PipelineConfig, ensure_student, run_split
from .store import ArtefactStore, atomic_write

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class AblateConfig:
    """Settings of the ablation (defaults sized for 2 CPU cores, well under 45 minutes)."""

    train_split: str = "train"
    """Synthetic split the students are distilled on."""
    val_split: str = "val"
    """Synthetic split every row is evaluated on (never trained on)."""
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    """2D stages: teachers, capability synthesizer, tau..."""
    model: str = "mink18a_slim"
    """Student network preset."""
    epochs_stage1: int = 8
    """Stage-1 epochs of rows (a) and (b) (paper 70, on 1201 ScanNet scenes)."""
    epochs_stage2: int = 4
    """Stage-2 epochs of row (c) (paper 30)."""
    batch_size: int = 2
    """Scenes per iteration."""
    lr: float = 1e-3
    """Initial learning rate. The paper's 1e-4 is for ~10k iterations; 14 scenes x 8 epochs is ~56 iterations."""
    lr_end: float = 1e-4
    """Final learning rate (linear decay)."""
    alpha: float = 0.99
    """Stage-2 EMA factor. The release's 0.9999 assumes thousands of visits per scene; here each scene is seen ~10 times."""
    seed: int = 0
    """Seed of the students."""


ROWS_2D = ("fused.{t0}", "fused.{t1}", "fused.add", "fused.linear", "fused.sas")
RUNS = (("stage1_point", False, 0), ("stage1_superpoint", True, 0), ("stage2_selfdistill", True, 1))
"""(run name, superpoint loss, stage-2 run) of the three 3D rows."""


def _train_student(name, use_sp, stage2, cfg: AblateConfig, store, train, val, text, runs_dir, device) -> Path:
    from .distill.trainer import DistillConfig, DistillTrainer

    init = str(runs_dir / "stage1_superpoint" / "best.pt") if stage2 else ""
    dcfg = DistillConfig(run=name, model=cfg.model, out_channels=int(train[0].target.shape[1]),
                         epochs_stage1=0 if stage2 else cfg.epochs_stage1, epochs_stage2=cfg.epochs_stage2 if stage2 else 0,
                         batch_size=cfg.batch_size, lr=cfg.lr, lr_end=cfg.lr_end, use_superpoint=use_sp,
                         alpha=cfg.alpha, seed=cfg.seed, val_every=5, init_checkpoint=init)
    trainer = DistillTrainer(dcfg, train, val, text, runs_dir, store, device=device)
    trainer.fit()
    return runs_dir / name / "best.pt"


def run_ablation(store: ArtefactStore, cfg: AblateConfig, out_dir: Path, runs_dir: Optional[Path] = None,
                 export_student: Optional[Path] = None) -> dict:
    """Run every stage (cached / resumable) and write ``ablation.md``, ``ablation.json`` and plots into ``out_dir``."""
    from .distill.data import load_split_scenes
    from .eval.evaluate import evaluate_sources, store_source
    from .eval.report import write_report
    from .io import load_scene
    from .pipeline import vocabulary_text
    from .synth import ensure_split

    t0 = time.time()
    timings = {}
    dev = cfg.pipeline.device
    runs_dir = Path(runs_dir or store.root / "runs")
    train_paths, val_paths = ensure_split(cfg.train_split), ensure_split(cfg.val_split)
    timings["synthetic_world_s"] = round(time.time() - t0, 1)
    t = time.time()
    pcfg = dataclasses.replace(cfg.pipeline)
    run_split(store, train_paths + val_paths, pcfg, student=False)
    timings["teachers_fusion_capability_s"] = round(time.time() - t, 1)
    train = load_split_scenes(store, train_paths, "fused.sas")
    val = load_split_scenes(store, val_paths, "fused.sas")
    text = vocabulary_text("scannet20", pcfg)
    ckpts = {}
    for name, use_sp, stage2 in RUNS:
        t = time.time()
        ckpts[name] = _train_student(name, use_sp, stage2, cfg, store, train, val, text, runs_dir, dev)
        timings[f"train_{name}_s"] = round(time.time() - t, 1)
    t = time.time()
    scenes = [load_scene(p) for p in val_paths]
    for sc in scenes:
        for name, ck in ckpts.items():
            ensure_student(store, sc, pcfg, checkpoint=ck, name=f"abl_{name}")
    timings["inference_s"] = round(time.time() - t, 1)
    t0n, t1n = pcfg.teachers[0], pcfg.teachers[1]
    rows = [r.format(t0=t0n, t1=t1n) for r in ROWS_2D] + [f"pred3d.abl_{n}" for n, _, _ in RUNS]
    results = evaluate_sources(scenes, [(r, store_source(store, r)) for r in rows], "scannet20", text,
                               meta={"config": _jsonable(cfg), "timings": timings})
    timings["total_s"] = round(time.time() - t0, 1)
    results["meta"]["timings"] = timings
    write_report(results, out_dir, title="Ablation on the synthetic validation scenes (paper Table 3)",
                 stem="ablation")
    if export_student is not None:
        export_half(ckpts["stage2_selfdistill"], export_student)
    return results


def export_half(src: Path, dst: Path) -> Path:
    """Copy a trainer checkpoint as a float16 inference-only file (weights + config; no optimiser state)."""
    ck = torch.load(src, map_location="cpu", weights_only=True)
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in ck["state_dict"].items()}
    obj = {"version": ck["version"], "config": ck["config"], "state_dict": sd, "epoch": ck["epoch"],
           "best": ck["best"], "log": ck["log"]}
    return atomic_write(dst, lambda f: torch.save(obj, f))


def _jsonable(cfg) -> dict:
    from .config import config_dict

    return config_dict(cfg)
