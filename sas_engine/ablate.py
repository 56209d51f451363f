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

from .io.files import torch_load
from .pipeline import PipelineConfig, ensure_student, run_split
from .store import ArtefactStore, atomic_write

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class AblateConfig:
    """Settings of the ablation. Every row is reported twice: on all points and on the points the 2D fusion covers
    (``ablation_covered.md``); checkpoints are picked on ``select_split``, never on ``val_split``."""

    train_split: str = "train+distill"
    """Synthetic splits the students are distilled on, joined by ``+`` (default: the 14 ``train`` rooms and the 64
    ``distill`` rooms; distillation needs no labels, so it may read many more rooms than the teachers)."""
    select_split: str = "teach"
    """Split whose first ``select_rooms`` rooms the trainer validates on (single pass, eval mode) to pick each row's
    best checkpoint. It is never reported and never trained on; ``val`` plays no part in any choice."""
    select_rooms: int = 6
    """Rooms of ``select_split`` used for checkpoint selection."""
    val_split: str = "val"
    """Synthetic split every row is reported on, read once at the end (never trained or selected on)."""
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    """2D stages: teachers, capability synthesizer, tau..."""
    model: str = "mink18a_slim"
    """Student network preset."""
    voxel_size: float = 0.05
    """Student voxel edge (m). The synthetic rooms' points lie ~4 cm apart, so 5 cm voxels hold about one point
    each, like ScanNet's 2 cm voxels on its denser scans."""
    input_color: bool = True
    """Students read each voxel's mean colour (:class:`DistillConfig` ``input_color``; the paper's students read
    geometry only: ``--no-input-color``)."""
    class_balance: float = 0.5
    """Class balancing of the stage-1 losses by the fused targets' own votes (:class:`DistillConfig`
    ``class_balance``; 0 = the paper's plain mean)."""
    kd_weight: float = 1.0
    """Stage-1 knowledge distillation over the label set (:class:`DistillConfig` ``kd_weight``; 0 = the paper's
    cosine losses only)."""
    crop_points: int = 10_000
    """Training crops (points per scene per step, see :class:`DistillConfig`): on 2 CPU cores the student needs
    thousands of optimiser steps, and whole-scene batches allowed only a few hundred in the budget."""
    epochs_stage1: int = 50
    """Stage-1 epochs of rows (a) and (b); an epoch is 39 iterations over the 78 training rooms (paper: 70 epochs
    over 1201 ScanNet scenes at batch 8, ~10k iterations). The shipped report and student: these 50 epochs
    (1950 steps, lr 1e-3) warm-started through ``init_runs`` from a first 1,170-step run (README, "The distilled
    student"). From scratch they are far too few: the previous student needed about 9000 steps."""
    epochs_stage2: int = 9
    """Stage-2 epochs of row (c) (paper 30): 351 steps, each training room seen 9 times, validated every
    ``val_every_stage2`` epochs on the selection rooms (its best checkpoint is row (c)). The shipped student: these 9,
    best at epoch 6 on the 6 ``teach`` rooms (README, "Stage 2 re-examined")."""
    batch_size: int = 2
    """Scenes per iteration."""
    lr: float = 3e-3
    """Initial learning rate (Adam). The paper's 1e-4 is for ~10k iterations on GPUs."""
    lr_end: float = 1e-4
    """Final learning rate (linear decay)."""
    lr_stage2: float = 1e-4
    """Learning rate of the stage-2 run (c), decaying to ``lr_end`` (constant when equal). It starts from (b)'s best
    weights, annealed to ``lr_end``: the paper's single 70 + 30 schedule is well into its decay when stage 2 begins.
    Restarting higher (3e-4) lost ~3 points of TTA mIoU on held-out rooms."""
    alpha: float = 0.99
    """Stage-2 EMA factor. The release's 0.9999 assumes thousands of visits per scene; here each scene is seen
    10 times in stage 2, so the history stays close to its start, an ensemble of 5 augmented views."""
    stage2_weight: float = 1.0
    """Weight of row (c)'s cross-entropy terms against its cosine terms (:class:`DistillConfig`; paper: 1)."""
    stage1_weight_stage2: float = 1.0
    """Weight of the stage-1 terms in row (c)'s stage-2 epochs (:class:`DistillConfig`; paper: 1)."""
    pseudo_keep: float = 0.1
    """Fraction of row (c)'s pseudo labels counted per class, most confident first (:class:`DistillConfig`). Chosen on
    the 6 ``teach`` rooms from 1 / 0.5 / 0.25 / 0.1 (best single-pass mIoU there 41.88 / 43.23 / 43.82 / 44.00,
    each at epoch 6, from stage 1's 42.67; README, "Stage 2 re-examined"); 0.5 before."""
    stage2_soft_temperature: float = 0.0
    """Row (c)'s stage-2 targets: 0 = hard pseudo labels, > 0 = the history's class distribution at this
    temperature (:class:`DistillConfig`)."""
    history_tta: int = 4
    """Augmented passes in row (c)'s initial history (:class:`DistillConfig`)."""
    history_unit: bool = True
    """Row (c)'s history as an EMA of L2-normalised outputs (:class:`DistillConfig`).

    These three were chosen on 6 held-out ``teach`` rooms, never on ``val``. From the 33.2-mIoU stage-1 student,
    280 stage-2 steps with every pseudo label (the paper's loss) scored 27.5 there (TTA 29.6), with the confident
    half 28.7 (33.4), without the CE terms 28.1 (32.1), from 29.1 (33.9). From the 36.2 student, the confident half
    over the raw-output history still lost ~3 TTA points (39.4 -> 36.7-36.9); a unit history started from 5 views
    kept them (39.1, single pass 34.7 vs 35.2). A stage-2 weight of 0.25 tied with 1 (39.1 / 34.6)."""
    val_every: int = 10
    """Validate on the ``select_split`` rooms (whole rooms, eval mode, single pass) every n epochs and at each run's
    end; each row's best checkpoint there is the one reported and exported."""
    val_every_stage2: int = 3
    """Validation (and checkpoint) interval of row (c)'s stage-2 run, in epochs; 0 = ``val_every``. Stage 2 is
    short, so its curve needs a finer step than stage 1's; a separate field keeps the stage-1 runs' configs (and so
    their resumption) unchanged when it is set."""
    tta: int = 4
    """Test-time augmentation for the report's extra ``*_tta`` 3D rows: this many randomly rotated / scaled / flipped
    passes averaged with the plain one (OpenScene's protocol, 5 passes in all). 0 = single-pass rows only. The
    trainer's validation, and so the choice of best checkpoints, is always single-pass."""
    held_out_split: str = "tune"
    """A second reported split (``ablation_held_out.md``), scored like ``val`` with every 2D and 3D row: no model
    trains on it and no checkpoint or setting of the student is chosen on it, so it shows whether the ordering on
    ``val`` holds on other rooms. '' = off."""
    held_out_rooms: int = 6
    """Rooms of ``held_out_split`` evaluated."""
    parallel: int = 2
    """Train rows (a) and (b), which are independent, in this many processes at once on CPU, and run the 2D stages
    on that many scene worker processes (:func:`sas_engine.pipeline.run_split`). 1 = one after the other."""
    threads_per_run: int = 1
    """torch CPU threads of each student training on CPU. The small sparse ops do not scale: a cropped step took
    0.80 s on 1 thread and 1.03 s on 2 (2-core machine), so two 1-thread runs side by side beat everything else."""
    seed: int = 0
    """Seed of the students."""
    train_only: bool = False
    """Train the student rows (each checkpoint picked on ``select_split``) and stop: no report is written and
    ``val_split`` and ``held_out_split`` are not read (their rooms are not even generated). For choosing settings on
    the selection rooms; run again without it to report."""
    init_runs: str = ""
    """Warm start: rows (a) and (b) begin from ``<init_runs>/<row>/best.pt`` of an earlier ablation's runs folder,
    with a fresh learning-rate schedule, instead of random weights ('' = from scratch). Lets a budget that does not
    fit one sitting be spent in chained runs; the report's curves continue from the earlier run's best step."""


