"""Python clients: `Controller` steers a daemon, `Viewer` watches its stream.

    with Controller() as ctl:
        ticket = ctl.send_prompt("a red ball rolls over green grass")   # returns at once
        print("planned for frame", ticket.accepted_frame(timeout=1))
        print("visible from frame", ticket.result(timeout=10).frame)      # or: await ticket

    with Viewer() as view:
        for picture in view.frames(timeout=5):
            print(picture.frame.frame, picture.image.shape)

The controller's DEALER socket carries its events to the daemon and their answers back.
An answer can still be lost (a daemon restart, a connection that drops), so the controller
resends an event until it is answered; the daemon treats a repeated id as the same event,
so resending is safe. No sleeps are involved.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from protocol import constants as C
from protocol.codec import decode_stream, encode
from protocol.constants import ErrorCode
from protocol.messages import (Ack, Close, ControlMessage, Error, EventNotice, Frame, GameEvent, Heartbeat, Open,
                               Pause, Prompt, Resume, Seed, Status, StatusRequest, StreamMessage)
from protocol.security import CurveClient


class RemoteError(Exception):
    """The daemon refused an event; `error` is its error message."""

    def __init__(self, error: Error) -> None:
        super().__init__(f"{error.name} ({error.code}): {error.message}")
        self.error = error
        self.code = ErrorCode(error.code) if error.code in ErrorCode._value2member_map_ else error.code


@dataclass(frozen=True)
class Picture:
    """A received frame: its header and the pixels as an (h, w, 3) uint8 array."""

    frame: Frame
    image: np.ndarray


def to_image(frame: Frame) -> np.ndarray:
    """Pixels of a frame. Raw frames are viewed in place (read-only, no copy)."""
    if frame.encoding == "raw":
        return np.frombuffer(frame.data, dtype=np.uint8).reshape(frame.shape)
    from PIL import Image  # only JPEG subscribers need Pillow

    return np.asarray(Image.open(io.BytesIO(bytes(frame.data))).convert("RGB"))


def _socket(context: zmq.Context, kind: int, endpoint: str, curve: CurveClient | None) -> zmq.Socket:
    sock = context.socket(kind)
    sock.linger = 0
    if curve is not None:
        curve.apply(sock)
    sock.connect(endpoint)
    return sock


class Ticket:
    """One event on its way: `accepted` (the planned frame) comes first for events that wait
    for a block boundary, then the final ack. `result(timeout)` waits for the final ack;
    `await ticket` does the same inside asyncio. Either raises RemoteError if the daemon
    refused the event. Waiting pumps the controller, so other tickets progress too."""

    def __init__(self, controller: Controller, msg: ControlMessage) -> None:
        self.msg = msg
        self.accepted: Ack | None = None
        self.sends = 1  # times the event was published (first send and resends)
        self.statuses: dict[str, Status] = {}  # for status requests: the answers so far
        self._controller = controller
        self._final: Ack | None = None
        self._error: Error | None = None

    @property
    def event_id(self) -> str:
        return self.msg.id

    def done(self) -> bool:
        return self._final is not None or self._error is not None

    def result(self, timeout: float | None = 10.0) -> Ack:
        """The final ack (`applied` or `superseded`); TimeoutError if it did not come in time
        (the event may still be pending: a later `result` call can still get it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"no final ack for {self.msg.TYPE} event {self.msg.id} within {timeout} s"
                                   + ("" if self.accepted else "; is the daemon running?"))
            self._controller.pump(left if left is None else min(left, self._controller.resend_interval))
        if self._error is not None:
            raise RemoteError(self._error)
        assert self._final is not None
        return self._final

    def accepted_frame(self, timeout: float | None = 10.0) -> int | None:
        """The frame the event is planned for (from `accepted`, or from the final ack if it
        came without one); RemoteError if refused."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.accepted is None and not self.done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"{self.msg.TYPE} event {self.msg.id} not accepted within {timeout} s")
            self._controller.pump(left if left is None else min(left, self._controller.resend_interval))
        if self._error is not None:
            raise RemoteError(self._error)
        return (self.accepted or self._final).frame  # type: ignore[union-attr]

    def __await__(self):  # noqa: ANN204 - a generator, as the await protocol wants
        return self._wait().__await__()

    async def _wait(self) -> Ack:
        while not self.done():
            self._controller.pump(0)
            if not self.done():
                await asyncio.sleep(0.005)
        return self.result(0)

    def _settle(self, reply: Ack | Error | Status) -> None:
        if isinstance(reply, Status):
            self.statuses[reply.session] = reply
        elif isinstance(reply, Error):
            self._error = reply
        elif reply.final:
            self._final = reply
        else:
            self.accepted = reply


class Controller:
    """Sends events to a daemon's control socket and reads their answers from the same
    connection (SPEC section 1). Every event method returns a `Ticket` at once; nothing
    blocks until you ask for a result. An unanswered event is resent after
    `resend_interval` s, then after twice as long each time up to `accepted_resend_interval`
    (exponential backoff: a daemon slow to answer under load is not buried in resends); an
    accepted one (the daemon has it) every `accepted_resend_interval` s in case its final ack
    was lost."""

    def __init__(self, control: str = C.DEFAULT_CONTROL_ENDPOINT, *, name: str | None = None,
                 context: zmq.Context | None = None, curve: CurveClient | None = None,
                 resend_interval: float = C.RESEND_S, accepted_resend_interval: float = C.ACCEPTED_RESEND_S) -> None:
        self.name = name or f"ctl-{uuid.uuid4().hex[:8]}"
        self.resend_interval = resend_interval
        self.accepted_resend_interval = accepted_resend_interval
        self.control = _socket(context or zmq.Context.instance(), zmq.DEALER, control, curve)
        self._serial = 0
        self._open: dict[str, tuple[Ticket, float]] = {}  # event id -> (ticket, next resend time)

    def new_id(self) -> str:
        """A fresh event id, unique across controllers."""
        self._serial += 1
        return f"{self.name}-{self._serial}-{uuid.uuid4().hex[:8]}"

    def publish(self, msg: ControlMessage) -> None:
        """Send once, without waiting: queued until the connection is up; dropped if the
        queue is full (no daemon for a long while), which a resend makes good."""
        try:
            self.control.send_multipart(encode(msg), zmq.NOBLOCK)
        except zmq.Again:
            pass

    def submit(self, msg: ControlMessage) -> Ticket:
        """Publish `msg` and return its ticket; it is resent while its tickets are waited on."""
        ticket = Ticket(self, msg)
        self.publish(msg)
        self._open[msg.id] = (ticket, time.monotonic() + self.resend_interval)
        return ticket

    def send(self, msg: ControlMessage, timeout: float = 10.0) -> Ack:
        """Publish `msg` and wait for its final ack; RemoteError if the daemon refuses it."""
        return self.submit(msg).result(timeout)

    def _resend_wait(self, ticket: Ticket) -> float:
        if ticket.accepted:
            return self.accepted_resend_interval
        return min(self.resend_interval * 2 ** (ticket.sends - 1), self.accepted_resend_interval)

    @property
    def outstanding(self) -> int:
        """Events sent and not yet finally answered."""
        return len(self._open)

    def pump(self, timeout: float | None = 0.0) -> None:
        """Read what arrived within `timeout` s (None: until something does), settle tickets
        and resend the events that are due."""
        now = time.monotonic()
        for ticket, resend_at in list(self._open.values()):
            if resend_at <= now:
                self.publish(ticket.msg)
                ticket.sends += 1
                self._open[ticket.event_id] = (ticket, now + self._resend_wait(ticket))
        if self._open:
            next_resend = min(at for _, at in self._open.values()) - now
            timeout = next_resend if timeout is None else min(timeout, next_resend)
        if not self.control.poll(None if timeout is None else max(0.0, timeout) * 1000):
            return
        while True:
            try:
                reply = decode_stream(self.control.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            key = reply.request_id if isinstance(reply, Status) else getattr(reply, "event_id", None)
            entry = self._open.get(key) if key is not None else None
            if entry is None:
                continue
            ticket = entry[0]
            ticket._settle(reply)  # noqa: SLF001 - the controller is the ticket's only writer
            if ticket.done():
                del self._open[key]
            elif ticket.accepted is not None and isinstance(reply, Ack):
                self._open[key] = (ticket, time.monotonic() + self.accepted_resend_interval)

    def open(self, session: str, seed: int = 0, prompt: str | None = None, **options: Any) -> Ticket:
        """Open a session; `options` are the optional fields of `open` (model, fps, width, height, idle, idle_after_s)."""
        return self.submit(Open(id=self.new_id(), client=self.name, session=session, seed=seed, prompt=prompt, **options))

    def close_session(self, session: str) -> Ticket:
        return self.submit(Close(id=self.new_id(), client=self.name, session=session))

    def send_prompt(self, text: str, session: str = C.DEFAULT_SESSION, transition: str = "recache",
                    blend_blocks: int | None = None, at_frame: int | None = None) -> Ticket:
        """Switch the prompt; the final ack names the first frame showing it (or says 'superseded')."""
        return self.submit(Prompt(id=self.new_id(), client=self.name, session=session, text=text, transition=transition,
                                  blend_blocks=blend_blocks, at_frame=at_frame))

    def pause(self, session: str = C.DEFAULT_SESSION) -> Ticket:
        return self.submit(Pause(id=self.new_id(), client=self.name, session=session))

    def resume(self, session: str = C.DEFAULT_SESSION) -> Ticket:
        return self.submit(Resume(id=self.new_id(), client=self.name, session=session))

    def set_seed(self, seed: int, session: str = C.DEFAULT_SESSION) -> Ticket:
        return self.submit(Seed(id=self.new_id(), client=self.name, session=session, seed=seed))

    def event(self, name: str, payload: dict[str, Any] | None = None, session: str = C.DEFAULT_SESSION) -> Ticket:
        """Send a named game event; the daemon's event hook may turn it into a prompt."""
        return self.submit(GameEvent(id=self.new_id(), client=self.name, session=session, name=name,
                                     payload=payload or {}))

    def status(self, session: str | None = None, timeout: float = 10.0) -> list[Status]:
        """The current status of one session, or of all sessions (blocks up to `timeout`)."""
        ticket = self.submit(StatusRequest(id=self.new_id(), client=self.name, session=session))
        ticket.result(timeout)
        return list(ticket.statuses.values())

    def close(self) -> None:
        self.control.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Received = Picture | Ack | Error | Status | Heartbeat | EventNotice


