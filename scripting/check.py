"""``longlive check``: every path through a story, without generating a frame.

The checker runs the story again and again (stories are cheap without a model), each time
with a different sequence of inputs: every option of every choice, every awaited event (with
each payload the story lists), and every timeout. It reports, each at the story's file and
line: prompts the model cannot encode, script errors on any path, paths that never end
(bounded in video time, questions and executed lines), lines no path ever runs (unreachable
branches; only judged when every path ran to its end), and the video duration of every path.
Any problem makes the exit code non-zero.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any, Callable

from runtime.pipeline import PromptError
from scripting.answers import Input
from scripting.errors import ScriptError, display_path
from scripting.plan import EndlessError, Plan, PlanDriver
from scripting.runner import StoryFunction, run_story
from scripting.story import Answer, Ask


@dataclass(frozen=True)
class Problem:
    file: str | None
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{display_path(self.file)}:{self.line}: {self.message}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    paths: list[tuple[list[Input], Plan]] = field(default_factory=list)  # finished paths: inputs, plan
    complete: bool = True  # every path explored within the bounds


@dataclass(frozen=True)
class Bounds:
    max_paths: int = 2000
    max_questions: int = 64  # per path
    max_seconds: float = 3600.0  # of video, per path
    max_lines: int = 2_000_000  # story lines executed per path (catches loops that never await)


class _Branch(BaseException):
    """Raised at the first question beyond a path's inputs (a BaseException so that a story's
    own ``except Exception`` cannot swallow it)."""

    def __init__(self, ask: Ask) -> None:
        self.ask = ask


class _Endless(BaseException):
    def __init__(self, file: str, line: int) -> None:
        self.file, self.line = file, line


class _ExploreDriver(PlanDriver):
    async def ask(self, ask: Ask) -> Answer:
        if len(self.plan.asks) >= len(self.inputs):
            self._open(ask.file, ask.line)
            raise _Branch(ask)
        return await super().ask(ask)


def branches(ask: Ask) -> list[Input]:
    """Every way a question can be answered, as checker inputs (at the earliest frame)."""
    if ask.kind == "choice":
        options = [Input(index=i) for i in range(len(ask.options))]
    else:
        options = [Input(event=n, payload=p) for n in ask.names for p in (ask.payloads or ({},))]
    return options + ([Input(timeout=True)] if ask.deadline is not None else [])


class _Tracer:
    """Records the story file's executed lines; stops a path after too many of them."""

    def __init__(self, filename: str, budget: int) -> None:
        self.filename, self.budget = filename, budget
        self.executed: set[int] = set()
        self.count = 0

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Callable | None:
        if frame.f_code.co_filename != self.filename:
            return None
        return self._local

    def _local(self, frame: FrameType, event: str, arg: Any) -> Callable:
        if event == "line":
            self.executed.add(frame.f_lineno)
            self.count += 1
            if self.count > self.budget:
                raise _Endless(self.filename, frame.f_lineno)
        return self._local


def _walk(function: StoryFunction, fps: float, inputs: list[Input], bounds: Bounds, tracer: _Tracer
          ) -> tuple[Plan | None, Ask | None]:
    driver = _ExploreDriver(fps, inputs, round(bounds.max_seconds * fps))
    tracer.count = 0
    sys.settrace(tracer)
    try:
        s = run_story(function, driver)
    except _Branch as branch:
        return None, branch.ask
    finally:
        sys.settrace(None)
    driver.plan.end = max(driver.plan.end, s.now)
    if driver.plan.opening is None:
        raise ScriptError("the story never shows a prompt", tracer.filename, function.__code__.co_firstlineno)
    return driver.plan, None


def executable_lines(path: str) -> set[int]:
    """First lines of the statements inside the file's functions that compile to code (not
    docstrings, ``pass``, ``global``; not ``def`` lines themselves)."""
    source = Path(path).read_text(encoding="utf-8")
    tree = ast.parse(source)
    statements: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if inner is node or not isinstance(inner, ast.stmt):
                    continue
                if isinstance(inner, (ast.Pass, ast.Global, ast.Nonlocal, ast.Try)) or (
                        isinstance(inner, ast.Expr) and isinstance(inner.value, ast.Constant)):
                    continue
                statements.add(inner.lineno)
    compiled: set[int] = set()

    def collect(code: CodeType, top: bool) -> None:
        if not top:
            compiled.update(line for _, _, line in code.co_lines() if line is not None and line != code.co_firstlineno)
        for const in code.co_consts:
            if isinstance(const, CodeType):
                collect(const, False)

    collect(compile(source, path, "exec"), True)
    return statements & compiled


