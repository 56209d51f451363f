"""``sas ablate``: the paper's Table 3 on the synthetic world, from a clean store, cached and resumable.

``--part all`` (default) takes :class:`sas_engine.ablate.AblateConfig`'s fields as flags (``--epochs-stage1``,
``--pipeline.tau``...); ``--part fusion`` runs the 2D fusion study with :class:`sas_engine.fusion_study.
FusionStudyConfig`'s fields as ``--fusion.*`` flags and the same ``--pipeline.*`` settings. A flag of the other
part is refused, never silently ignored.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, Optional

import tyro

from ..ablate import RUNS, AblateConfig
from ..fusion_study import FusionStudyConfig
from ..pipeline import PipelineConfig
from .common import DEFAULT_STORE

Row = Literal[tuple(n for n, _, _ in RUNS)]  # type: ignore[valid-type]


@dataclass
class FusionSettings(FusionStudyConfig):
    """``--part fusion``: the fusion study's settings (its teachers, capability and device: ``--pipeline.*``)."""

    pipeline: tyro.conf.Suppress[PipelineConfig] = field(default_factory=PipelineConfig)
    """Taken from ``--pipeline.*``."""


@dataclass
class Config(AblateConfig):
    """Reproduce the ablation table (single teachers, Add, Linear, SAS fusion, 3D stages) on the synthetic world
    (--part all), or the 2D fusion study (--part fusion: Tables 3 and 4 2D rows, oracle row, capability
    correlation, tau chosen on teaching rooms)."""

    part: Literal["all", "fusion"] = "all"
    """all: Table 3 with the 3D student rows (trains students; the flags above); fusion: the 2D fusion study only
    (the --fusion.* flags)."""
    out: Optional[Path] = None
    """Report folder (default <store>/reports/<part>; the committed reports are assets/ablation and
    assets/fusion)."""
    runs: Optional[Path] = None
    """--part all: student checkpoints folder (default <store>/runs)."""
    export_student: Optional[Path] = None
    """--part all: also write a student (float16, the --export-row row) here, e.g.
    checkpoints/student_synthetic.pt."""
    export_row: Row = "stage2_selfdistill"
    """--part all: which 3D row --export-student writes (default: the self-distilled one)."""
    store: Path = DEFAULT_STORE
    """Artefact store folder ($SAS_STORE or <repo>/store)."""
    fusion: FusionSettings = field(default_factory=FusionSettings)
    """--part fusion: settings of the fusion study."""

    def ablate_config(self) -> AblateConfig:
        """The plain :class:`AblateConfig` of ``--part all``."""
        return AblateConfig(**{f.name: getattr(self, f.name) for f in fields(AblateConfig)})

    def fusion_config(self) -> FusionStudyConfig:
        """The plain :class:`FusionStudyConfig` of ``--part fusion`` (with ``--pipeline.*``)."""
        kw = {f.name: getattr(self.fusion, f.name) for f in fields(FusionStudyConfig)}
        return FusionStudyConfig(**{**kw, "pipeline": self.pipeline})

    def check(self) -> None:
        """Refuse flags of the other part (one line naming them)."""
        from ..errors import SASInputError

        def flag(name: str, prefix: str = "") -> str:
            return "--" + prefix + name.replace("_", "-")

        if self.part == "fusion":
            base = AblateConfig()
            extra = [flag(f.name) for f in fields(AblateConfig)
                     if f.name != "pipeline" and getattr(self, f.name) != getattr(base, f.name)]
            extra += [flag(n) for n, d in (("runs", None), ("export_student", None),
                                           ("export_row", "stage2_selfdistill")) if getattr(self, n) != d]
            if extra:
                raise SASInputError(None, f"{', '.join(extra)}: only with --part all (the fusion study's own "
                                          "settings are the --fusion.* flags)")
        else:
            base = FusionSettings()
            extra = [flag(f.name, "fusion.") for f in fields(FusionStudyConfig)
                     if f.name != "pipeline" and getattr(self.fusion, f.name) != getattr(base, f.name)]
            if extra:
                raise SASInputError(None, f"{', '.join(extra)}: only with --part fusion")


def run(args: Config) -> int:
    import json
    import time

    from ..ablate import run_ablation
    from ..eval.report import markdown_table
    from ..store import ArtefactStore

    args.check()
    t0 = time.time()
    store = ArtefactStore(args.store)
    out = args.out or store.root / "reports" / args.part
    if args.part == "fusion":
        from ..fusion_study import run_fusion_study

        res = run_fusion_study(store, args.fusion_config(), out)
        print(json.dumps(res["summary"], indent=1))
        print(f"report written to {out}; total wall time {time.time() - t0:.0f} s")
        return 0
    res = run_ablation(store, args.ablate_config(), out, args.runs, args.export_student, args.export_row)
    if args.train_only:  # no report: the rows' selection curves
        print(json.dumps(res, indent=1))
        return 0
    print(markdown_table(res))
    print(f"report written to {out}; total wall time {time.time() - t0:.0f} s")
    return 0


assert not {f.name for f in dataclasses.fields(AblateConfig)} & {"part", "out", "runs", "export_student",
                                                                  "export_row", "store", "fusion"}, \
    "AblateConfig gained a field named like a `sas ablate` flag: rename one of them"
