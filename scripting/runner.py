"""Loading a story file and running its coroutine to the end, under any driver.

Stories are coroutines, but they never wait on anything real: every ``await`` is a call into
a driver, which answers before returning (a live driver blocks on its sockets inside). So
the coroutine is stepped by hand, without an event loop. A story that awaits something
else (``asyncio.sleep``, a network future) would make live and offline runs differ; it is
refused with the line that did it.
"""

from __future__ import annotations

import importlib.util
import inspect
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from scripting.errors import ScriptError, from_exception
from scripting.story import Driver, Story

StoryFunction = Callable[[Story], Awaitable[Any]]


def load_story(path: str | Path, name: str = "story") -> StoryFunction:
    """The ``async def story(s)`` of a story file. Import errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ScriptError(f"no story file {path}")
    module_name = f"longlive_story_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ScriptError(f"syntax error: {exc.msg}", str(path), exc.lineno) from None
    except Exception as exc:
        raise from_exception(exc, str(path)) from None
    function = getattr(module, name, None)
    if function is None:
        raise ScriptError(f"a story file defines `async def {name}(s)`; {path.name} has no `{name}`", str(path), 1)
    if not inspect.iscoroutinefunction(function):
        line = getattr(getattr(function, "__code__", None), "co_firstlineno", 1)
        raise ScriptError(f"`{name}` must be an `async def`", str(path), line)
    function.__story_file__ = function.__code__.co_filename  # type: ignore[attr-defined]  # as frames name it
    return function


def run_story(function: StoryFunction, driver: Driver) -> Story:
    """Run the story to its end under ``driver``; returns its ``s`` (``s.now`` = the end frame).
    Anything the story raises comes out as a ScriptError at the story's line."""
    s = Story(driver)
    coroutine = function(s)
    story_file = getattr(function, "__story_file__", None) or function.__code__.co_filename
    try:
        yielded = coroutine.send(None)
    except StopIteration:
        return s
    except ScriptError:
        raise
    except Exception as exc:
        raise from_exception(exc, story_file) from None
    frame = coroutine.cr_frame
    where = (frame.f_code.co_filename, frame.f_lineno) if frame else (story_file, None)
    coroutine.close()
    raise ScriptError(f"the story awaited {type(yielded).__name__}, which waits in real time; stories wait in "
                      "video time with s.wait / s.choose / s.event only", *where)

