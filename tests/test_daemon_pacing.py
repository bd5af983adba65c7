"""Pacing with a fake clock: no drift over hours, bounded lookahead, no burst after a pause
or a slow period. (The real-socket pacing check is in test_daemon_e2e.py.)"""

from __future__ import annotations

import math

import pytest

from runtime.daemon.admission import RateLimiter, RecentEvents
from runtime.daemon.pacing import Pacer
from runtime.daemon.subscriptions import Subscriptions

FPS, F = 16.0, 4  # a block of 4 frames lasts 0.25 s
WALL0 = 1.7e9


class Sim:
    """Drives a Pacer the way the daemon loop does: wait until ready, generate, record."""

    def __init__(self, pacer: Pacer, gen_s: float) -> None:
        self.pacer, self.gen_s, self.now, self.next_frame = pacer, gen_s, 100.0, 0
        self.starts: list[float] = []
        self.first_due: list[float] = []

    def block(self, gen_s: float | None = None) -> None:
        self.now = max(self.now, self.pacer.ready_at(self.next_frame))
        self.starts.append(self.now)
        self.now += self.gen_s if gen_s is None else gen_s
        self.pacer.generated(self.next_frame, F, self.now, self.now - 100.0 + WALL0)
        self.first_due.append(self.pacer.due(self.next_frame))
        assert self.pacer.due(self.next_frame) >= self.now - 1e-9  # never published after it was due
        self.next_frame += F


def test_ten_hours_without_drift():
    pacer = Pacer(FPS, F, lookahead_blocks=1.0)
    sim = Sim(pacer, gen_s=0.05)
    blocks = int(10 * 3600 * FPS / F)
    for _ in range(blocks):
        sim.block()
    assert pacer.frames_late == 0
    # Every block is due exactly block_s after the previous one, from the single first anchor.
    assert sim.first_due[-1] - sim.first_due[0] == pytest.approx((blocks - 1) * F / FPS, abs=1e-6)
    assert pacer.due_wall(sim.next_frame) - pacer.due(sim.next_frame) == pytest.approx(WALL0 - 100.0)
    # Generation starts once per block, one block (the lookahead) before the block is due.
    assert sim.first_due[-1] - sim.starts[-1] == pytest.approx(F / FPS, abs=1e-6)


@pytest.mark.parametrize("lookahead", [0.5, 1.0, 2.0])
def test_lookahead_bounds_how_far_ahead_frames_are_made(lookahead):
    pacer = Pacer(FPS, F, lookahead_blocks=lookahead)
    sim = Sim(pacer, gen_s=0.01)
    for _ in range(50):
        sim.block()
        ahead_s = pacer.due(sim.next_frame - F) - sim.now
        assert ahead_s <= lookahead * pacer.block_s + 1e-9
        assert pacer.blocks_ahead(sim.next_frame, sim.now) <= math.ceil(lookahead) + 1
    assert pacer.frames_late == 0


def test_pause_resume_reanchors_without_burst():
    pacer = Pacer(FPS, F)
    sim = Sim(pacer, gen_s=0.05)
    for _ in range(8):
        sim.block()
    pacer.stop()
    sim.now += 3600.0  # an hour paused
    resume_at = sim.now
    for _ in range(8):
        sim.block()
    # The first block after resume starts at once and is due when it is ready ...
    assert sim.starts[8] == resume_at
    assert sim.first_due[8] == pytest.approx(resume_at + 0.05)
    # ... and later blocks start one block duration apart: no burst to make up the hour.
    gaps = [b - a for a, b in zip(sim.starts[9:], sim.starts[10:])]
    assert gaps == pytest.approx([F / FPS] * len(gaps))
    assert pacer.frames_late == 0


