"""Error types raised on bad user input.

Every loader and command raises :class:`SASInputError` (or a subclass) with a message that names the file and the
problem, instead of letting a traceback escape from deep inside numpy or torch.
"""
from __future__ import annotations

from pathlib import Path


class SASError(Exception):
    """Base class of all errors the engine raises on purpose."""


class SASInputError(SASError, ValueError):
    """Bad input: a missing, truncated or inconsistent file, or an unknown name.

    Args:
        path: the offending file or folder (``None`` when the problem is not tied to one file).
        problem: what is wrong, in plain words.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class StaleArtefactError(SASError):
    """A cached artefact was made by another format version, config or input and may not be reused."""
