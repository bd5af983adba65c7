"""Client behaviour over real sockets against a scripted peer that speaks the protocol.

The peer plays the daemon's socket roles (control SUB, stream XPUB) but answers from a
script, so lost messages and errors can be staged exactly; the real daemon is exercised in
tests/test_daemon_*.py.
"""

from __future__ import annotations

import asyncio
import time

import io
import threading
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
import zmq
from PIL import Image

from protocol import Ack, Error, ErrorCode, Frame, Prompt, Status, decode_control, encode
from protocol.client import Controller, Picture, RemoteError, Viewer
from protocol.messages import ControlMessage, StreamMessage

Reply = Callable[[ControlMessage, int], list[StreamMessage]]


class Peer:
    """Binds like a daemon; `reply(msg, copies_seen)` decides what to answer to each event."""

    def __init__(self, reply: Reply, on_subscribe: Callable[[bytes], list[StreamMessage]] = lambda _t: []) -> None:
        self.context = zmq.Context()
        self.control_router = self.context.socket(zmq.ROUTER)
        port = self.control_router.bind_to_random_port("tcp://127.0.0.1")
        self.stream_pub = self.context.socket(zmq.XPUB)
        self.stream_pub.setsockopt(zmq.XPUB_VERBOSER, 1)
        stream_port = self.stream_pub.bind_to_random_port("tcp://127.0.0.1")
        self.control, self.stream = f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{stream_port}"
        self.reply, self.on_subscribe = reply, on_subscribe
        self.copies: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.control_router, zmq.POLLIN)
        poller.register(self.stream_pub, zmq.POLLIN)
        while not self.stop.is_set():
            for sock, _ in poller.poll(20):
                if sock is self.stream_pub:
                    event = self.stream_pub.recv()
                    for message in self.on_subscribe(event[1:]) if event[:1] == b"\x01" else []:
                        self.stream_pub.send_multipart(encode(message))
                else:
                    route, *parts = self.control_router.recv_multipart()
                    msg = decode_control(parts)
                    self.copies[msg.id] += 1
                    for reply in self.reply(msg, self.copies[msg.id]):  # back to the sender's connection
                        self.control_router.send_multipart([route, *encode(reply)])

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.context.destroy(linger=0)


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def test_send_prompt_resends_until_acked(context):
    # The peer ignores the first two copies, as if they were lost to a slow joiner.
    def reply(msg, seen):
        return [Ack(id="a", event_id=msg.id, event_type=msg.TYPE, session="main", frame=12)] if seen >= 3 else []

    peer = Peer(reply)
    try:
        with Controller(peer.control, context=context, resend_interval=0.05) as ctl:
            ack = ctl.send_prompt("a red ball").result(timeout=5)
        assert ack.frame == 12 and ack.status == "applied"
        (_, copies), = peer.copies.items()  # every copy carried the same id
        assert copies >= 3
    finally:
        peer.close()


def test_unanswered_events_back_off_exponentially(context):
    """A daemon that never answers sees the event at 0, 0.1, 0.3, 0.7, 1.5, 2.3 s ... (intervals
    doubling up to the accepted interval), not every 0.1 s: under load, resends must not bury it."""
    peer = Peer(lambda msg, seen: [])
    try:
        with Controller(peer.control, context=context, resend_interval=0.1,
                        accepted_resend_interval=0.8) as ctl:
            ticket = ctl.send_prompt("a red ball")
            with pytest.raises(TimeoutError):
                ticket.result(timeout=2.4)
        (_, copies), = peer.copies.items()
        assert 5 <= ticket.sends <= 7 and copies <= ticket.sends  # a fixed 0.1 s interval: 24 sends
    finally:
        peer.close()


def test_error_reply_raises_remote_error(context):
    def reply(msg, _seen):
        return [Error(id="e", event_id=msg.id, code=int(ErrorCode.BAD_PROMPT), name="BAD_PROMPT",
                      message="unknown word 'zzz'", session="main"),
                Error(id="e2", event_id="someone-else", code=500, name="INTERNAL", message="not ours")]

    peer = Peer(reply)
    try:
        with Controller(peer.control, context=context, resend_interval=0.05) as ctl:
            with pytest.raises(RemoteError) as info:
                ctl.send_prompt("zzz").result(timeout=5)
        assert info.value.code == ErrorCode.BAD_PROMPT
        assert "zzz" in str(info.value)
    finally:
        peer.close()


