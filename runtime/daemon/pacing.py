"""Playback clock of one session: when each frame is due, and when the next block may start.

Due times are computed from an anchor, `due(n) = anchor_time + (n - anchor_frame) / fps`,
never by accumulating sleeps, so hours of streaming do not drift. When the generator falls
behind (a block is ready only after its first frame was due) or the session resumes from a
pause, the clock is re-anchored at "now" instead of bursting frames out to catch up. Pure:
both clocks are passed in, so tests drive it with fake time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Anchor:
    frame: int
    mono: float  # monotonic seconds: scheduling
    wall: float  # Unix seconds: what frames carry, so viewers on other clocks can play them


class Pacer:
    """Schedules one session. `lookahead_blocks` bounds how far ahead of the playback clock
    the generator may run: a block may start once its first frame is due within that many
    block durations. Smaller means lower event-to-frame latency but less slack for jitter."""

    def __init__(self, fps: float, frames_per_block: int, lookahead_blocks: float = 1.0) -> None:
        if fps <= 0 or frames_per_block < 1 or lookahead_blocks < 0:
            raise ValueError(f"bad pacing: fps={fps}, frames_per_block={frames_per_block}, lookahead={lookahead_blocks}")
        self.fps = fps
        self.frames_per_block = frames_per_block
        self.lookahead_blocks = lookahead_blocks
        self.anchor: Anchor | None = None  # None until the first block, and while paused
        self.last: Anchor | None = None  # the last frame scheduled: a new anchor never precedes it
        self.frames_late = 0

    @property
    def block_s(self) -> float:
        return self.frames_per_block / self.fps

    def due(self, frame: int) -> float:
        """Monotonic time at which `frame` is due on screen."""
        assert self.anchor is not None, "no anchor yet: the session has not produced a block"
        return self.anchor.mono + (frame - self.anchor.frame) / self.fps

    def due_wall(self, frame: int) -> float:
        assert self.anchor is not None, "no anchor yet: the session has not produced a block"
        return self.anchor.wall + (frame - self.anchor.frame) / self.fps

    def ready_at(self, next_frame: int) -> float:
        """Monotonic time from which the block starting at `next_frame` may be generated."""
        if self.anchor is None:
            return -math.inf  # nothing is playing: start at once
        return self.due(next_frame) - self.lookahead_blocks * self.block_s

    def generated(self, first_frame: int, count: int, mono: float, wall: float) -> None:
        """Record that frames [first_frame, first_frame + count) became ready at `mono`.
        Anchors the clock on the first block; re-anchors when the block came late. A new
        anchor (after a pause, say) lies at least one frame period after the last frame
        already scheduled, so due times never go backwards and nothing bursts out."""
        if self.anchor is None:
            self.anchor = self._after_last(first_frame, mono, wall)
        else:
            late_s = mono - self.due(first_frame)
            if late_s > 0:
                self.frames_late += min(count, math.ceil(late_s * self.fps))
                self.anchor = self._after_last(first_frame, mono, wall)
        last = first_frame + count - 1
        self.last = Anchor(last, self.due(last), self.due_wall(last))

    def _after_last(self, frame: int, mono: float, wall: float) -> Anchor:
        if self.last is None:
            return Anchor(frame, mono, wall)
        gap = (frame - self.last.frame) / self.fps
        return Anchor(frame, max(mono, self.last.mono + gap), max(wall, self.last.wall + gap))

    def stop(self) -> None:
        """Pause: forget the anchor, so the next block starts the clock afresh."""
        self.anchor = None

    def blocks_ahead(self, next_frame: int, mono: float) -> int:
        """Blocks generated but not yet due (at most the lookahead, plus one in flight)."""
        if self.anchor is None:
            return 0
        return max(0, math.ceil((self.due(next_frame) - mono) / self.block_s - 1e-9))
