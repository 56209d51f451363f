"""``sas ablate``: the paper's Table 3 on the synthetic world, from a clean store, cached and resumable."""
from __future__ import annotations

from pathlib import Path

from .common import add_store_arg

HELP = "reproduce the ablation table (single teachers, Add, Linear, SAS fusion, 3D stages) on the synthetic world"
ROOT = Path(__file__).resolve().parents[2]


def add_arguments(p) -> None:
    p.add_argument("--out", type=Path, default=ROOT / "assets" / "ablation", help="report folder")
    p.add_argument("--runs", type=Path, default=None, help="student checkpoints folder (default <store>/runs)")
    p.add_argument("--export-student", type=Path, default=None,
                   help="also write a student (float16, the --export-row row) here, e.g. checkpoints/student_synthetic.pt")
    from ..ablate import RUNS

    p.add_argument("--export-row", default="stage2_selfdistill", choices=[n for n, _, _ in RUNS],
                   help="which 3D row --export-student writes (default: the self-distilled one)")
    p.add_argument("--device", default="cpu")
    add_store_arg(p)
    from ..ablate import AblateConfig
    from .common import add_dataclass_args

    add_dataclass_args(p, AblateConfig, skip=("pipeline",))


def run(args) -> int:
    import time

    from ..ablate import AblateConfig, run_ablation
    from ..eval.report import markdown_table
    from ..pipeline import PipelineConfig
    from ..store import ArtefactStore
    from .common import dataclass_from_args

    t0 = time.time()
    cfg = dataclass_from_args(AblateConfig, args)
    cfg.pipeline = PipelineConfig(device=args.device)
    res = run_ablation(ArtefactStore(args.store), cfg, args.out, args.runs, args.export_student, args.export_row)
    print(markdown_table(res))
    print(f"report written to {args.out}; total wall time {time.time() - t0:.0f} s")
    return 0