ROWS_2D = ("fused.add", "fused.linear", "fused.sas")
"""The combined 2D rows, after one ``fused.<teacher>`` row per teacher."""
RUNS = (("stage1_point", False, 0), ("stage1_superpoint", True, 0), ("stage2_selfdistill", True, 1))
"""(run name, superpoint loss, stage-2 run) of the three 3D rows."""
STAGE2_FIELDS = ("stage2_weight", "stage1_weight_stage2", "pseudo_keep", "stage2_soft_temperature", "history_tta",
                 "history_unit")
"""Fields that :class:`AblateConfig` passes under the same name to row (c)'s :class:`DistillConfig` only."""


def _distill_config(name: str, use_sp: bool, stage2: bool, cfg: AblateConfig, out_channels: int, runs_dir: Path):
    from .distill.trainer import DistillConfig

    if stage2:
        init = str(runs_dir / "stage1_superpoint" / "best.pt")
        extra = {f: getattr(cfg, f) for f in STAGE2_FIELDS}
        every = cfg.val_every_stage2 or cfg.val_every
    else:
        init = str(Path(cfg.init_runs) / name / "best.pt") if cfg.init_runs else ""
        extra = {}
        every = cfg.val_every
    return DistillConfig(run=name, model=cfg.model, out_channels=out_channels, voxel_size=cfg.voxel_size,
                         epochs_stage1=0 if stage2 else cfg.epochs_stage1,
                         epochs_stage2=cfg.epochs_stage2 if stage2 else 0, batch_size=cfg.batch_size,
                         lr=cfg.lr_stage2 if stage2 else cfg.lr,
                         lr_end=cfg.lr_end, use_superpoint=use_sp, alpha=cfg.alpha, crop_points=cfg.crop_points,
                         seed=cfg.seed, val_every=every, checkpoint_every=every,
                         init_checkpoint=init, input_color=cfg.input_color, class_balance=cfg.class_balance,
                         kd_weight=cfg.kd_weight, **extra)


