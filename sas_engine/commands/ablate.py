"""``sas ablate``: the paper's Table 3 on the synthetic world, from a clean store, cached and resumable."""
from __future__ import annotations

from pathlib import Path

from .common import add_store_arg

HELP = "reproduce the ablation table (single teachers, Add, Linear, SAS fusion, 3D stages) on the synthetic world"
ROOT = Path(__file__).resolve().parents[2]


def add_arguments(p) -> None:
    p.add_argument("--part", choices=["all", "fusion"], default="all",
                   help="all: Table 3 with the 3D student rows (trains students); fusion: the 2D fusion study only "
                        "(Tables 3 and 4 2D rows, oracle row, capability correlation, tau chosen on teaching rooms)")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default <store>/reports/<part>; the committed reports are assets/ablation "
                        "and assets/fusion)")
    p.add_argument("--select-rooms", type=int, default=None, help="fusion: teaching rooms comparing the settings")
    p.add_argument("--oracle-rooms", type=int, default=None, help="fusion: teaching rooms measuring in-room IoU")
    p.add_argument("--plain-images", type=int, default=None,
                   help="fusion: images per class of the plain-background table (0 = skip)")
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
    import json
    import time

    from ..ablate import AblateConfig, run_ablation
    from ..eval.report import markdown_table
    from ..pipeline import PipelineConfig
    from ..store import ArtefactStore
    from .common import dataclass_from_args

    t0 = time.time()
    store = ArtefactStore(args.store)
    out = args.out or store.root / "reports" / args.part
    if args.part == "fusion":
        import dataclasses

        from ..fusion_study import FusionStudyConfig, run_fusion_study

        fc = FusionStudyConfig(pipeline=PipelineConfig(device=args.device))
        over = {k: getattr(args, k) for k in ("select_rooms", "oracle_rooms", "plain_images")
                if getattr(args, k) is not None}
        fc = dataclasses.replace(fc, **over)
        res = run_fusion_study(store, fc, out)
        print(json.dumps(res["summary"], indent=1))
        print(f"report written to {out}; total wall time {time.time() - t0:.0f} s")
        return 0
    cfg = dataclass_from_args(AblateConfig, args)
    cfg.pipeline = PipelineConfig(device=args.device)
    res = run_ablation(store, cfg, out, args.runs, args.export_student, args.export_row)
    print(markdown_table(res))
    print(f"report written to {out}; total wall time {time.time() - t0:.0f} s")
    return 0
