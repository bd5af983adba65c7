"""Issue 12, phase 1's guarantees each checked against a live daemon on loopback TCP with the
real random-small pipeline: the pending and horizon bounds (memory released on close), the
idle policies chosen at `open`, admission order (a resend beats the rate limit), rate limits
keyed by the CURVE key, and pause/resume answered at once when they change nothing."""

from __future__ import annotations

import time

import pytest
import zmq.auth

from protocol import ErrorCode
from protocol import constants as C
from protocol.client import Controller, RemoteError, Viewer
from protocol.codec import decode_stream
from protocol.messages import Ack, Error, GameEvent, Prompt
from protocol.security import CurveClient
from runtime.daemon.daemon import DaemonConfig
from runtime.daemon.inprocess import serve_in_thread
from runtime.daemon.sockets import CurveServer
from runtime.pipeline import load_pipeline

TCP = "tcp://127.0.0.1:*"
FAR = 5_000  # frames ahead: a prompt scheduled this far stays pending for the whole test


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("random-small", max_streams=4)


def test_pending_bound_and_horizon_then_close_releases_them(pipe):
    config = DaemonConfig(control=TCP, stream=TCP, default_session=None, hwm=1000)
    with serve_in_thread(pipe, config) as daemon, Controller(daemon.endpoints[0]) as ctl:
        ctl.open("s", seed=0).result(20)
        status, = ctl.status("s")
        with pytest.raises(RemoteError) as far:  # beyond the horizon from the session's next frame
            ctl.send_prompt("a blue cube", session="s", at_frame=status.frame + C.MAX_SCHEDULE_FRAMES + 500).result(10)
        assert far.value.code == ErrorCode.TOO_FAR_AHEAD and str(C.MAX_SCHEDULE_FRAMES) in str(far.value)
        tickets = [ctl.send_prompt(f"a red ball {i % 5}", session="s", at_frame=status.frame + FAR)
                   for i in range(C.MAX_PENDING_EVENTS)]
        for ticket in tickets:
            assert ticket.accepted_frame(20) >= status.frame + FAR
        with pytest.raises(RemoteError) as full:
            ctl.send_prompt("one more", session="s", at_frame=status.frame + FAR).result(10)
        assert full.value.code == ErrorCode.TOO_MANY_PENDING
        with pytest.raises(RemoteError) as full:  # a seed waits for a boundary too: it counts
            ctl.set_seed(4, session="s").result(10)
        assert full.value.code == ErrorCode.TOO_MANY_PENDING
        assert ctl.status("s")[0].pending_events == C.MAX_PENDING_EVENTS
        assert len(daemon.recent._pending) == C.MAX_PENDING_EVENTS  # noqa: SLF001 - what the bound protects
        close = ctl.close_session("s")
        close.result(10)
        for ticket in tickets:  # every pending event gets its final answer: superseded by the close
            ack = ticket.result(10)
            assert ack.status == "superseded" and ack.superseded_by == close.event_id
        assert len(daemon.recent._pending) == 0  # noqa: SLF001 - nothing kept for a closed session
        ctl.open("s", seed=0).result(20)  # the same name starts with an empty budget
        again = [ctl.send_prompt("a red ball", session="s", at_frame=FAR) for _ in range(C.MAX_PENDING_EVENTS)]
        assert all(t.accepted_frame(20) is not None for t in again)


def _frame_of(ctl: Controller, session: str) -> tuple[int, bool]:
    status, = ctl.status(session)
    return status.frame, status.paused


def test_idle_policies_keep_pause_and_close(pipe):
    config = DaemonConfig(control=TCP, stream=TCP, default_session=None)
    with serve_in_thread(pipe, config) as daemon, Controller(daemon.endpoints[0]) as ctl:
        opened = [ctl.open(name, seed=0, idle=idle, idle_after_s=0.6)
                  for name, idle in (("k", "keep"), ("p", "pause"), ("c", "close"))]
        scheduled = ctl.send_prompt("a blue cube", session="c", at_frame=FAR)
        scheduled.accepted_frame(10)
        assert all(t.result(10).status == "applied" for t in opened)
        assert ctl.status("p")[0].idle == "pause"
        time.sleep(1.2)  # nobody subscribes to any of their frames
        keep_before, _ = _frame_of(ctl, "k")
        pause_before, paused = _frame_of(ctl, "p")
        assert paused
        ack = scheduled.result(10)  # the idle close answers what was pending
        assert ack.status == "superseded" and ack.superseded_by is None
        with pytest.raises(RemoteError) as gone:
            ctl.status("c")
        assert gone.value.code == ErrorCode.UNKNOWN_SESSION
        time.sleep(0.5)
        keep_after, _ = _frame_of(ctl, "k")
        assert keep_after > keep_before  # `keep` generates for nobody
        assert _frame_of(ctl, "p") == (pause_before, True)  # `pause` does not
        with Viewer(daemon.endpoints[1], sessions=["p"], acks=False, status=False) as view:
            picture = next(view.frames(timeout=10))  # a subscriber wakes it, from where it stopped
            assert picture.frame.frame == pause_before and not _frame_of(ctl, "p")[1]
        # A pause and resume by events leave the chosen idle policy in place.
        ctl.pause("p").result(10)
        ctl.resume("p")
        deadline = time.monotonic() + 10  # idle again after 0.6 s; a loaded 2-core machine takes longer
        while not ctl.status("p")[0].paused and time.monotonic() < deadline:
            time.sleep(0.1)
        status, = ctl.status("p")
        assert status.idle == "pause" and status.paused


