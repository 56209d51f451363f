"""Table 6 analogue: instance AP / AP50 / AP25 on the synthetic rooms, labelling one proposal set with each single
teacher's fused features, the SAS fusion (fused.sas) and the distilled student (pred3d.student).

    python3 scripts/instance_report.py                                    # val rooms in store/, default teachers
    python3 scripts/instance_report.py --teachers lseg_compact,seem_compact         # a subset of the teachers
    python3 scripts/instance_report.py --tune-store /tmp/sas_tune_store   # also the tune rooms (settings chosen there)
    python3 scripts/instance_report.py --build                            # first compute missing fusions/student

Writes assets/instances/instances.md and instances.json (``--out``). Proposals and labelling settings are the
defaults of ``ProposalConfig`` / ``LabelConfig``, chosen on the ``tune`` rooms (their docstrings list the trials).
A source missing for a room is left out of that source's numbers and listed under ``missing_scenes``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.report_cli import run_report  # noqa: E402 (needs ROOT on sys.path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", default="val", help="rooms to report (default: the synthetic val split)")
    p.add_argument("--store", type=Path, default=ROOT / "store", help="artefact store of --split (default store/)")
    from sas_engine.teachers import DEMO_TEACHERS

    p.add_argument("--teachers", default=",".join(DEMO_TEACHERS),
                   help="comma-separated teachers whose fused.<teacher> features are compared (default: the "
                        f"shipped {','.join(DEMO_TEACHERS)})")
    p.add_argument("--student", default="student", help="student artefact suffix (pred3d.<student>)")
    p.add_argument("--tune-split", default="tune", help="split the settings were chosen on (reported too when "
                                                         "--tune-store is given)")
    p.add_argument("--tune-store", type=Path, default=None, help="artefact store holding the tune rooms' fusions")
    p.add_argument("--build", action="store_true",
                   help="run the pipeline (teachers, fusions, student) on the rooms first: what is cached is reused")
    p.add_argument("--synthesizer", default=None, help="capability synthesizer for --build (default: the "
                                                       "pipeline's)")
    p.add_argument("--out", type=Path, default=ROOT / "assets" / "instances", help="report folder")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return run_report(p, argv, _run)


def _run(args) -> int:
    import torch

    from sas_engine.instances.report import check_sources, default_sources, run_split, write_report
    from sas_engine.store import ArtefactStore

    torch.set_num_threads(max(1, args.threads))
    teachers = check_sources(args.teachers.split(","))
    sources = default_sources(teachers, args.student)
    jobs = [("val", args.split, args.store)]
    if args.tune_store is not None:
        jobs.append(("tune", args.tune_split, args.tune_store))
    results = {}
    for key, split, store_dir in jobs:
        store = ArtefactStore(store_dir)
        if args.build:
            _build(split, store, teachers, args)
        print(f"== {split} ({store_dir})")
        r = run_split(split, store, sources)
        results[key] = r
        for s, v in r["sources"].items():
            print(f"  {s:<24} AP {pct(v['ap']):>5}  AP50 {pct(v['ap50']):>5}  AP25 {pct(v['ap25']):>5}  "
                  f"({v['num_predictions']} predictions, missing {len(v['missing_scenes'])} rooms)")
        print(f"  {r['seconds']} s")
    files = write_report(args.out, results, teachers)
    for k, path in files.items():
        print(f"wrote {k:<9} {path}")
    return 0


def pct(x) -> str:
    """A fraction as a percentage with one decimal, "-" for None."""
    return "-" if x is None else f"{100 * x:.1f}"


def _build(split, store, teachers, args) -> None:
    from sas_engine.eval.inputs import split_scene_paths
    from sas_engine.pipeline import PipelineConfig, run_split as run_pipeline

    kw = {"teachers": tuple(teachers)}
    if args.synthesizer:
        kw["synthesizer"] = args.synthesizer
    run_pipeline(store, split_scene_paths(split), PipelineConfig(**kw))


if __name__ == "__main__":
    sys.exit(main())