def _train_student(dcfg, store, train, val, text, runs_dir, device, progress: bool = True) -> Path:
    from .distill.trainer import DistillTrainer

    DistillTrainer(dcfg, train, val, text, runs_dir, store, device=device, progress=progress).fit()
    return runs_dir / dcfg.run / "best.pt"


def _train_student_process(dcfg, store_root: str, train_paths, select_paths, text, runs_dir, threads: int,
                           progress: bool) -> Path:
    """One stage-1 row in a worker process (spawned: it loads its own copy of the scenes)."""
    from .distill.data import load_split_scenes

    torch.set_num_threads(threads)
    store = ArtefactStore(store_root)
    train = load_split_scenes(store, train_paths, "fused.sas", progress=False)
    select = load_split_scenes(store, select_paths, None, progress=False)
    return _train_student(dcfg, store, train, select, text, Path(runs_dir), "cpu", progress)


def _train_rows(cfg: AblateConfig, store, train_paths, select_paths, train, select, text, runs_dir: Path,
                device: str, timings: dict) -> dict:
    """Checkpoints of the three 3D rows; rows (a) and (b) in parallel processes when configured (CPU only)."""
    out_ch = int(train[0].target.shape[1])
    dcfgs = {name: _distill_config(name, sp, st2, cfg, out_ch, runs_dir) for name, sp, st2 in RUNS}
    stage1 = [name for name, _, st2 in RUNS if not st2]
    cpu = torch.device(device).type == "cpu"
    ckpts = {}
    if cfg.parallel > 1 and cpu:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        t = time.time()
        with ProcessPoolExecutor(min(cfg.parallel, len(stage1)), mp_context=mp.get_context("spawn")) as pool:
            futs = {name: pool.submit(_train_student_process, dcfgs[name], str(store.root),
                                      [str(p) for p in train_paths], [str(p) for p in select_paths], text,
                                      str(runs_dir), max(1, cfg.threads_per_run), name == stage1[-1])
                    for name in stage1}
            ckpts = {name: f.result() for name, f in futs.items()}
        timings["train_stage1_rows_parallel_s"] = round(time.time() - t, 1)
    before = torch.get_num_threads()
    if cpu:
        torch.set_num_threads(max(1, cfg.threads_per_run))
    try:
        for name, _, _ in RUNS:
            if name not in ckpts:
                t = time.time()
                ckpts[name] = _train_student(dcfgs[name], store, train, select, text, runs_dir, device)
                timings[f"train_{name}_s"] = round(time.time() - t, 1)
    finally:
        torch.set_num_threads(before)
    return {name: ckpts[name] for name, _, _ in RUNS}


