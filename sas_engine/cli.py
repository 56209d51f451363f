"""The ``sas`` command line.

Each subcommand lives in ``sas_engine/commands/<name>.py`` and exposes ``Config`` (a dataclass: its fields are the
subcommand's flags, their docstrings the ``--help`` texts, nested dataclass configs give ``--nested.field`` flags)
and ``run(cfg) -> int``. The command line is parsed with tyro (:func:`sas_engine.commands.common.parse`). A command
module is imported only when its subcommand runs, so ``sas --help`` stays fast. A command line that does not parse,
and errors the engine raises on purpose (:class:`SASError`), are printed as one ``error:`` line and exit with
status 2.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import sys
from typing import Optional, Sequence

from .errors import SASError

COMMANDS: dict[str, str] = {
    "info": "print a scene summary: points, mesh, frames, classes present, artefacts cached",
    "synth": "generate synthetic ScanNet-format rooms with RGB-D frames and ground truth (a split, or one room by seed)",
    "superpoints": "segment the scene's mesh into superpoints (ScanNet Segmentator) and cache them in the store",
    "extract": "run a 2D teacher over a scene's frames (or a whole split) and cache the outputs in the store",
    "capability": "build the annotation-free capability table (teachers x classes) from synthesized images",
    "fuse": "fuse 2D teacher outputs onto the scene's points (one teacher) or combine fused teachers (sas, add, "
            "linear)",
    "distill": "distil fused 2D features into the sparse 3D student (stage 1 + temporal-ensembling stage 2)",
    "infer": "run the distilled 3D student on scenes (no images needed) and cache per-point features in the store",
    "eval": "evaluate stored feature sources (fused.<teacher>, fused.sas, pred3d.<run>, A+B ensembles) against "
            "ground truth",
    "export": "write ScanNet benchmark submission files (<scene_id>.txt, one NYU40 id per vertex) from a feature "
              "source",
    "ablate": "reproduce the ablation table (single teachers, Add, Linear, SAS fusion, 3D stages) on the synthetic "
              "world",
    "instances": "3D instance proposals labelled with per-point features (stored as instances.proposals and "
                 "instances.<features>); --query answers 'where is it?' with boxes",
    "gaussians": "3D Gaussians of a scene: fit, semantics (lifted / SAS-fused / distilled features), eval on rendered "
                 "held-out views, render",
}
"""Subcommand name -> one-line summary; the code is ``sas_engine.commands.<name>`` (``Config`` and ``run``)."""

USAGE = "usage: sas [-h] [-v] COMMAND [--help] [ARGS ...]"


def command_module(name: str):
    """The module of subcommand ``name`` (imported on first use)."""
    return importlib.import_module(f".commands.{name}", __package__)


def _top_help() -> str:
    width = max(map(len, COMMANDS))
    lines = [USAGE, "", "SAS: Segment Any 3D Scene with Integrated 2D Priors", "", "commands:"]
    lines += [f"  {n:<{width}}  {h}" for n, h in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help     show this help (`sas COMMAND --help`: the command's flags)",
              "  -v, --verbose  log debug messages (before COMMAND)"]
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[str, object, bool]:
    """``(command, config, verbose)`` from a command line; exits (status 0 for --help, 2 for a bad command line)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    while argv and argv[0] in ("-v", "--verbose"):
        verbose, argv = True, argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_help(), file=sys.stdout if argv else sys.stderr)
        raise SystemExit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; one of: {', '.join(COMMANDS)} (see `sas --help`)",
              file=sys.stderr)
        raise SystemExit(2)
    from .commands.common import parse

    mod = command_module(name)
    return name, parse(mod.Config, rest, prog=f"sas {name}"), verbose


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        name, cfg, verbose = parse_args(argv)
    except SystemExit as e:  # --help (0) or a command line that does not parse (2, its error line is printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    assert dataclasses.is_dataclass(cfg)
    try:
        return int(command_module(name).run(cfg) or 0)
    except SASError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
