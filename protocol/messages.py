"""Typed messages of protocol version 2, one frozen dataclass per message type.

Every field carries its check (protocol/fields.py); constructing a message validates and
normalizes it, so a message object that exists is a message that may be sent. The field
order below is the order keys are written on the wire (after `v` and `type`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, ClassVar

from protocol import constants as C
from protocol.constants import ErrorCode
from protocol.errors import ProtocolError
from protocol.fields import (boolean, choice, int_list, integer, number, optional, plain_map, spec,
                             text, text_list)

ID = text(C.MAX_ID_CHARS)
NAME = text(C.MAX_NAME_CHARS, pattern=C.NAME_PATTERN)
FRAME_INDEX = integer(0, 2**63 - 1)
SEED = integer(0, C.MAX_SEED)
PROMPT_TEXT = text(C.MAX_PROMPT_CHARS, too_long=ErrorCode.PROMPT_TOO_LONG)
SIDE = integer(1, C.MAX_SIDE)
SHAPE = int_list(3, 1, C.MAX_SIDE)
WALL = number(0.0, 1e12)
COUNT = integer(0, 2**63 - 1)
ACK_STATUSES = ("accepted", "applied", "superseded")


@functools.cache
def _fields(cls: type) -> tuple[dataclasses.Field, ...]:
    """A message class's fields, looked up once: the daemon builds thousands of messages a second."""
    return dataclasses.fields(cls)


@dataclass(frozen=True, kw_only=True)
class Message:
    """Fields common to every message: `id` is chosen by the sender and unique per sender."""

    TYPE: ClassVar[str] = ""
    id: str = spec(ID)

    def __post_init__(self) -> None:
        for f in _fields(type(self)):
            value = f.metadata["check"](f.name, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        self._validate()

    def _validate(self) -> None:
        """Checks that involve more than one field; none by default."""

    def body(self) -> dict[str, Any]:
        """The wire map in canonical key order: v, type, then the fields as declared."""
        out: dict[str, Any] = {"v": C.PROTOCOL_VERSION, "type": self.TYPE}
        for f in _fields(type(self)):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


# ---------------------------------------------------------------- controller -> daemon


@dataclass(frozen=True, kw_only=True)
class ControlMessage(Message):
    """An event sent by a controller. `client` names the controller for rate limiting."""

    client: str | None = spec(optional(NAME), None)


@dataclass(frozen=True, kw_only=True)
class Open(ControlMessage):
    TYPE: ClassVar[str] = "open"
    session: str = spec(NAME)
    seed: int = spec(SEED)
    model: str | None = spec(optional(text(C.MAX_NAME_CHARS)), None)
    prompt: str | None = spec(optional(PROMPT_TEXT), None)
    fps: float | None = spec(optional(number(0.1, C.MAX_FPS)), None)
    width: int | None = spec(optional(SIDE), None)
    height: int | None = spec(optional(SIDE), None)
    idle: str = spec(choice(C.IDLE_POLICIES), "keep")  # with no frame subscriber: keep going, pause or close
    idle_after_s: float = spec(number(0.1, 86400.0), C.IDLE_AFTER_S)


@dataclass(frozen=True, kw_only=True)
class Close(ControlMessage):
    TYPE: ClassVar[str] = "close"
    session: str = spec(NAME)


@dataclass(frozen=True, kw_only=True)
class Prompt(ControlMessage):
    TYPE: ClassVar[str] = "prompt"
    session: str = spec(NAME)
    text: str = spec(PROMPT_TEXT)
    transition: str = spec(choice(C.TRANSITIONS), "recache")
    blend_blocks: int | None = spec(optional(integer(1, C.MAX_BLEND_BLOCKS)), None)
    at_frame: int | None = spec(optional(FRAME_INDEX), None)

    def _validate(self) -> None:
        if self.transition == "blend" and self.blend_blocks is None:
            raise ProtocolError(ErrorCode.MISSING_FIELD, "field 'blend_blocks' is required when transition is 'blend'")
        if self.transition != "blend" and self.blend_blocks is not None:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"field 'blend_blocks' only applies to transition 'blend', not {self.transition!r}")