def _answers(ctl: Controller, ids: set[str], until: str, timeout: float = 20) -> dict[str, list[Ack | Error]]:
    """Answers that come back on the controller's own connection to the events `ids`, read
    until `until` has one."""
    seen: dict[str, list[Ack | Error]] = {i: [] for i in ids}
    deadline = time.monotonic() + timeout
    while not seen[until]:
        assert ctl.control.poll(max(0.0, deadline - time.monotonic()) * 1000), f"no answer to {until}"
        msg = decode_stream(ctl.control.recv_multipart())
        if isinstance(msg, (Ack, Error)) and msg.event_id in seen:
            seen[msg.event_id].append(msg)
    return seen


def test_resend_beats_the_rate_limit(pipe):
    config = DaemonConfig(control=TCP, stream=TCP)
    with serve_in_thread(pipe, config) as daemon, Controller(daemon.endpoints[0], name="spender") as ctl:
        scheduled = Prompt(id=ctl.new_id(), client="spender", session="main", text="a blue cube", at_frame=FAR)
        planned = ctl.submit(scheduled).accepted_frame(10)
        spend = [GameEvent(id=ctl.new_id(), client="spender", session="main", name="tick") for _ in range(2 * C.EVENT_BURST)]
        for msg in spend:
            ctl.publish(msg)
        fresh = GameEvent(id=ctl.new_id(), client="spender", session="main", name="tick")
        ctl.publish(scheduled)  # the resend, after the budget is gone ...
        ctl.publish(fresh)  # ... and a new event, which the limit does drop
        seen = _answers(ctl, {scheduled.id, fresh.id}, until=fresh.id)
    assert isinstance(seen[fresh.id][0], Error) and seen[fresh.id][0].code == ErrorCode.RATE_LIMITED
    resend, = seen[scheduled.id]  # the pending event's `accepted`, sent again; no RATE_LIMITED
    assert isinstance(resend, Ack) and resend.status == "accepted" and resend.frame == planned


def _rotating_names(control: str, curve: CurveClient | None, count: int) -> list[Error]:
    """`count` game events, each under a new client name, sent at once on one connection; the
    RATE_LIMITED errors."""
    with Controller(control, curve=curve) as ctl:
        ctl.status()
        events = [GameEvent(id=ctl.new_id(), client=f"name{i}", session="main", name="tick") for i in range(count)]
        for msg in events:
            ctl.publish(msg)
        seen: dict[str, list[Ack | Error]] = {e.id: [] for e in events}
        while not all(seen.values()):  # answers need not come in the order sent (SPEC section 6)
            assert ctl.control.poll(20_000), f"{sum(map(bool, seen.values()))} of {count} answered"
            msg = decode_stream(ctl.control.recv_multipart())
            if isinstance(msg, (Ack, Error)) and msg.event_id in seen:
                seen[msg.event_id].append(msg)
    limited = [m for answers in seen.values() for m in answers if isinstance(m, Error)]
    assert all(e.code == ErrorCode.RATE_LIMITED for e in limited), limited
    return limited


def test_rotating_client_names_do_not_escape_the_limit(pipe, tmp_path):
    for folder, name in (("server", "daemon"), ("clients", "game")):
        (tmp_path / folder).mkdir()
        zmq.auth.create_certificates(tmp_path / folder, name)
    game = CurveClient.from_files(tmp_path / "server" / "daemon.key", tmp_path / "clients" / "game.key_secret")
    curve = CurveServer(tmp_path / "server" / "daemon.key_secret", tmp_path / "clients")
    count = 2 * C.EVENT_BURST
    # One key, one bucket: the burst passes, then about 100 per second of sending.
    with serve_in_thread(pipe, DaemonConfig(control=TCP, stream=TCP, curve=curve)) as daemon:
        limited = _rotating_names(daemon.endpoints[0], game, count)
    assert len(limited) >= count - C.EVENT_BURST - C.EVENTS_PER_SECOND
    assert all("key " in e.message for e in limited)
    # Without CURVE the bucket is the connection's (SPEC section 6), whatever names it uses.
    with serve_in_thread(pipe, DaemonConfig(control=TCP, stream=TCP)) as daemon:
        limited = _rotating_names(daemon.endpoints[0], None, count)
        assert len(limited) >= count - C.EVENT_BURST - C.EVENTS_PER_SECOND
        assert all("connection" in e.message for e in limited)
        # ... and each connection has its own: a second controller is not limited by the first.
        assert _rotating_names(daemon.endpoints[0], None, C.EVENT_BURST // 2) == []


def test_pause_while_paused_and_resume_while_running_are_applied_at_once(pipe):
    with serve_in_thread(pipe, DaemonConfig(control=TCP, stream=TCP)) as daemon, \
            Controller(daemon.endpoints[0]) as ctl:
        running = ctl.resume()
        ack = running.result(10)
        assert running.accepted is None and ack.status == "applied"  # no `accepted`: nothing to wait for
        assert ack.frame <= ctl.status()[0].frame
        paused = ctl.pause().result(10)
        again = ctl.pause()
        assert again.result(10).frame == paused.frame and again.accepted is None
        status, = ctl.status()
        assert status.paused and status.frame == paused.frame and status.pending_events == 0
        resumed = ctl.resume()
        assert resumed.result(10).frame == paused.frame and resumed.accepted is not None  # waits for a block
