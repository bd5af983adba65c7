"""The story API: what a story's ``s`` can do, one line each, in video time.

A story is a plain ``async def story(s)``. Every call is measured in frames of the video, never
in wall-clock time, so a story means the same thing played live or rendered offline::

    async def story(s):
        await s.show("a red ball rests on the grass under a sunny sky", seconds=2)
        way = await s.choose("Which way?", ["left", "right"], timeout=3, default=0)
        await s.show(f"a red ball rolls to the {['left', 'right'][way]} across the grass", seconds=3)

``s.now`` is the story's clock: the frame at which its next prompt takes effect. ``show`` and
``wait`` move it forward; ``choose`` and ``event`` move it to the frame at which the answer
counts. How those frames are obtained (from a live daemon, from ``--answers``, or by
enumeration in ``longlive check``) is the job of a *driver* (``Driver`` below); the story
never knows which one runs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, Sequence

from protocol import constants as C
from scripting.errors import script_error, story_line

TRANSITIONS = C.TRANSITIONS  # recache, cut, none, blend


@dataclass(frozen=True)
class Cue:
    """A prompt change planned at ``frame``; it takes effect at the first block boundary at or
    after that frame (the protocol's ``at_frame`` rule). ``line`` is where the story asked."""

    frame: int
    text: str
    transition: str
    blocks: int | None
    file: str | None
    line: int | None


@dataclass(frozen=True)
class SeedCue:
    """A noise-seed change planned at ``frame`` (first block boundary at or after it)."""

    frame: int
    seed: int
    file: str | None
    line: int | None


@dataclass(frozen=True)
class Ask:
    """A question the story waits on: a choice among ``options`` or one of the game events
    ``names``. Open from frame ``offered`` until ``deadline`` (None: no timeout)."""

    kind: str  # "choice" or "event"
    offered: int
    deadline: int | None
    options: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    default: int | None = None
    payloads: tuple[dict[str, Any], ...] = ()  # for events: the payloads `longlive check` tries
    question: str = ""
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Answer:
    """How an ``Ask`` was answered, and the frame at which the answer counts."""

    frame: int
    index: int | None = None  # a choice's option
    name: str | None = None  # an event's name
    payload: dict[str, Any] = field(default_factory=dict)
    timed_out: bool = False

    def to_json(self) -> dict[str, Any]:
        if self.timed_out:
            return {"timeout": True, "frame": self.frame}
        if self.name is not None:
            return {"event": self.name, "payload": self.payload, "frame": self.frame}
        return {"index": self.index, "frame": self.frame}


@dataclass(frozen=True)
class Event:
    """A game event as a story receives it: its name, payload and the frame it counts at."""

    name: str
    payload: dict[str, Any]
    frame: int


class Driver(Protocol):
    """Runs a story somewhere: live against a daemon, offline, or in the checker."""

    fps: float

    async def cue(self, cue: Cue) -> None:
        """Plan a prompt change."""

    async def seed(self, cue: SeedCue) -> None:
        """Plan a seed change."""

    async def advance(self, frame: int) -> None:
        """The story's clock moved to ``frame`` (a driver may hold the story back here)."""

    async def ask(self, ask: Ask) -> Answer:
        """Wait for the answer to ``ask``."""


class Composer(Protocol):
    def compose(self, text: str) -> str:
        """A short line ("jumps") -> the whole prompt (cast, setting, style and the action)."""


class Story:
    """The object a story receives as ``s``."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self.now = 0  # frame at which the next prompt is planned
        self._scene: Composer | None = None

    # ------------------------------------------------------------------ time

    @property
    def fps(self) -> float:
        return self._driver.fps

    @property
    def seconds(self) -> float:
        """The story's clock in seconds of video."""
        return self.now / self.fps

    def frames(self, seconds: float | None = None, frames: int | None = None, what: str = "duration") -> int:
        """A duration given in seconds or frames (exactly one of them, or neither: 0), in frames."""
        if seconds is not None and frames is not None:
            raise script_error(f"give the {what} in seconds or in frames, not both")
        if frames is not None:
            if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
                raise script_error(f"{what} in frames must be an integer >= 0, not {frames!r}")
            return frames
        if seconds is None:
            return 0
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or seconds < 0:
            raise script_error(f"{what} in seconds must be a number >= 0, not {seconds!r}")
        return round(seconds * self.fps)

    async def wait(self, seconds: float | None = None, *, frames: int | None = None) -> None:
        """Let the video play on for a while under the prompt in effect."""
        await self._advance(self.now + self.frames(seconds, frames))

    async def _advance(self, frame: int) -> None:
        self.now = frame
        await self._driver.advance(frame)

    # ------------------------------------------------------------------ what is shown

    def scene(self, composer: Composer | None) -> None:
        """Compose every later ``show`` text through ``composer.compose`` (e.g. a
        ``plugins.composer.Scene``); ``None`` shows texts as written again."""
        if composer is not None and not callable(getattr(composer, "compose", None)):
            raise script_error(f"a scene needs a compose(text) method; {type(composer).__name__} has none")
        self._scene = composer

    async def show(self, text: str, seconds: float | None = None, *, frames: int | None = None,
                   transition: str = "recache", blocks: int | None = None, raw: bool = False) -> None:
        """Switch to ``text`` now, then let it play for the duration. ``transition`` is one of
        recache (smooth, obeyed), cut (a new shot), none (swap the text only), blend (over
        ``blocks`` blocks). With a scene set, ``text`` is composed into the whole prompt unless
        ``raw``."""
        if not isinstance(text, str) or not text.strip():
            raise script_error(f"show needs a non-empty prompt text, not {text!r}")
        if transition not in TRANSITIONS:
            raise script_error(f"transition must be one of {', '.join(TRANSITIONS)}, not {transition!r}")
        if transition == "blend":
            if isinstance(blocks, bool) or not isinstance(blocks, int) or not 1 <= blocks <= C.MAX_BLEND_BLOCKS:
                raise script_error(f"a blend needs blocks=N with 1 <= N <= {C.MAX_BLEND_BLOCKS}, not {blocks!r}")
        elif blocks is not None:
            raise script_error(f"blocks= is for transition='blend' only (this show uses {transition!r})")
        full = text if raw or self._scene is None else self._scene.compose(text)
        if len(full) > C.MAX_PROMPT_CHARS:
            raise script_error(f"prompt is {len(full)} characters; the protocol allows {C.MAX_PROMPT_CHARS}")
        await self._driver.cue(Cue(self.now, full, transition, blocks, *story_line()))
        await self._advance(self.now + self.frames(seconds, frames))  # after the cue: live, the first one opens the session and tells the fps

    async def set_seed(self, seed: int) -> None:
        """Change the noise seed from now on (the same prompts then play out differently)."""
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
            raise script_error(f"seed must be an integer in [0, 2**63), not {seed!r}")
        await self._driver.seed(SeedCue(self.now, seed, *story_line()))

    # ------------------------------------------------------------------ what the player does

    async def choose(self, question: str, options: Sequence[str], *, timeout: float | None = None,
                     default: int | None = None) -> int:
        """Offer ``options``; returns the index (from 0) of the one picked. After ``timeout``
        seconds of video without an answer, ``default`` is taken. The video keeps playing the
        prompt in effect while the player thinks."""
        options = tuple(options)
        if not options or not all(isinstance(o, str) and o for o in options):
            raise script_error(f"choose needs a list of option texts, not {options!r}")
        if default is not None and (isinstance(default, bool) or not isinstance(default, int)
                                    or not 0 <= default < len(options)):
            raise script_error(f"default must be an option index in 0..{len(options) - 1}, not {default!r}")
        if timeout is not None and default is None:
            raise script_error("a choice with a timeout needs a default (the option taken when time runs out)")
        answer = await self._ask(Ask("choice", self.now, self._deadline(timeout), options=options, default=default,
                                     question=str(question)))
        return default if answer.timed_out else answer.index  # type: ignore[return-value]

    async def event(self, *names: str, timeout: float | None = None,
                    payloads: Sequence[dict[str, Any]] = ()) -> Event | None:
        """Wait for one of the game events ``names`` (e.g. "jump"); returns it, or None after
        ``timeout`` seconds of video without one. ``payloads`` lists the payloads the story
        reacts to (e.g. ``[{"kind": "rain"}, {"kind": "snow"}]``): ``longlive check`` tries
        each, so that branches on the payload count as reachable."""
        if not names or not all(isinstance(n, str) and 0 < len(n) <= C.MAX_EVENT_NAME_CHARS for n in names):
            raise script_error(f"event needs one or more event names, not {names!r}")
        payloads = tuple(payloads)
        if not all(isinstance(p, dict) for p in payloads):
            raise script_error(f"payloads must be a list of dicts, not {payloads!r}")
        answer = await self._ask(Ask("event", self.now, self._deadline(timeout), names=names, payloads=payloads))
        if answer.timed_out:
            return None
        return Event(answer.name, dict(answer.payload), answer.frame)  # type: ignore[arg-type]

    def _deadline(self, timeout: float | None) -> int | None:
        return None if timeout is None else self.now + self.frames(timeout, what="timeout")

    async def _ask(self, ask: Ask) -> Answer:
        file, line = story_line()
        ask = replace(ask, file=file, line=line)
        answer = await self._driver.ask(ask)
        await self._advance(answer.frame)
        return answer
