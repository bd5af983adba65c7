"""Running a story without a daemon: the plan of prompt and seed changes it makes for given
inputs, and the rule that turns a plan into the frames at which each change shows.

The rule is the daemon's (protocol/SPEC.md, ``prompt.at_frame``), so an offline render and a
live run agree to the frame:

* The story's first ``show`` is its *opening* prompt; live, the session opens with it. The
  first block always shows it. A story shows it before it waits or asks anything.
* Every later change planned at frame f takes effect at the first block boundary b >= f
  after the first block (so a second ``show`` at frame 0 lands where the first block ends). Changes due at the same boundary coalesce: the one the story made
  last wins (the daemon: "the one received last"; the runner sends in story order).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scripting.answers import Input, resolve
from scripting.errors import ScriptError, story_line
from scripting.runner import StoryFunction, run_story
from scripting.story import Answer, Ask, Cue, SeedCue


@dataclass
class Plan:
    """Everything a story did on one path: its opening, later cues and seeds, the questions it
    asked and how they were answered, and its end frame (the video's length)."""

    fps: float
    opening: Cue | None = None
    seed: int | None = None  # the opening seed, if the story set one before its first show
    cues: list[Cue] = field(default_factory=list)
    seeds: list[SeedCue] = field(default_factory=list)
    asks: list[Ask] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    end: int = 0

    @property
    def prompts(self) -> list[Cue]:
        return ([self.opening] if self.opening else []) + self.cues


class PlanDriver:
    """Records a story's plan; answers its questions from ``inputs`` by ``answers.resolve``.
    ``max_frames`` bounds a path (a story still running past it raises ScriptError)."""

    def __init__(self, fps: float, inputs: list[Input], max_frames: int | None = None) -> None:
        self.fps = fps
        self.inputs = inputs
        self.max_frames = max_frames
        self.plan = Plan(fps)
        self._opened = False

    def _open(self, file: str | None, line: int | None) -> None:
        if not self._opened:
            raise ScriptError("a story shows its first prompt before it waits or asks anything", file, line)

    async def cue(self, cue: Cue) -> None:
        if not self._opened:
            self.plan.opening = cue
            self._opened = True
        else:
            self.plan.cues.append(cue)

    async def seed(self, cue: SeedCue) -> None:
        if not self._opened:
            self.plan.seed = cue.seed
        else:
            self.plan.seeds.append(cue)

    async def advance(self, frame: int) -> None:
        if frame > 0:
            self._open(*story_line())
        self.plan.end = max(self.plan.end, frame)
        if self.max_frames is not None and frame > self.max_frames:
            raise EndlessError(f"the story is still running after {self.max_frames} frames "
                               f"({self.max_frames / self.fps:g} s of video)", *story_line())

    async def ask(self, ask: Ask) -> Answer:
        self._open(ask.file, ask.line)
        number = len(self.plan.asks) + 1
        given = self.inputs[number - 1] if number <= len(self.inputs) else None
        answer = resolve(ask, given, number)
        self.plan.asks.append(ask)
        self.plan.answers.append(answer)
        return answer


class EndlessError(ScriptError):
    """A path ran past its bound: the story may never end."""


def plan_story(function: StoryFunction, fps: float, inputs: list[Input] | None = None,
               max_frames: int | None = None) -> Plan:
    """The plan ``function`` makes with ``inputs``; ScriptError (file, line) on any problem."""
    driver = PlanDriver(fps, list(inputs or []), max_frames)
    s = run_story(function, driver)
    driver.plan.end = max(driver.plan.end, s.now)
    if driver.plan.opening is None:
        raise ScriptError("the story never shows a prompt", getattr(function, "__story_file__", None),
                          function.__code__.co_firstlineno)
    return driver.plan


class Boundaries:
    """Applies a plan's later cues and seeds at block boundaries, by the module's rule."""

    def __init__(self, plan: Plan) -> None:
        self.cues = list(plan.cues)
        self.seeds = list(plan.seeds)

    def due(self, boundary: int) -> tuple[Cue | None, SeedCue | None]:
        """The cue and the seed that take effect at ``boundary`` (a frame > 0 at which a new
        block starts), each the last planned among those due; they leave the queue."""
        cues = [c for c in self.cues if c.frame <= boundary]
        seeds = [c for c in self.seeds if c.frame <= boundary]
        self.cues, self.seeds = self.cues[len(cues):], self.seeds[len(seeds):]  # story time never goes back
        return (cues[-1] if cues else None), (seeds[-1] if seeds else None)
