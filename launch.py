#!/usr/bin/env python3
"""Start the SAS app: ``python launch.py`` (embedded demo) or ``python launch.py path/to/scene ...``.

See ``python launch.py --help`` and :mod:`app.cli`.
"""
import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