def split_paths(spec: str, first: Optional[int] = None) -> list[Path]:
    """Scene folders of ``spec``: a synthetic split name, optionally sliced (``tiny[1:]``, ``distill[:40]``), or
    several joined by ``+``; ``first`` keeps each split's first rooms before slicing. Missing rooms are generated."""
    import re

    from .synth import ensure_split

    out = []
    for part in spec.split("+"):
        m = re.fullmatch(r"\s*([A-Za-z0-9_]+)\s*(?:\[(\d*):(\d*)\])?\s*", part)
        if not m:
            raise ValueError(f"bad split list {spec!r}: expected name, name[a:b] or name+name")
        lo, hi = (int(v) if v else None for v in (m.group(2), m.group(3)))
        out += ensure_split(m.group(1), first=first)[lo:hi]
    return out


def run_ablation(store: ArtefactStore, cfg: AblateConfig, out_dir: Path, runs_dir: Optional[Path] = None,
                 export_student: Optional[Path] = None, export_row: str = "stage2_selfdistill") -> dict:
    """Run every stage (cached / resumable) and write ``ablation.md``, ``ablation.json`` and plots into ``out_dir``
    (plus ``ablation_covered.*``: the same rows on the points the 2D fusion covers, and ``ablation_held_out*`` for
    ``held_out_split``).

    ``export_student``: also write row ``export_row``'s best checkpoint there as a float16 inference file.
    """
    if export_row not in {n for n, _, _ in RUNS}:
        raise ValueError(f"unknown ablation row {export_row!r}; rows: {', '.join(n for n, _, _ in RUNS)}")
    from .distill.data import load_split_scenes
    from .pipeline import vocabulary_text

    t0 = time.time()
    timings = {}
    dev = cfg.pipeline.device
    runs_dir = Path(runs_dir or store.root / "runs")
    train_paths = split_paths(cfg.train_split)
    val_paths = [] if cfg.train_only else split_paths(cfg.val_split)
    select_paths = split_paths(cfg.select_split, first=cfg.select_rooms)
    held = bool(cfg.held_out_split) and cfg.held_out_rooms > 0 and not cfg.train_only
    held_paths = split_paths(cfg.held_out_split, first=cfg.held_out_rooms) if held else []
    overlap = {p.name for p in train_paths} & {p.name for p in val_paths + select_paths + held_paths}
    if overlap:
        raise ValueError(f"rooms both trained on and selected / reported on: {sorted(overlap)[:5]}")
    timings["synthetic_world_s"] = round(time.time() - t0, 1)
    t = time.time()
    pcfg = dataclasses.replace(cfg.pipeline)
    run_split(store, train_paths + val_paths + held_paths, pcfg, student=False, workers=cfg.parallel)
    timings["teachers_fusion_capability_s"] = round(time.time() - t, 1)
    train = load_split_scenes(store, train_paths, "fused.sas")
    select = load_split_scenes(store, select_paths, None)
    text = vocabulary_text("scannet20", pcfg)
    ckpts = _train_rows(cfg, store, train_paths, select_paths, train, select, text, runs_dir, dev, timings)
    del train, select
    if export_student is not None:
        export_half(ckpts[export_row], export_student)
    if cfg.train_only:
        return {"checkpoints": {k: str(v) for k, v in ckpts.items()}, "curves": training_curves(runs_dir),
                "timings": timings, "selection": f"first {len(select_paths)} '{cfg.select_split}' rooms"}
    t = time.time()
    title = "Ablation on the synthetic validation scenes (paper Table 3)"
    meta = {"config": _jsonable(cfg), "timings": timings, "train_rooms": len(train_paths),
            "selection": f"best checkpoints picked on the first {len(select_paths)} '{cfg.select_split}' rooms"}
    results = _report_split(store, val_paths, pcfg, ckpts, text, cfg.tta, out_dir, "ablation", title, meta)
    timings["inference_and_eval_s"] = round(time.time() - t, 1)
    timings["total_s"] = round(time.time() - t0, 1)
    results["meta"]["curves"] = training_curves(runs_dir)
    if held:
        res = _report_split(store, held_paths, pcfg, ckpts, text, cfg.tta, out_dir, "ablation_held_out",
                            f"Every row on {len(held_paths)} held-out '{cfg.held_out_split}' rooms",
                            {"split": cfg.held_out_split, "note": "never trained on; nothing is chosen on them"})
        results["meta"]["held_out"] = {"split": cfg.held_out_split, "rooms": len(held_paths),
                                       "miou": {r: round(v["miou"], 2) for r, v in res["sources"].items()},
                                       "miou_covered": res["meta"]["covered_miou"]}
    _write(results, out_dir, "ablation", title, plots=True)
    write_curves_plot(results["meta"]["curves"], Path(out_dir) / "training_curves.png",
                      target=results["sources"]["fused.sas"]["miou"] + 2)
    return results


