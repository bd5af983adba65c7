"""Live play: a story steering a running daemon as a controller, through the protocol only.

The story runs ahead of the video in its own clock and sends each prompt early with its
``at_frame``, so network delay cannot move a cut. It is held back only where the live video
matters:

* **Horizon.** The story runs at most ``horizon`` frames ahead of the live *input frame*
  (below), so a few prompts are in flight, never the whole story.
* **Questions.** ``choose``/``event`` asked at frame F open when the input frame reaches F
  (the player has seen what leads up to it). An input counts at the input frame at which
  it arrives; if none arrives before the input frame reaches the deadline D, the question
  times out at D. Inputs that arrive while no question listens for them are ignored.
* **Input frame** = last frame received + 1 + ``margin`` frames (``margin_blocks`` blocks):
  the earliest frame a prompt sent now can still reach before the daemon generates it.

Offline renders use the same frames (``--answers`` with ``@frame``, as logged here), so a
live run and its render show the same prompts from the same frames. If a prompt still
lands elsewhere (a margin too small for the machine), the run reports it.

Inputs come from the terminal (a digit answers a choice; ``!name {json}`` sends an event)
and from any controller of the daemon — a game, a demo window, the OSC bridge — as protocol
``event`` messages for the story's session: the daemon relays each one it accepts on
``event.<session>`` (SPEC section 4), where the runner listens. A choice is answered by
``choice`` {"index": n}. Repeats of an event id (resends) count once.
"""

from __future__ import annotations

import json
import select
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from protocol import constants as C
from protocol.client import Controller, Picture, RemoteError, Ticket, Viewer
from protocol.messages import EventNotice
from scripting.errors import ScriptError, story_line
from scripting.runner import StoryFunction, run_story
from scripting.story import Answer, Ask, Cue, SeedCue

CHOICE_EVENT = "choice"  # a game answers a choice with event "choice", payload {"index": n}


@dataclass
class LiveConfig:
    control: str = C.DEFAULT_CONTROL_ENDPOINT
    stream: str = C.DEFAULT_STREAM_ENDPOINT
    session: str = "story"
    seed: int = 0
    terminal: bool = True  # answer from stdin
    margin_blocks: int = 2
    horizon_s: float = 4.0
    stall_s: float = 20.0  # no frame for this long: the daemon is gone
    keep_open: bool = False  # leave the session running when the story ends


@dataclass
class LiveResult:
    timeline: list[tuple[int, Cue]]  # (first frame that showed it, cue), from the daemon's acks
    answers: list[Answer]
    end: int
    late: list[str] = field(default_factory=list)  # prompts that landed off their planned boundary
    warnings: list[str] = field(default_factory=list)  # 'file:line: ...' for prompts the model read only in part


