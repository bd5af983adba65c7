"""Errors that point into the writer's story file, not into this package.

A writer debugging a story needs ``story.py:12: ...``, the line of *their* ``await s.show(...)``,
whatever depth of scripting code raised the problem. ``story_line()`` finds that line by
walking the stack out of this package (stories under ``scripting/examples`` count as stories).
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


class ScriptError(Exception):
    """A problem in a story, located at ``file:line`` of the story's own source."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.message, self.file, self.line = message, file, line
        super().__init__(f"{display_path(file)}:{line}: {message}" if file else message)


def display_path(file: str | None) -> str:
    """``file`` relative to the working directory when it lies below it (as the writer typed it)."""
    if file is None:
        return "?"
    try:
        return str(Path(file).resolve().relative_to(Path.cwd()))
    except ValueError:
        return file


def _is_story_file(filename: str) -> bool:
    return Path(filename).resolve().parent != PACKAGE_DIR


def story_line() -> tuple[str | None, int | None]:
    """(file, line) of the innermost caller outside the scripting package."""
    frame = sys._getframe(1)
    while frame is not None:
        if _is_story_file(frame.f_code.co_filename):
            return frame.f_code.co_filename, frame.f_lineno
        frame = frame.f_back
    return None, None


def script_error(message: str) -> ScriptError:
    """A ScriptError located at the story line that made the current API call."""
    return ScriptError(message, *story_line())


def from_exception(exc: BaseException, story_file: str) -> ScriptError:
    """A ScriptError for an exception the story's own code raised (NameError, KeyError, ...),
    located at the innermost traceback entry in ``story_file`` (else in any story file)."""
    if isinstance(exc, ScriptError):
        return exc
    entries = traceback.extract_tb(exc.__traceback__)
    target = str(Path(story_file).resolve())
    located = [e for e in entries if str(Path(e.filename).resolve()) == target] or \
              [e for e in entries if _is_story_file(e.filename)]
    where = located[-1] if located else None
    return ScriptError(f"{type(exc).__name__}: {exc}", where.filename if where else story_file,
                       where.lineno if where else None)
