"""One session's state between blocks: its stream, clock, prompt in effect, and the events
waiting for a block boundary. No sockets: the daemon asks it what to do and publishes.

Events take effect at block boundaries. Prompts due at the same boundary are coalesced
(the one received last wins); `at_frame` holds a prompt back until the first boundary at or
after that frame. Everything applied at a boundary is acked with the boundary's frame index
once the block exists.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from plugins.hookspecs import SessionInfo
from runtime.daemon.pacing import Pacer


@dataclass(frozen=True)
class PendingPrompt:
    event_id: str
    event_type: str  # 'prompt', or 'event' when a game event was mapped to a prompt
    text: str  # after the plugins' rewrite_prompt chain; encoded only if it wins its boundary
    transition: str
    blend_blocks: int | None
    at_frame: int | None
    received: float  # monotonic
    warning: str | None = None  # what the model reads past in `text` (Pipeline.lint), for its acks


@dataclass(frozen=True)
class Awaiting:
    """An event applied at a boundary, acked once the block that shows it exists."""

    event_id: str
    event_type: str
    received: float
    prompt: PendingPrompt | None = None  # the prompt change it applied, if any
    warning: str | None = None  # for the applied ack


class Session:
    def __init__(self, name: str, stream: Any, pacer: Pacer, prompt: str, prompt_id: str | None, seed: int,
                 info: SessionInfo) -> None:
        self.name = name
        self.info = info  # what plugins are told about this session
        self.stream = stream
        self.pacer = pacer
        self.prompt, self.prompt_id, self.seed = prompt, prompt_id, seed
        self.paused = False  # by a `pause` event
        self.idle_paused = False  # by the idle policy: no frame subscriber for a while
        self.idle, self.idle_after_s = "keep", 10.0
        self.unwatched_since: float | None = None  # monotonic time the last frame subscriber left
        self.block = 0  # index of the next block
        self.prompts: list[PendingPrompt] = []
        self.awaiting: list[Awaiting] = []
        self.latencies_ms: deque[float] = deque(maxlen=32)
        self._produced: deque[tuple[float, int]] = deque()  # (monotonic time, frames) of recent blocks

    @property
    def next_frame(self) -> int:
        return self.stream.frame_index

    def take_due_prompts(self) -> tuple[PendingPrompt | None, list[PendingPrompt]]:
        """The prompt to apply at this boundary (the last received among those due) and the
        ones it supersedes; prompts scheduled later stay queued."""
        boundary = self.next_frame
        due = [p for p in self.prompts if p.at_frame is None or p.at_frame <= boundary]
        if not due:
            return None, []
        self.prompts = [p for p in self.prompts if p not in due]
        return due[-1], due[:-1]

    @property
    def stopped(self) -> bool:
        """Not generating: paused by an event or by the idle policy."""
        return self.paused or self.idle_paused

    @property
    def pending_count(self) -> int:
        return len(self.prompts) + len(self.awaiting)

    def planned_frame(self, at_frame: int | None) -> int:
        """The block boundary an event arriving now is planned for."""
        fpb = self.pacer.frames_per_block
        if at_frame is None or at_frame <= self.next_frame:
            return self.next_frame
        return self.next_frame + -(-(at_frame - self.next_frame) // fpb) * fpb

    def apply_prompt(self, prompt: PendingPrompt, cond: Any) -> None:
        if prompt.transition == "blend":
            self.stream.blend_to(cond, blocks=prompt.blend_blocks)
        else:
            self.stream.switch_prompt(cond, transition=prompt.transition)
        self.prompt, self.prompt_id = prompt.text, prompt.event_id
        self.awaiting.append(Awaiting(prompt.event_id, prompt.event_type, prompt.received, prompt, prompt.warning))

    def produced(self, frames: int, now: float) -> list[Awaiting]:
        """Account for a block just made (after `pacer.generated` placed it on the clock);
        returns the events it is the first to reflect."""
        first = self.next_frame - frames
        self.block += 1
        self._produced.append((now, frames))
        while self._produced and self._produced[0][0] < now - 5.0:
            self._produced.popleft()
        done, self.awaiting = self.awaiting, []
        for item in done:
            if item.prompt is not None:
                self.latencies_ms.append(self.latency_ms(item, first))
        return done

    def latency_ms(self, item: Awaiting, first: int) -> float:
        """Event-to-frame latency: receipt to the due time of the first frame that shows it."""
        return max(0.0, (self.pacer.due(first) - item.received) * 1000.0)

    def fps_measured(self, now: float) -> float:
        """Frames produced per second over the last few seconds (0 until two blocks exist)."""
        if len(self._produced) < 2:
            return 0.0
        span = now - self._produced[0][0]
        frames = sum(n for _, n in list(self._produced)[1:])
        return frames / span if span > 0 else 0.0

    def latency(self) -> tuple[float | None, float | None]:
        """(last, mean) event-to-frame latency in ms over recent prompts."""
        if not self.latencies_ms:
            return None, None
        return self.latencies_ms[-1], sum(self.latencies_ms) / len(self.latencies_ms)

    def pause(self) -> None:
        self.paused = True
        self.pacer.stop()

    def resume(self) -> None:
        """Undo a `pause` event; the idle policy (chosen at `open`) and its own pause stay."""
        self.paused = False