@dataclass(frozen=True, kw_only=True)
class Pause(ControlMessage):
    TYPE: ClassVar[str] = "pause"
    session: str = spec(NAME)


@dataclass(frozen=True, kw_only=True)
class Resume(ControlMessage):
    TYPE: ClassVar[str] = "resume"
    session: str = spec(NAME)


@dataclass(frozen=True, kw_only=True)
class Seed(ControlMessage):
    TYPE: ClassVar[str] = "seed"
    session: str = spec(NAME)
    seed: int = spec(SEED)


@dataclass(frozen=True, kw_only=True)
class GameEvent(ControlMessage):
    """A named game event; its payload is forwarded untouched to the daemon's event hook."""

    TYPE: ClassVar[str] = "event"
    session: str = spec(NAME)
    name: str = spec(text(C.MAX_EVENT_NAME_CHARS))
    payload: dict[str, Any] = spec(plain_map(C.MAX_PAYLOAD_DEPTH), {})


@dataclass(frozen=True, kw_only=True)
class StatusRequest(ControlMessage):
    """Ask for a status message per session (all sessions when `session` is nil)."""

    TYPE: ClassVar[str] = "status"
    session: str | None = spec(optional(NAME), None)


# ---------------------------------------------------------------- daemon -> clients


@dataclass(frozen=True, kw_only=True)
class StreamMessage(Message):
    """A message published by the daemon; `id` is unique within one daemon run."""


def _payload(name: str, value: Any) -> Any:
    """A frame's payload: any bytes-like object, kept as-is so it can be sent without a copy."""
    try:
        memoryview(value)
    except TypeError:
        raise ProtocolError(ErrorCode.MALFORMED, f"a frame needs a bytes-like payload part, got {type(value).__name__}") from None
    return value


@dataclass(frozen=True, kw_only=True)
class Frame(StreamMessage):
    """One video frame. The header is everything but `data`, which travels as its own
    message part: raw RGB uint8 bytes (h*w*3, row-major) or a JPEG file."""

    TYPE: ClassVar[str] = "frame"
    session: str = spec(NAME)
    frame: int = spec(FRAME_INDEX)
    block: int = spec(FRAME_INDEX)
    t: float = spec(number(0.0, 1e12))
    wall: float = spec(WALL)
    prompt_id: str | None = spec(optional(ID))
    shape: tuple[int, int, int] = spec(SHAPE)
    encoding: str = spec(choice(C.ENCODINGS))
    data: Any = dataclasses.field(compare=False, metadata={"check": _payload})

    def _validate(self) -> None:
        if self.shape[2] != 3:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"field 'shape' must end in 3 (RGB), got {list(self.shape)}")
        size = memoryview(self.data).nbytes
        if self.encoding == "raw" and size != self.shape[0] * self.shape[1] * 3:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"raw frame payload has {size} bytes; shape {list(self.shape)} needs {self.shape[0] * self.shape[1] * 3}")
        if self.encoding == "jpeg" and size == 0:
            raise ProtocolError(ErrorCode.BAD_FIELD, "jpeg frame payload is empty")

    def body(self) -> dict[str, Any]:
        out = super().body()
        del out["data"]
        return out


@dataclass(frozen=True, kw_only=True)
class Ack(StreamMessage):
    """What became of an accepted event. `accepted` comes at once for an event that waits
    for a block boundary, with `frame` = the frame it is planned for; then exactly one final
    ack: `applied` with the first frame that reflects it (nil when the event has no effect
    on frames, e.g. `status` or `close`), or `superseded` (overtaken before it took effect,
    `superseded_by` names the event that did). Events with no wait get only the final ack."""

    TYPE: ClassVar[str] = "ack"
    event_id: str = spec(ID)
    event_type: str = spec(text(C.MAX_NAME_CHARS))
    session: str | None = spec(optional(NAME))
    status: str = spec(choice(ACK_STATUSES), "applied")
    frame: int | None = spec(optional(FRAME_INDEX), None)
    superseded_by: str | None = spec(optional(ID), None)
    warning: str | None = spec(optional(text(C.MAX_WARNING_CHARS)), None)  # taken, but part of it was not read

    @property
    def final(self) -> bool:
        """True for the event's last answer (applied or superseded)."""
        return self.status != "accepted"


