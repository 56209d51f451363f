"""The shared entry of the report scripts (``scripts/gaussian_report.py``, ``scripts/instance_report.py``).

Import it after the script has put the repository root on ``sys.path`` (``from scripts.report_cli import
run_report``): the scripts are run as files (``python3 scripts/<name>.py``) and loaded by path in the tests.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Optional, Sequence


def run_report(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]],
               run: Callable[[argparse.Namespace], int]) -> int:
    """Parse ``argv`` with ``parser``, log warnings only, and return ``run(args)``. An error the engine raises on
    purpose (:class:`sas_engine.errors.SASError`: a missing store, room or artefact...) is printed as one ``error:``
    line on stderr and returns 2, as the ``sas`` command does."""
    from sas_engine.errors import SASError

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        return run(args)
    except SASError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
