"""Python clients: `Controller` steers a daemon, `Viewer` watches its stream.

    with Controller() as ctl:
        ack = ctl.send_prompt("a red ball rolls over green grass")
        print("visible from frame", ack.frame)

    with Viewer() as view:
        for picture in view.frames(timeout=5):
            print(picture.frame.frame, picture.image.shape)

PUB/SUB loses whatever is sent before a connection (and its subscriptions) is up. The
controller therefore resends an event until its ack or error arrives; the daemon treats a
repeated id as the same event, so resending is safe. No sleeps are involved.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from protocol import constants as C
from protocol.codec import decode_stream, encode
from protocol.constants import ErrorCode
from protocol.messages import (Ack, Close, ControlMessage, Error, Frame, GameEvent, Heartbeat, Open, Pause,
                               Prompt, Resume, Seed, Status, StatusRequest, StreamMessage)
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


class Controller:
    """Publishes events to a daemon's control socket and waits for their acks on its stream."""

    def __init__(self, control: str = C.DEFAULT_CONTROL_ENDPOINT, stream: str = C.DEFAULT_STREAM_ENDPOINT, *,
                 name: str | None = None, context: zmq.Context | None = None, curve: CurveClient | None = None,
                 resend_interval: float = 0.25) -> None:
        self.name = name or f"ctl-{uuid.uuid4().hex[:8]}"
        self.resend_interval = resend_interval
        context = context or zmq.Context.instance()
        self.control_pub = _socket(context, zmq.PUB, control, curve)
        self.stream_sub = _socket(context, zmq.SUB, stream, curve)
        # status first: subscriptions take effect in order, so once acks arrive, the status
        # messages a status request produces (sent before its ack) arrive too.
        for topic in (C.TOPIC_STATUS + ".", C.TOPIC_ACK, C.TOPIC_ERROR):
            self.stream_sub.subscribe(topic.encode())
        self._serial = 0

    def new_id(self) -> str:
        """A fresh event id, unique across controllers."""
        self._serial += 1
        return f"{self.name}-{self._serial}-{uuid.uuid4().hex[:8]}"

    def publish(self, msg: ControlMessage) -> None:
        """Send once, without waiting (an event may be lost before the connection is up)."""
        self.control_pub.send_multipart(encode(msg))

    def send(self, msg: ControlMessage, timeout: float = 10.0) -> Ack:
        """Publish `msg` until the daemon acks it; raise RemoteError if it answers with an error."""
        ack, _ = self._exchange(msg, timeout)
        return ack

    def _exchange(self, msg: ControlMessage, timeout: float) -> tuple[Ack, list[Status]]:
        deadline = time.monotonic() + timeout
        statuses: dict[str, Status] = {}
        while True:
            self.publish(msg)
            resend_at = min(time.monotonic() + self.resend_interval, deadline)
            while (left := resend_at - time.monotonic()) > 0:
                if not self.stream_sub.poll(left * 1000):
                    continue
                reply = decode_stream(self.stream_sub.recv_multipart())
                if isinstance(reply, Status) and reply.request_id == msg.id:
                    statuses[reply.session] = reply
                elif isinstance(reply, Ack) and reply.event_id == msg.id:
                    return reply, list(statuses.values())
                elif isinstance(reply, Error) and reply.event_id == msg.id:
                    raise RemoteError(reply)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no ack for {msg.TYPE} event {msg.id} within {timeout} s; is the daemon running?")

    def open(self, session: str, seed: int = 0, prompt: str | None = None, timeout: float = 10.0, **options: Any) -> Ack:
        """Open a session; `options` are the optional fields of `open` (model, fps, width, height)."""
        return self.send(Open(id=self.new_id(), client=self.name, session=session, seed=seed, prompt=prompt, **options), timeout)

    def close_session(self, session: str, timeout: float = 10.0) -> Ack:
        return self.send(Close(id=self.new_id(), client=self.name, session=session), timeout)

    def send_prompt(self, text: str, session: str = C.DEFAULT_SESSION, transition: str = "recache",
                    blend_blocks: int | None = None, at_frame: int | None = None, timeout: float = 10.0) -> Ack:
        """Switch the prompt; the ack names the first frame showing it (or says 'superseded')."""
        return self.send(Prompt(id=self.new_id(), client=self.name, session=session, text=text, transition=transition,
                                blend_blocks=blend_blocks, at_frame=at_frame), timeout)

    def pause(self, session: str = C.DEFAULT_SESSION, timeout: float = 10.0) -> Ack:
        return self.send(Pause(id=self.new_id(), client=self.name, session=session), timeout)

    def resume(self, session: str = C.DEFAULT_SESSION, timeout: float = 10.0) -> Ack:
        return self.send(Resume(id=self.new_id(), client=self.name, session=session), timeout)

    def set_seed(self, seed: int, session: str = C.DEFAULT_SESSION, timeout: float = 10.0) -> Ack:
        return self.send(Seed(id=self.new_id(), client=self.name, session=session, seed=seed), timeout)

    def event(self, name: str, payload: dict[str, Any] | None = None, session: str = C.DEFAULT_SESSION,
              timeout: float = 10.0) -> Ack:
        """Send a named game event; the daemon's event hook may turn it into a prompt."""
        return self.send(GameEvent(id=self.new_id(), client=self.name, session=session, name=name,
                                   payload=payload or {}), timeout)

    def status(self, session: str | None = None, timeout: float = 10.0) -> list[Status]:
        """The current status of one session, or of all sessions."""
        _, statuses = self._exchange(StatusRequest(id=self.new_id(), client=self.name, session=session), timeout)
        return statuses

    def close(self) -> None:
        self.control_pub.close()
        self.stream_sub.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Received = Picture | Ack | Error | Status | Heartbeat