def test_status_collects_replies_for_its_request(context):
    def status(session, request_id):
        return Status(id=f"s-{session}", session=session, model="toy", shape=(8, 8, 3), fps_target=16, fps_measured=16,
                      latency_ms=None, latency_mean_ms=None, pending_events=0, lookahead_blocks=1, cache_fill=0.0,
                      frames_late=0, frame=4, block=1, prompt_id=None, prompt="p", paused=False, seed=0,
                      request_id=request_id)

    def reply(msg, _seen):
        return [status("main", msg.id), status("side", msg.id), status("other", None),
                Ack(id="a", event_id=msg.id, event_type="status", session=None)]

    peer = Peer(reply)
    try:
        with Controller(peer.control, context=context, resend_interval=0.05) as ctl:
            statuses = ctl.status(timeout=5)
        assert sorted(s.session for s in statuses) == ["main", "side"]
    finally:
        peer.close()


def test_no_daemon_times_out(context):
    with Controller("tcp://127.0.0.1:1", context=context, resend_interval=0.05) as ctl:
        with pytest.raises(TimeoutError, match="no final ack"):
            ctl.send(Prompt(id="lonely", session="main", text="hi"), timeout=0.3)


def test_ticket_accepted_then_applied_without_blocking(context):
    # The peer answers the first copy with `accepted` only and the third with `applied`: the
    # ticket returns at once, reports the planned frame, and a timed-out result can be
    # asked again later (the event stays pending, it is not lost).
    def reply(msg, seen):
        if seen == 1:
            return [Ack(id="a1", event_id=msg.id, event_type=msg.TYPE, session="main", status="accepted", frame=96)]
        return [Ack(id="a2", event_id=msg.id, event_type=msg.TYPE, session="main", frame=96)] if seen >= 3 else []

    peer = Peer(reply)
    try:
        with Controller(peer.control, context=context, resend_interval=0.05,
                        accepted_resend_interval=0.2) as ctl:
            started = time.monotonic()
            ticket = ctl.send_prompt("a red ball", at_frame=96)
            assert time.monotonic() - started < 0.1 and not ticket.done()
            assert ticket.accepted_frame(timeout=5) == 96 and ticket.accepted.status == "accepted"
            with pytest.raises(TimeoutError):
                ticket.result(timeout=0.05)  # accepted, final ack not yet: resent only every 0.2 s
            ack = ticket.result(timeout=5)
        assert ack.status == "applied" and ack.frame == 96 and ctl.outstanding == 0
    finally:
        peer.close()


def test_ticket_is_awaitable(context):
    def reply(msg, seen):
        return [Ack(id="a", event_id=msg.id, event_type=msg.TYPE, session="main", frame=4)]

    peer = Peer(reply)
    try:
        with Controller(peer.control, context=context, resend_interval=0.05) as ctl:
            async def both():
                return await asyncio.gather(ctl.send_prompt("one"), ctl.send_prompt("two"))

            acks = asyncio.run(asyncio.wait_for(both(), timeout=5))
        assert [a.frame for a in acks] == [4, 4] and acks[0].event_id != acks[1].event_id
    finally:
        peer.close()


def _frame(session: str, encoding: str, image: np.ndarray, index: int) -> Frame:
    if encoding == "raw":
        data = image.tobytes()
    else:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=95)
        data = buf.getvalue()
    return Frame(id=f"f{index}", session=session, frame=index, block=0, t=0.0, wall=0.0, prompt_id=None,
                 shape=image.shape, encoding=encoding, data=data)


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_viewer_yields_pictures_of_its_sessions_only(context, encoding):
    rows = np.linspace(0, 255, 16, dtype=np.uint8)
    image = np.stack([np.tile(rows, (12, 1))] * 3, axis=-1)  # a smooth ramp: JPEG keeps it close

    def on_subscribe(topic):
        # Greet a frame subscriber at once with a frame of a prefix-sharing session, then ours.
        if topic.startswith(b"frame."):
            return [_frame("main2", encoding, image, 0), _frame("main", encoding, image, 7)]
        return []

    peer = Peer(lambda _m, _s: [], on_subscribe)
    try:
        with Viewer(peer.stream, sessions=["main"], encoding=encoding, context=context) as view:
            picture = next(view.frames(timeout=5))
        assert isinstance(picture, Picture)
        assert picture.frame.session == "main" and picture.frame.frame == 7
        assert picture.image.shape == (12, 16, 3) and picture.image.dtype == np.uint8
        tolerance = 0 if encoding == "raw" else 6
        assert np.abs(picture.image.astype(int) - image.astype(int)).max() <= tolerance
    finally:
        peer.close()


def test_viewer_counts_frames_lost_on_the_way(context):
    image = np.zeros((2, 2, 3), dtype=np.uint8)

    def on_subscribe(topic):
        return [_frame("main", "raw", image, i) for i in (3, 4, 7, 8)] if topic.startswith(b"frame.") else []

    peer = Peer(lambda _m, _s: [], on_subscribe)
    try:
        with Viewer(peer.stream, context=context) as view:
            indices = [p.frame.frame for p in view.frames(timeout=1)]
            assert indices == [3, 4, 7, 8]
            assert view.missed == 2
    finally:
        peer.close()