def test_slow_period_counts_late_frames_then_recovers_without_burst():
    pacer = Pacer(FPS, F)
    sim = Sim(pacer, gen_s=0.05)
    for _ in range(4):
        sim.block()
    sim.block(gen_s=1.0)  # a 1 s hiccup: the block is 0.75 s late (12 frames), only 4 of its own late
    assert pacer.frames_late == 4
    hiccup_due = sim.first_due[-1]
    assert hiccup_due == pytest.approx(sim.now)  # re-anchored: due when ready, not in the past
    for _ in range(6):
        sim.block()
    assert pacer.frames_late == 4  # recovered
    starts = sim.starts[6:]
    assert [b - a for a, b in zip(starts, starts[1:])] == pytest.approx([F / FPS] * (len(starts) - 1))


def test_a_too_slow_model_runs_flat_out_without_accumulating_debt():
    pacer = Pacer(FPS, F)
    sim = Sim(pacer, gen_s=0.4)  # needs 0.4 s for 0.25 s of video
    for _ in range(20):
        sim.block()
    gaps = [b - a for a, b in zip(sim.starts, sim.starts[1:])]
    assert gaps == pytest.approx([0.4] * len(gaps))  # back to back, never idle, never bursting
    assert pacer.frames_late > 0


def test_rate_limiter_bucket():
    limiter = RateLimiter(rate=10.0, burst=5)
    assert [limiter.allow("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert limiter.allow("b", 0.0)  # buckets are per client
    assert not limiter.allow("a", 0.05)  # half a token refilled
    assert limiter.allow("a", 0.1)


def test_rate_limiter_table_is_bounded():
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=3)
    for i in range(10):
        limiter.allow(f"c{i}", 0.0)
    assert len(limiter._buckets) == 3


def test_recent_events_never_forget_a_pending_id():
    # The resend bug of issue 12: a still-pending id forgotten after `capacity` newer events
    # was queued a second time. Pending ids stay until answered; answered ones age out.
    recent = RecentEvents(capacity=2)
    recent.pending("a", "accepted-a")
    for i in range(10):
        recent.answered(f"b{i}", [f"ack-b{i}"])
    assert "a" in recent and recent.answers("a") == ["accepted-a"]  # a resend gets its `accepted` again
    assert "b0" not in recent and recent.answers("b9") == ["ack-b9"] and len(recent) == 3
    recent.answered("a", ["ack-a"])
    assert recent.answers("a") == ["ack-a"] and len(recent) == 2


def test_pacer_resume_never_schedules_before_the_last_frame():
    # Issue 12: after a quick pause + resume, a frame was due 0.27 s before the previous one.
    pacer = Pacer(fps=10.0, frames_per_block=4, lookahead_blocks=1.0)
    pacer.generated(0, 4, mono=100.0, wall=1000.0)  # frames 0..3 due at 100.0 .. 100.3
    pacer.generated(4, 4, mono=100.05, wall=1000.05)  # generated ahead: due 100.4 .. 100.7
    pacer.stop()  # pause
    pacer.generated(8, 4, mono=100.1, wall=1000.1)  # resumed at once
    dues = [pacer.due(n) for n in range(4, 12)]
    assert all(b > a for a, b in zip(dues, dues[1:]))
    assert pacer.due(8) == pytest.approx(100.8) and pacer.due_wall(8) == pytest.approx(1000.8)
    pacer.stop()
    pacer.generated(12, 4, mono=200.0, wall=2000.0)  # a long pause: the clock starts at the resume time
    assert pacer.due(12) == 200.0


def test_subscriptions_count_prefixes():
    subs = Subscriptions()
    assert subs.update(b"\x01frame.raw.main") == b"frame.raw.main"
    subs.update(b"\x01frame.raw.main")
    assert subs.wants(b"frame.raw.main") and subs.wants(b"frame.raw.main2")
    assert not subs.wants(b"frame.jpeg.main")
    assert subs.update(b"\x00frame.raw.main") is None
    assert subs.wants(b"frame.raw.main")  # one subscriber is left
    subs.update(b"\x00frame.raw.main")
    assert not subs.wants(b"frame.raw.main")
    subs.update(b"\x00never")  # an unsubscribe without a subscribe is ignored
    subs.update(b"\x01")  # subscribe to everything
    assert subs.wants(b"frame.jpeg.x")