def _write(results: dict, out_dir: Path, stem: str, title: str, plots: bool) -> None:
    from .eval.report import write_report

    write_report(results, out_dir, title=title, stem=stem, plots=plots)


def covered_scenes(store: ArtefactStore, scenes: list, fused: str = "fused.sas") -> list:
    """Copies of ``scenes`` whose labels ignore (255) the points without a ``fused`` 2D feature, so every row is
    scored on exactly the points the 2D fusion covers."""
    import numpy as np

    from .eval.evaluate import store_source

    load = store_source(store, fused)
    out = []
    for sc in scenes:
        fs = load(sc)
        if fs is None:
            raise ValueError(f"scene {sc.scene_id} has no {fused!r} artefact to take the covered points from")
        mask = fs.masks[0]
        mask = np.ones(sc.num_points, bool) if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
        labels = np.asarray(sc.labels).copy()
        labels[~mask] = 255
        out.append(dataclasses.replace(sc, labels=labels))
    return out


def _report_split(store: ArtefactStore, paths: list, pcfg: PipelineConfig, ckpts: dict, text, tta: int,
                  out_dir: Path, stem: str, title: str, meta: dict) -> dict:
    """Every row (each teacher's fusion, Add, Linear, SAS, the 3D rows) on ``paths``: all points (returned; also
    written as ``<stem>.*`` unless it is the main report, which the caller writes with its plots) and the covered
    points (``<stem>_covered.*``)."""
    from .eval.evaluate import evaluate_sources, store_source
    from .io import load_scene

    scenes = [load_scene(p) for p in paths]
    rows = [f"fused.{n}" for n in pcfg.teachers] + list(ROWS_2D) + _student_rows(store, scenes, pcfg, ckpts, tta)
    sources = [(r, store_source(store, r)) for r in rows]
    res = evaluate_sources(scenes, sources, "scannet20", text, meta=dict(meta))
    cov = evaluate_sources(covered_scenes(store, scenes), sources, "scannet20", text,
                           meta={**meta, "points": "only those with a fused.sas 2D feature"})
    res["meta"]["covered_miou"] = {r: round(v["miou"], 2) for r, v in cov["sources"].items()}
    _write(cov, out_dir, f"{stem}_covered", f"{title}: points the 2D fusion covers", plots=False)
    if stem != "ablation":
        _write(res, out_dir, stem, title, plots=False)
    return res