class Viewer:
    """Subscribes to a daemon's stream: frames of some sessions in one encoding, plus the
    acks, errors, status and heartbeats asked for. Subscribing to status makes the daemon
    send the current status of every session at once (late-joiner greeting)."""

    def __init__(self, stream: str = C.DEFAULT_STREAM_ENDPOINT, *, sessions: Iterable[str] | None = (C.DEFAULT_SESSION,),
                 encoding: str = "raw", acks: bool = True, errors: bool = True, status: bool = True,
                 heartbeats: bool = False, context: zmq.Context | None = None, curve: CurveClient | None = None) -> None:
        if encoding not in C.ENCODINGS:
            raise ValueError(f"encoding must be one of {C.ENCODINGS}, got {encoding!r}")
        self.sessions = None if sessions is None else frozenset(sessions)
        self.missed = 0  # frames lost on the way (gaps in frame indices), e.g. at the high-water mark
        self._last_frame: dict[str, int] = {}
        self.stream_sub = _socket(context or zmq.Context.instance(), zmq.SUB, stream, curve)
        prefixes = [f"{C.TOPIC_FRAME}.{encoding}."] if self.sessions is None else [
            f"{C.TOPIC_FRAME}.{encoding}.{s}" for s in sorted(self.sessions)]
        wanted = {C.TOPIC_STATUS + ".": status, C.TOPIC_ACK: acks, C.TOPIC_ERROR: errors, C.TOPIC_HEARTBEAT: heartbeats}
        for topic in prefixes + [t for t, on in wanted.items() if on]:
            self.stream_sub.subscribe(topic.encode())

    def recv(self, timeout: float | None = None) -> Received | None:
        """The next message (frames as Pictures), or None if nothing came within `timeout` s."""
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
            assert isinstance(msg, (Ack, Error, Status, Heartbeat))
            return msg

    def _count_gap(self, frame: Frame) -> None:
        last = self._last_frame.get(frame.session)
        if last is not None and frame.frame > last + 1:
            self.missed += frame.frame - last - 1
        self._last_frame[frame.session] = frame.frame  # a lower index: the session was reopened

    def _wanted(self, msg: StreamMessage) -> bool:
        session = getattr(msg, "session", None)
        return self.sessions is None or not isinstance(msg, (Frame, Status)) or session in self.sessions

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
