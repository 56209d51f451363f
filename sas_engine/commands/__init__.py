"""Subcommands of the ``sas`` CLI, one module each (see :mod:`sas_engine.cli`)."""