@dataclass(frozen=True, kw_only=True)
class Error(StreamMessage):
    """An event (or an undecodable message, then `event_id` is nil) was refused."""

    TYPE: ClassVar[str] = "error"
    event_id: str | None = spec(optional(ID))
    code: int = spec(integer(100, 999))
    name: str = spec(text(C.MAX_NAME_CHARS))
    message: str = spec(text(1000))
    session: str | None = spec(optional(NAME), None)


@dataclass(frozen=True, kw_only=True)
class Status(StreamMessage):
    """The state of one session; sent on request, to late joiners, and every few seconds."""

    TYPE: ClassVar[str] = "status"
    session: str = spec(NAME)
    model: str = spec(text(C.MAX_NAME_CHARS))
    shape: tuple[int, int, int] = spec(SHAPE)
    fps_target: float = spec(number(0.0, C.MAX_FPS))
    fps_measured: float = spec(number(0.0, 1e6))
    latency_ms: float | None = spec(optional(number(0.0, 1e9)))
    latency_mean_ms: float | None = spec(optional(number(0.0, 1e9)))
    pending_events: int = spec(COUNT)
    lookahead_blocks: int = spec(COUNT)
    cache_fill: float = spec(number(0.0, 1.0))
    frames_late: int = spec(COUNT)
    frame: int = spec(FRAME_INDEX)
    block: int = spec(FRAME_INDEX)
    prompt_id: str | None = spec(optional(ID))
    prompt: str = spec(text(C.MAX_PROMPT_CHARS, allow_empty=True))
    paused: bool = spec(boolean())
    seed: int = spec(SEED)
    request_id: str | None = spec(optional(ID), None)
    plugins: tuple[str, ...] = spec(text_list(C.MAX_PLUGINS, text(C.MAX_NAME_CHARS)), ())  # active daemon plugins
    observations_dropped: int = spec(COUNT, 0)  # plugin observer notes dropped so far (slow observers)
    frames_per_block: int | None = spec(optional(integer(1, 4096)), None)  # boundaries lie at multiples of it
    max_prompt_tokens: int | None = spec(optional(integer(1, 1 << 20)), None)  # the model's prompt length limit
    idle: str = spec(choice(C.IDLE_POLICIES), "keep")  # the session's idle policy (open.idle)
    cache_sink_frames: int | None = spec(optional(COUNT), None)  # latent frames of the sink
    cache_window_frames: int | None = spec(optional(COUNT), None)  # latent frames the window holds, sink included
    answers_dropped: int = spec(COUNT, 0)  # answers the daemon could not deliver to a controller's connection


@dataclass(frozen=True, kw_only=True)
class EventNotice(StreamMessage):
    """A game `event` the daemon accepted, relayed to listeners (story runners, demos) so that
    any controller — a game, the OSC bridge — can answer a story through the daemon. Sent once
    per event id, before the event's own answer."""

    TYPE: ClassVar[str] = "event"
    event_id: str = spec(ID)
    session: str = spec(NAME)
    name: str = spec(text(C.MAX_EVENT_NAME_CHARS))
    payload: dict[str, Any] = spec(plain_map(C.MAX_PAYLOAD_DEPTH), {})
    client: str | None = spec(optional(NAME), None)
    frame: int = spec(FRAME_INDEX)  # the session's next frame when the daemon accepted the event


@dataclass(frozen=True, kw_only=True)
class Heartbeat(StreamMessage):
    """Sent every HEARTBEAT_PERIOD_S seconds so clients can tell a quiet daemon from a dead one."""

    TYPE: ClassVar[str] = "heartbeat"
    time: float = spec(WALL)
    period: float = spec(number(0.001, 3600.0))
    sessions: tuple[str, ...] = spec(text_list(C.MAX_SESSIONS, NAME))


CONTROL_TYPES: dict[str, type[ControlMessage]] = {
    cls.TYPE: cls for cls in (Open, Close, Prompt, Pause, Resume, Seed, GameEvent, StatusRequest)
}
STREAM_TYPES: dict[str, type[StreamMessage]] = {
    cls.TYPE: cls for cls in (Frame, Ack, Error, Status, Heartbeat, EventNotice)
}