def _student_rows(store: ArtefactStore, scenes: list, pcfg: PipelineConfig, ckpts: dict, tta: int) -> list[str]:
    """Per-point features of every 3D row on ``scenes`` (cached ``pred3d.abl_<row>``, and with ``tta`` > 0 also
    ``pred3d.abl_<row>_tta``); returns the row names in table order: single-pass rows first, then TTA rows."""
    plain = [f"pred3d.abl_{n}" for n, _, _ in RUNS]
    aug = [f"{r}_tta" for r in plain] if tta > 0 else []
    for sc in scenes:
        for name, ck in ckpts.items():
            ensure_student(store, sc, pcfg, checkpoint=ck, name=f"abl_{name}")
            if tta > 0:
                ensure_student(store, sc, pcfg, checkpoint=ck, name=f"abl_{name}_tta", tta=tta)
    return plain + aug


def _start_step(config: dict) -> int:
    """Optimiser steps already behind a run's initial weights (the chain of ``init_checkpoint`` runs)."""
    init = config.get("init_checkpoint")
    if not init or not Path(init).exists():
        return 0
    ck = torch_load(init, what="initial student checkpoint")
    cfg = ck.get("config") if isinstance(ck.get("config"), dict) else {}
    return _start_step(cfg) + int(ck.get("iteration", 0))


def training_curves(runs_dir: Path) -> dict[str, list[list[float]]]:
    """Validation mIoU against optimiser steps, ``{row: [[step, miou], ...]}``, from each 3D row's ``last.pt`` log.

    A run that starts from another run's checkpoint (row (c) from (b)'s best, or a warm start) counts its steps on
    from the step at which that checkpoint was taken.
    """
    curves = {}
    for name, _, _ in RUNS:
        p = Path(runs_dir) / name / "last.pt"
        if not p.exists():
            continue
        ck = torch_load(p, what="student run checkpoint")
        per_epoch = ck["iteration"] / max(1, ck["epoch"])
        start = _start_step(ck["config"])
        curves[name] = [[start + round(e["epoch"] * per_epoch), round(float(e["miou"]), 2)]
                        for e in ck["log"] if "miou" in e]
    return curves


def write_curves_plot(curves: dict, path: Path, target: Optional[float] = None) -> Optional[Path]:
    """Line plot of :func:`training_curves` (PNG); ``target`` draws the quality bar (SAS 2D fusion + 2) as a line."""
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .eval.report import png_bytes

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, pts in curves.items():
        if pts:
            x, y = zip(*pts)
            ax.plot(x, y, marker="o", ms=3, label=name)
    if target is not None:
        ax.axhline(target, color="grey", ls="--", lw=1, label=f"bar: SAS 2D fusion + 2 = {target:.1f}")
    ax.set_xlabel("optimiser steps")
    ax.set_ylabel("mIoU on the checkpoint-selection rooms (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    data = png_bytes(fig)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(data))


def export_half(src: Path, dst: Path) -> Path:
    """Copy a trainer checkpoint as a float16 inference-only file (weights + config; no optimiser state)."""
    ck = torch_load(src, what="student run checkpoint")
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in ck["state_dict"].items()}
    obj = {"version": ck["version"], "config": ck["config"], "state_dict": sd, "epoch": ck["epoch"],
           "iteration": ck["iteration"], "best": ck["best"], "log": ck["log"]}
    return atomic_write(dst, lambda f: torch.save(obj, f))


def _jsonable(cfg) -> dict:
    from .config import config_dict

    return config_dict(cfg)
