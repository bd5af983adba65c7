"""The one error type of weight loading, shared by every loader in this package."""

from __future__ import annotations

from pathlib import Path


class CheckpointError(ValueError):
    """A weights file is missing or does not hold exactly what the model expects (a ValueError:
    bad input from the user, reported like any other bad setting).

    The message always names the file and, where one is involved, the key and what was
    expected, so a user can fix the folder without reading code.
    """

    def __init__(self, file: str | Path, problem: str, key: str | None = None):
        self.file = Path(file)
        self.key = key
        self.problem = problem
        where = f"{self.file}" + (f", key {key!r}" if key is not None else "")
        super().__init__(f"{where}: {problem}")