def _ranges(lines: list[int], executable: set[int]) -> list[tuple[int, int]]:
    """Consecutive unexecuted lines (skipping lines that hold no statement) as (first, last)."""
    out: list[tuple[int, int]] = []
    for line in lines:
        if out and not any(out[-1][1] < n < line for n in executable):
            out[-1] = (out[-1][0], line)
        else:
            out.append((line, line))
    return out


def check_story(function: StoryFunction, fps: float, encode: Callable[[str], object],
                bounds: Bounds = Bounds()) -> Report:
    """Explore every path of ``function`` (depth first); ``encode`` is the model's strict prompt
    check (``Pipeline.check_prompt``), which raises PromptError on a prompt it cannot take or
    would read only part of (the toy's unknown words)."""
    filename = getattr(function, "__story_file__", None) or function.__code__.co_filename
    tracer = _Tracer(filename, bounds.max_lines)
    report = Report()
    problems: dict[tuple[str | None, int | None, str], Problem] = {}

    def problem(file: str | None, line: int | None, message: str, path: str | None = None) -> None:
        """One report per place and kind of problem, naming the first path that shows it."""
        shown = message if path is None else f"{message} (e.g. with answers {path})"
        problems.setdefault((file, line, message), Problem(file, line, shown))

    pending: list[list[Input]] = [[]]
    runs = 0
    while pending:
        inputs = pending.pop()
        runs += 1
        if runs > bounds.max_paths:
            report.complete = False
            problem(filename, None, f"stopped after {bounds.max_paths} paths; the story has more "
                                    f"(raise --max-paths to check them all)")
            break
        path = ",".join(map(str, inputs)) or "no answers"
        try:
            plan, ask = _walk(function, fps, inputs, bounds, tracer)
        except EndlessError as exc:
            problem(exc.file, exc.line, f"endless: {exc.message}", path)
            continue
        except ScriptError as exc:
            problem(exc.file, exc.line, exc.message, path)
            continue
        except _Endless as exc:
            problem(exc.file, exc.line, f"endless: more than {bounds.max_lines} story lines run on one path", path)
            continue
        if ask is not None:
            if len(inputs) >= bounds.max_questions:
                problem(ask.file, ask.line, f"endless: more than {bounds.max_questions} questions on one path", path)
                continue
            pending.extend(inputs + [b] for b in reversed(branches(ask)))
            continue
        assert plan is not None
        report.paths.append((inputs, plan))
    checked: dict[str, str | None] = {}
    path_problems = bool(problems)
    for _, plan in report.paths:
        for cue in plan.prompts:
            if cue.text not in checked:
                try:
                    encode(cue.text)
                    checked[cue.text] = None
                except PromptError as exc:
                    checked[cue.text] = str(exc)
            if checked[cue.text] is not None:
                problem(cue.file, cue.line, f"the model cannot take {cue.text!r}: {checked[cue.text]}")
    if report.complete and report.paths and not path_problems:  # a failed path leaves lines unrun too
        executable = executable_lines(filename)
        missed = sorted(executable - tracer.executed)
        for first, last in _ranges(missed, executable):
            span = f"line {first}" if first == last else f"lines {first}-{last}"
            problem(filename, first, f"unreachable: {span} never run on any path")
    report.problems = sorted(problems.values(), key=lambda p: (str(p.file), p.line or 0))
    return report


def summary(report: Report, fps: float) -> list[str]:
    """Human-readable lines: every path's inputs and duration, then the totals."""
    lines = []
    if len(report.paths) <= 20:
        for inputs, plan in report.paths:
            lines.append(f"  path {','.join(map(str, inputs)) or '(no questions)'}: {plan.end / fps:g} s "
                         f"({plan.end} frames, {len(plan.prompts)} prompts)")
    if report.paths:
        ends = [plan.end for _, plan in report.paths]
        lines.append(f"{len(report.paths)} paths; video {min(ends) / fps:g} s to {max(ends) / fps:g} s")
    return lines