class Viewer:
    """Subscribes to a daemon's stream: frames of some sessions in one encoding, plus the
    acks, errors, status, heartbeats and relayed game events asked for. Subscribing to status makes the daemon
    send the current status of every session at once (late-joiner greeting)."""

    def __init__(self, stream: str = C.DEFAULT_STREAM_ENDPOINT, *, sessions: Iterable[str] | None = (C.DEFAULT_SESSION,),
                 encoding: str = "raw", acks: bool = True, errors: bool = True, status: bool = True,
                 heartbeats: bool = False, events: bool = False, context: zmq.Context | None = None,
                 curve: CurveClient | None = None) -> None:
        if encoding not in C.ENCODINGS:
            raise ValueError(f"encoding must be one of {C.ENCODINGS}, got {encoding!r}")
        self.sessions = None if sessions is None else frozenset(sessions)
        self.missed = 0  # frames lost on the way (gaps in frame indices), e.g. at the high-water mark
        self._last_frame: dict[str, int] = {}
        self.stream_sub = _socket(context or zmq.Context.instance(), zmq.SUB, stream, curve)
        prefixes = [f"{C.TOPIC_FRAME}.{encoding}."] if self.sessions is None else [
            f"{C.TOPIC_FRAME}.{encoding}.{s}" for s in sorted(self.sessions)]
        wanted = {C.TOPIC_STATUS + ".": status, C.TOPIC_ACK: acks, C.TOPIC_ERROR: errors, C.TOPIC_HEARTBEAT: heartbeats}
        if events:  # game events the daemon relays, for the same sessions as the frames
            prefixes += [f"{C.TOPIC_EVENT}."] if self.sessions is None else [
                f"{C.TOPIC_EVENT}.{s}" for s in sorted(self.sessions)]
        for topic in prefixes + [t for t, on in wanted.items() if on]:
            self.stream_sub.subscribe(topic.encode())
        self._heartbeats = heartbeats
        self._early: deque[Received] = deque()  # what arrived during `wait_ready`, for `recv`

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Return once the daemon has this viewer's subscriptions, so that nothing it publishes
        from now on is missed (ZeroMQ drops what is published before a subscription arrives:
        open a session after this, not before, to see its first frames). The daemon greets a
        new heartbeat subscriber with a heartbeat at once and subscriptions take effect in
        order, so one heartbeat proves them all. What arrives meanwhile stays queued for `recv`;
        TimeoutError if no daemon answers."""
        topic = C.TOPIC_HEARTBEAT.encode()
        if not self._heartbeats:
            self.stream_sub.subscribe(topic)
        deadline = time.monotonic() + timeout
        try:
            while not isinstance(msg := self._receive(max(0.0, deadline - time.monotonic())), Heartbeat):
                if msg is None:
                    raise TimeoutError(f"no heartbeat from the daemon within {timeout} s; is it running?")
                self._early.append(msg)
            if self._heartbeats:
                self._early.append(msg)
        finally:
            if not self._heartbeats:
                self.stream_sub.unsubscribe(topic)

    def recv(self, timeout: float | None = None) -> Received | None:
        """The next message (frames as Pictures), or None if nothing came within `timeout` s."""
        if self._early:
            return self._early.popleft()
        return self._receive(timeout)

    def _receive(self, timeout: float | None) -> Received | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
            if not self.stream_sub.poll(left):
                return None
            msg = decode_stream(self.stream_sub.recv_multipart(copy=False))
            if not self._wanted(msg):
                continue  # topic prefixes overlap: 'frame.raw.main' also matches 'main2'
            if isinstance(msg, Frame):
                self._count_gap(msg)
                return Picture(msg, to_image(msg))
            assert isinstance(msg, (Ack, Error, Status, Heartbeat, EventNotice))
            return msg

    def _count_gap(self, frame: Frame) -> None:
        last = self._last_frame.get(frame.session)
        if last is not None and frame.frame > last + 1:
            self.missed += frame.frame - last - 1
        self._last_frame[frame.session] = frame.frame  # a lower index: the session was reopened

    def _wanted(self, msg: StreamMessage) -> bool:
        session = getattr(msg, "session", None)
        return self.sessions is None or not isinstance(msg, (Frame, Status, EventNotice)) or session in self.sessions

    def __iter__(self) -> Iterator[Received]:
        while True:
            msg = self.recv()
            assert msg is not None
            yield msg

    def frames(self, timeout: float | None = None) -> Iterator[Picture]:
        """Pictures only; stops when none arrives for `timeout` seconds."""
        while (msg := self.recv(timeout)) is not None:
            if isinstance(msg, Picture):
                yield msg

    def close(self) -> None:
        self.stream_sub.close()

    def __enter__(self) -> Viewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
