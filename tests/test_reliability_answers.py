"""Answers come back on the sender's own connection and survive a burst (issue 12).

With protocol version 2 the answers shared the stream socket's queue (64 messages per
subscriber by default) and a burst of 300 events lost about a quarter of them on first
publication, even for a controller that read continuously. Since version 3 they travel on the
control connection, whose queue holds `ANSWER_HWM` answers: every event of a burst is answered
once, with no resend, at the default `--hwm`.
"""

from __future__ import annotations

import threading
import time

import pytest

from protocol import constants as C
from protocol.client import Controller
from protocol.codec import decode_stream
from protocol.messages import Ack, Error, GameEvent, Prompt
from runtime.daemon.daemon import DaemonConfig
from runtime.daemon.inprocess import serve_in_thread
from runtime.pipeline import load_pipeline

TCP = "tcp://127.0.0.1:*"


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("random-small", max_streams=2)


def test_a_burst_is_answered_in_full_without_resends(pipe):
    """A whole rate budget (200 events: game events answered at once, prompts accepted and
    then superseded or applied) from each of three controllers at once: 616 answers, with the
    stream socket's default high-water mark of 64."""
    config = DaemonConfig(control=TCP, stream=TCP)
    assert config.hwm == 64
    with serve_in_thread(pipe, config) as daemon:
        controllers = [Controller(daemon.endpoints[0], name=f"burst{i}") for i in range(3)]
        try:
            for ctl in controllers:
                ctl.status()  # connected
            bursts = []
            for i, ctl in enumerate(controllers):
                prompts = [Prompt(id=ctl.new_id(), client=ctl.name, session="main", text=f"a red ball {n}")
                           for n in range(C.MAX_PENDING_EVENTS // 4 if i == 0 else 0)]
                ticks = [GameEvent(id=ctl.new_id(), client=ctl.name, session="main", name="tick")
                         for _ in range(C.EVENT_BURST - len(prompts))]
                bursts.append((ctl, prompts + ticks))
            for ctl, messages in bursts:  # all sent before any is read; never resent
                for msg in messages:
                    ctl.publish(msg)
            answers = [_collect(ctl, messages) for ctl, messages in bursts]
        finally:
            for ctl in controllers:
                ctl.close()
    for (ctl, messages), seen in zip(bursts, answers):
        finals = {i: [a for a in seen[i] if isinstance(a, Error) or a.final] for i in (m.id for m in messages)}
        missing = [i for i, f in finals.items() if not f]
        assert not missing, f"{ctl.name}: {len(missing)} of {len(messages)} events got no final answer"
        assert all(len(f) == 1 for f in finals.values())
        assert not any(isinstance(f[0], Error) for f in finals.values())
        prompts = [m.id for m in messages if isinstance(m, Prompt)]
        assert all(seen[i][0].status == "accepted" for i in prompts)  # then applied or superseded


def _collect(ctl: Controller, messages: list, timeout: float = 30.0) -> dict[str, list[Ack | Error]]:
    """What comes back on the controller's connection for each of `messages`, read until every
    one has a final answer or `timeout` passes."""
    seen: dict[str, list[Ack | Error]] = {m.id: [] for m in messages}
    unanswered = set(seen)
    deadline = time.monotonic() + timeout
    while unanswered and ctl.control.poll(max(0.0, deadline - time.monotonic()) * 1000):
        msg = decode_stream(ctl.control.recv_multipart())
        if isinstance(msg, (Ack, Error)) and msg.event_id in seen:
            seen[msg.event_id].append(msg)
            if isinstance(msg, Error) or msg.final:
                unanswered.discard(msg.event_id)
    return seen


def test_answers_go_to_their_sender_only(pipe):
    """Each controller hears its own answers, not the others' (no fan-out), and a malformed
    message's error goes back to the connection that sent it."""
    with serve_in_thread(pipe, DaemonConfig(control=TCP, stream=TCP)) as daemon, \
            Controller(daemon.endpoints[0], name="a") as a, Controller(daemon.endpoints[0], name="b") as b:
        a.status()
        b.status()
        mine = a.event("tick").result(10)
        a.control.send_multipart([b"prompt", b"\xc1 not msgpack"])
        assert a.control.poll(10_000)
        error = decode_stream(a.control.recv_multipart())
        assert isinstance(error, Error) and error.code == C.ErrorCode.MALFORMED
        time.sleep(0.2)
        heard_by_b = []
        while b.control.poll(0):
            heard_by_b.append(decode_stream(b.control.recv_multipart()))
    assert mine.status == "applied"
    assert heard_by_b == []


def test_an_answer_to_a_vanished_controller_is_counted_not_fatal(pipe):
    """The answer to an event whose controller has gone cannot be delivered: the daemon counts
    it (ROUTER_MANDATORY makes the loss visible) and goes on answering everyone else."""
    with serve_in_thread(pipe, DaemonConfig(control=TCP, stream=TCP)) as daemon, \
            Controller(daemon.endpoints[0], name="ok") as ok:
        frame = ok.status("main")[0].frame
        with Controller(daemon.endpoints[0], name="gone") as gone:
            gone.send_prompt("a blue cube", at_frame=frame + 24).accepted_frame(10)
        deadline = time.monotonic() + 30
        while daemon.answers_dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.answers_dropped >= 1
        assert ok.status("main")[0].answers_dropped == daemon.answers_dropped  # what a client can see
        assert ok.event("tick").result(10).status == "applied"


def test_control_is_admitted_while_a_block_is_generated(pipe):
    """During a long block the daemon reads control: a resend of a pending event is answered
    before the block ends; a new event is handled right after it, planned for the block after
    the one in progress (SPEC section 6, Timing)."""
    with serve_in_thread(pipe, DaemonConfig(control=TCP, stream=TCP)) as daemon, \
            Controller(daemon.endpoints[0], name="during") as ctl:
        frame = ctl.status("main")[0].frame
        pending = Prompt(id=ctl.new_id(), client=ctl.name, session="main", text="a blue cube", at_frame=frame + 300)
        planned = ctl.submit(pending).accepted_frame(10)
        started, finished = threading.Event(), threading.Event()
        step = pipe.engine.step

        def slow(streams):
            started.set()
            time.sleep(1.5)
            out = step(streams)
            finished.set()
            return out

        pipe.engine.step = slow
        try:
            assert started.wait(10)
            while ctl.control.poll(0):  # nothing from before: what comes next answers the resend
                ctl.control.recv_multipart()
            ctl.publish(pending)  # a resend, while the block is in progress
            tick = GameEvent(id=ctl.new_id(), client=ctl.name, session="main", name="tick")
            ctl.publish(tick)
            assert ctl.control.poll(10_000)
            resend = [decode_stream(ctl.control.recv_multipart())]
            answered_during_block = not finished.is_set()
            after = _collect(ctl, [tick], timeout=10)[tick.id]
        finally:
            del pipe.engine.step
    assert resend[0].event_id == pending.id and resend[0].status == "accepted" and resend[0].frame == planned
    assert answered_during_block
    assert finished.is_set() and [a.status for a in after] == ["applied"]