class LiveDriver:
    def __init__(self, config: LiveConfig, ctl: Controller, viewer: Viewer,
                 on_picture: Callable[[Picture], None] | None = None, out: TextIO = sys.stdout) -> None:
        self.config, self.ctl, self.viewer = config, ctl, viewer
        self.on_picture, self.out = on_picture, out
        self._fps: float | None = None
        self.opened_warning: str | None = None  # the open ack's `warning`
        self.opening: Cue | None = None
        self.open_seed = config.seed
        self.last_frame = -1
        self.block_starts: set[int] = set()
        self._block_of_last = -1
        self.block_frames = 3  # frames per block, learned from the stream
        self.sent: list[tuple[Cue, Ticket]] = []
        self._unsettled: list[tuple[Cue, Ticket]] = []  # sent, not yet finally answered
        self.answers: list[Answer] = []
        self._seen_ids: set[str] = set()
        self._last_picture = time.monotonic()
        self._relayed: list[tuple[str, dict[str, Any], str | None]] = []  # events heard, not yet taken

    # ------------------------------------------------------------------ the clock

    @property
    def fps(self) -> float:
        if self._fps is None:
            self._open(*story_line())
        assert self._fps is not None
        return self._fps

    @property
    def input_frame(self) -> int:
        return self.last_frame + 1 + self.config.margin_blocks * self.block_frames

    def _open(self, file: str | None, line: int | None) -> None:
        if self._fps is not None:
            return
        if self.opening is None:
            raise ScriptError("a story shows its first prompt before it waits or asks anything", file, line)
        try:
            opened = self.ctl.open(self.config.session, seed=self.open_seed, prompt=self.opening.text).result(30)
            status = self.ctl.status(self.config.session)
        except RemoteError as exc:
            raise ScriptError(f"the daemon refused to open session {self.config.session!r}: {exc}"
                              + (" (pass --session NAME)" if exc.code == C.ErrorCode.SESSION_EXISTS else ""),
                              self.opening.file, self.opening.line) from None
        self._fps = status[0].fps_target
        self.opened_warning = opened.warning
        self._last_picture = time.monotonic()

    def _pump(self, done: Callable[[], bool], on_input: Callable[[str, dict[str, Any], str | None], bool] | None = None) -> None:
        """Receive frames, acks and inputs until ``done()``; ``on_input(name, payload, id)``
        returns True when it consumed an input."""
        while not done():
            msg = self.viewer.recv(timeout=0.01)
            if isinstance(msg, Picture) and msg.frame.session == self.config.session:
                self._picture(msg)
            elif isinstance(msg, EventNotice) and msg.session == self.config.session \
                    and msg.event_id not in self._seen_ids:
                self._seen_ids.add(msg.event_id)
                self._relayed.append((msg.name, dict(msg.payload), msg.event_id))
            self.ctl.pump(0)
            self._refused()
            for name, payload, event_id in self._inputs():
                if on_input is None or not on_input(name, payload, event_id):
                    print(f"story: input {name} {json.dumps(payload)} ignored (nothing waits for it now)", file=self.out)
            if time.monotonic() - self._last_picture > self.config.stall_s:
                raise RuntimeError(f"no frame of session {self.config.session!r} for {self.config.stall_s:g} s; "
                                   "is the daemon running?")

    def _refused(self) -> None:
        """Stop at the first prompt the daemon refused (e.g. BAD_PROMPT), at its story line."""
        done = [item for item in self._unsettled if item[1].done()]
        self._unsettled = [item for item in self._unsettled if not item[1].done()]
        for cue, ticket in done:
            try:
                ticket.result(0)
            except RemoteError as exc:
                raise ScriptError(f"the daemon refused the prompt {cue.text!r}: {exc}", cue.file, cue.line) from None

    def _picture(self, picture: Picture) -> None:
        header = picture.frame
        self._last_picture = time.monotonic()
        if header.block != self._block_of_last:
            self.block_starts.add(header.frame)
            if self._block_of_last >= 0 and len(self.block_starts) >= 2:
                starts = sorted(self.block_starts)
                self.block_frames = starts[-1] - starts[-2]
            self._block_of_last = header.block
        self.last_frame = max(self.last_frame, header.frame)
        if self.on_picture is not None:
            self.on_picture(picture)

    def _inputs(self) -> list[tuple[str, dict[str, Any], str | None]]:
        found, self._relayed = self._relayed, []
        if self.config.terminal and select.select([sys.stdin], [], [], 0)[0]:
            line = sys.stdin.readline().strip()
            if line.isdigit():
                found.append((CHOICE_EVENT, {"index": int(line)}, None))
            elif line.startswith("!"):
                name, _, rest = line[1:].partition(" ")
                try:
                    payload = json.loads(rest) if rest.strip() else {}
                except ValueError:
                    payload = None
                if isinstance(payload, dict) and name:
                    found.append((name, payload, None))
                else:
                    print("story: type a digit for a choice, or !name {json payload} for an event", file=self.out)
        return found

    # ------------------------------------------------------------------ the driver

    async def cue(self, cue: Cue) -> None:
        if self.opening is None:
            self.opening = cue
            return
        self._open(cue.file, cue.line)
        horizon = round(self.config.horizon_s * self.fps)
        self._pump(lambda: cue.frame <= self.input_frame + horizon)
        ticket = self.ctl.send_prompt(cue.text, self.config.session, transition=cue.transition,
                                      blend_blocks=cue.blocks, at_frame=cue.frame)
        self.sent.append((cue, ticket))
        self._unsettled.append((cue, ticket))

    async def seed(self, cue: SeedCue) -> None:
        if self.opening is None:
            self.open_seed = cue.seed
            return
        # `seed` has no at_frame in the protocol: sent when its frame is the input frame.
        self._pump(lambda: cue.frame <= self.input_frame)
        self.ctl.set_seed(cue.seed, self.config.session)

    async def advance(self, frame: int) -> None:
        self._open(*story_line())
        horizon = round(self.config.horizon_s * self.fps)
        self._pump(lambda: frame <= self.input_frame + horizon)

    async def ask(self, ask: Ask) -> Answer:
        self._open(ask.file, ask.line)
        self._pump(lambda: self.input_frame >= ask.offered)
        self._present(ask)
        answer: list[Answer] = []

        def take(name: str, payload: dict[str, Any], event_id: str | None) -> bool:
            frame = max(ask.offered, self.input_frame)
            if ask.deadline is not None and frame > ask.deadline:
                return False
            if ask.kind == "choice" and name == CHOICE_EVENT:
                index = payload.get("index")
                if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(ask.options):
                    answer.append(Answer(frame, index=index))
                    return True
            elif ask.kind == "event" and name in ask.names:
                answer.append(Answer(frame, name=name, payload=payload))
                return True
            return False

        self._pump(lambda: bool(answer) or (ask.deadline is not None and self.input_frame >= ask.deadline), take)
        result = answer[0] if answer else Answer(ask.deadline, timed_out=True)  # type: ignore[arg-type]
        self.answers.append(result)
        print(f"story: answer {json.dumps(result.to_json())}", file=self.out)
        return result

    def _present(self, ask: Ask) -> None:
        limit = "" if ask.deadline is None else f" ({(ask.deadline - ask.offered) / self.fps:g} s)"
        if ask.kind == "choice":
            options = "  ".join(f"[{i}] {o}" for i, o in enumerate(ask.options))
            print(f"story: {ask.question}{limit}  {options}", file=self.out, flush=True)
        else:
            print(f"story: waiting for {' or '.join(ask.names)}{limit}", file=self.out, flush=True)

    # ------------------------------------------------------------------ the end

    def finish(self, end: int) -> LiveResult:
        """Wait until the video has reached the story's end and every prompt is answered."""
        self._pump(lambda: self.last_frame + 1 >= end and all(t.done() for _, t in self.sent))
        self._refused()
        timeline: list[tuple[int, Cue]] = [(0, self.opening)] if self.opening else []
        late = []
        warnings = [f"{self.opening.file}:{self.opening.line}: {self.opened_warning}"] if self.opened_warning else []
        for cue, ticket in self.sent:
            ack = ticket.result(0)
            if ack.warning:
                warnings.append(f"{cue.file}:{cue.line}: {ack.warning}")
            if ack.status != "applied":
                continue
            timeline.append((ack.frame, cue))
            planned = min((b for b in self.block_starts if b >= cue.frame and b > 0), default=None)
            if planned is not None and ack.frame != planned:
                late.append(f"{cue.file}:{cue.line}: prompt planned for frame {planned} landed at frame {ack.frame}")
        timeline.sort(key=lambda item: item[0])
        if not self.config.keep_open:
            self.ctl.close_session(self.config.session).result(10)
        return LiveResult(timeline, self.answers, end, late, warnings)

    def close(self, failed: bool) -> None:
        """After a failure, close the session (best effort)."""
        if failed and self._fps is not None and not self.config.keep_open:
            try:
                self.ctl.close_session(self.config.session).result(2)
            except (RemoteError, TimeoutError):
                pass  # the daemon is gone or already closed it; nothing is left to clean


def play(function: StoryFunction, config: LiveConfig, on_picture: Callable[[Picture], None] | None = None,
         out: TextIO = sys.stdout, curve: Any = None) -> LiveResult:
    """Play ``function`` on the daemon at ``config``'s endpoints; returns what the daemon showed."""
    with Controller(config.control, curve=curve) as ctl, \
            Viewer(config.stream, sessions=[config.session], acks=False, errors=False, status=False, events=True,
                   curve=curve) as viewer:
        viewer.wait_ready()  # subscribed before the session opens: its first frames are not lost
        driver = LiveDriver(config, ctl, viewer, on_picture, out)
        failed = True
        try:
            s = run_story(function, driver)
            if driver.opening is None:
                raise ScriptError("the story never shows a prompt", getattr(function, "__story_file__", None),
                                  function.__code__.co_firstlineno)
            driver._open(None, None)  # a story of one zero-length show still plays its opening
            result = driver.finish(s.now)
            failed = False
            return result
        finally:
            driver.close(failed)
