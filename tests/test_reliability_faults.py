"""Issue 12: one bad session, one hostile message or one resend never takes the daemon down.

Real daemon on loopback TCP, real random-small pipeline; the fault is injected by making one
session's decoder raise (as a NaN guard or a CUDA error would), nothing is mocked."""

from __future__ import annotations

import time

import msgpack
import pytest
import zmq

from protocol import ErrorCode
from protocol.client import Controller, Picture, Viewer
from protocol.messages import Error, Heartbeat, Prompt
from runtime.daemon.daemon import DaemonConfig
from runtime.daemon.inprocess import serve_in_thread
from runtime.pipeline import load_pipeline

TCP = "tcp://127.0.0.1:*"


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("random-small", max_streams=4)


class DecoderFault(RuntimeError):
    pass


def test_failing_session_is_closed_alone_while_two_others_stream(pipe):
    config = DaemonConfig(control=TCP, stream=TCP, default_session=None)
    with serve_in_thread(pipe, config) as daemon, Controller(daemon.endpoints[0]) as ctl, \
            Viewer(daemon.endpoints[1], sessions=None, status=False) as view:
        for name in ("a", "b", "bad"):
            ctl.open(name, seed=1).result(20)
        pending = ctl.send_prompt("a blue cube", session="bad", at_frame=10_000)  # waits far ahead
        assert pending.accepted_frame(5) is not None

        def broken(latents):
            raise DecoderFault("injected decoder failure")

        daemon.sessions["bad"].stream.decoder.decode = broken  # the fault: this session's decoder raises
        errors, frames = [], {"a": [], "b": []}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(errors) < 2 or min(map(len, frames.values())) < 12):
            msg = view.recv(timeout=5)
            if isinstance(msg, Error):
                errors.append(msg)
            elif isinstance(msg, Picture) and msg.frame.session in frames:
                frames[msg.frame.session].append(msg.frame.frame)
        with pytest.raises(Exception) as info:
            pending.result(5)
        assert info.value.code == ErrorCode.INTERNAL and "DecoderFault" in str(info.value)
        assert "bad" not in daemon.sessions and {"a", "b"} <= set(daemon.sessions)
        assert any(e.event_id is None and e.session == "bad" and e.code == ErrorCode.INTERNAL for e in errors)
        for got in frames.values():  # the others keep streaming, contiguously
            assert len(got) >= 12 and got == list(range(got[0], got[0] + len(got)))
        assert ctl.send_prompt("a red ball", session="a").result(20).status == "applied"


def test_deeply_nested_message_and_resends_do_not_kill_the_daemon(pipe):
    nested = 1
    for _ in range(1000):
        nested = [nested]
    config = DaemonConfig(control=TCP, stream=TCP)
    with serve_in_thread(pipe, config) as daemon, Controller(daemon.endpoints[0]) as ctl, \
            Viewer(daemon.endpoints[1], sessions=(), acks=False, status=False) as errors:
        ctl.status()
        for field in ("payload", "name", "id", "session", "client"):
            body = {"v": 2, "type": "event", "id": "deep", "session": "main", "name": "x", field: nested}
            ctl.control.send_multipart([b"event", msgpack.packb(body)])
        got = [errors.recv(timeout=10) for _ in range(5)]
        assert all(isinstance(e, Error) and e.code == ErrorCode.MALFORMED for e in got)
        # A far-future prompt stays pending; thousands of newer events do not make the daemon
        # forget it, so its resend is not queued twice.
        scheduled = Prompt(id=ctl.new_id(), session="main", text="a blue cube", at_frame=5000)
        ticket = ctl.submit(scheduled)
        ticket.accepted_frame(10)
        daemon.recent.capacity = 8  # the same bound, made small so the test needs few events
        for i in range(20):  # answered events, each remembered for resends
            ctl.event("footstep", {"i": i}).result(10)
        assert len(daemon.recent) <= 9
        ctl.publish(scheduled)  # the resend
        assert ctl.status("main")[0].pending_events == 1
        assert ctl.send_prompt("a red ball").result(20).status == "applied"


def test_heartbeats_keep_their_period_during_a_long_step(pipe):
    config = DaemonConfig(control=TCP, stream=TCP, heartbeat_s=0.2)
    with serve_in_thread(pipe, config) as daemon, \
            Viewer(daemon.endpoints[1], sessions=(), acks=False, errors=False, status=False, heartbeats=True) as view:
        assert isinstance(view.recv(timeout=10), Heartbeat)
        step = pipe.engine.step

        def slow(streams):
            time.sleep(1.2)  # one block that takes six heartbeat periods
            return step(streams)

        pipe.engine.step = slow
        try:
            beats = [view.recv(timeout=1.0) for _ in range(8)]
        finally:
            del pipe.engine.step
        assert all(isinstance(b, Heartbeat) for b in beats)
        gaps = [b.time - a.time for a, b in zip(beats, beats[1:])]
        assert max(gaps) < 0.45, gaps


def test_viewers_that_never_read_and_clients_that_vanish_cost_the_others_nothing(pipe):
    """Default hwm: five viewers subscribed to everything never read; controllers and viewers
    vanish mid-stream, one with an event still pending. A reading viewer misses nothing and a
    controller's events are answered throughout."""
    context = zmq.Context()
    config = DaemonConfig(control=TCP, stream=TCP)
    try:
        with serve_in_thread(pipe, config) as daemon, Controller(daemon.endpoints[0]) as ctl, \
                Viewer(daemon.endpoints[1], acks=False, status=False) as view:
            control, stream = daemon.endpoints
            stalled = []
            for _ in range(5):
                sock = context.socket(zmq.SUB)
                sock.rcvhwm = 1
                sock.connect(stream)
                sock.subscribe(b"")
                stalled.append(sock)
            first = next(view.frames(timeout=20)).frame.frame
            for round_ in range(3):
                with Controller(control) as gone:  # pending far ahead, then gone
                    gone.send_prompt("a blue cube", at_frame=first + 10_000).accepted_frame(10)
                    gone.send_prompt("a red ball")  # not even waited for
                with Viewer(stream, sessions=None, encoding="jpeg") as brief:
                    next(brief.frames(timeout=10))
                assert ctl.send_prompt(("a green tree", "a red ball", "a blue cube")[round_]).result(10).status \
                    in ("applied", "superseded")
            target = first + 15 * pipe.frames_per_block
            pictures = []
            for picture in view.frames(timeout=10):
                pictures.append(picture)
                if picture.frame.frame >= target:
                    break
            status, = ctl.status("main")
    finally:
        context.destroy(linger=0)
    assert view.missed == 0 and status.pending_events >= 1  # the vanished controller's prompt still waits
    assert pictures[-1].frame.frame >= target


def test_a_reconnect_storm_of_short_lived_controllers(pipe):
    config = DaemonConfig(control=TCP, stream=TCP)
    with serve_in_thread(pipe, config) as daemon, Viewer(daemon.endpoints[1], acks=False, status=False) as view:
        first = next(view.frames(timeout=20)).frame.frame
        answered = 0
        for _ in range(4):  # 4 waves of 25 controllers, each connects, sends, waits, disconnects
            wave = [Controller(daemon.endpoints[0]) for _ in range(25)]
            tickets = [ctl.event("tick", {"n": i}) for i, ctl in enumerate(wave)]
            answered += sum(t.result(10).status == "applied" for t in tickets)
            for ctl in wave:
                ctl.close()
        last = next(view.frames(timeout=10)).frame.frame
        assert set(daemon.sessions) == {"main"}
    assert answered == 100 and view.missed == 0 and last > first
