"""The ``sas`` command line.

Each subcommand lives in ``sas_engine/commands/<name>.py`` and exposes ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``. Command modules import heavy packages only inside ``run`` so ``sas --help`` stays fast.
Errors the engine raises on purpose (:class:`SASError`) are printed as one clear line and exit with status 2.
"""
from __future__ import annotations

import argparse
import logging
import sys

from .commands import ablate, capability, distill, export, extract, fuse, infer, info, superpoints, synth
from .commands import instances as instances_cmd
from .commands import eval as eval_cmd
from .errors import SASError

COMMANDS = {
    "info": info,
    "synth": synth,
    "superpoints": superpoints,
    "extract": extract,
    "capability": capability,
    "fuse": fuse,
    "distill": distill,
    "infer": infer,
    "eval": eval_cmd,
    "export": export,
    "ablate": ablate,
    "instances": instances_cmd,
}
"""Plain registry: subcommand name -> command module. Later issues add their modules here."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sas", description="SAS: Segment Any 3D Scene with Integrated 2D Priors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, mod in COMMANDS.items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except SASError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
