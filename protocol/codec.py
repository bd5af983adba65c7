"""Multipart encode/decode with strict validation.

`decode_control` and `decode_stream` raise ProtocolError and nothing else, whatever bytes
arrive: the daemon turns that error into an `error` message and keeps streaming. Encoding
is canonical (keys in declared order, floats as float64), so the test vectors in
protocol/vectors/ pin the exact bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import msgpack

from protocol import constants as C
from protocol.constants import ErrorCode
from protocol.errors import ProtocolError
from protocol.messages import (CONTROL_TYPES, STREAM_TYPES, ControlMessage, EventNotice, Frame, Message,
                               Status, StreamMessage)

Part = Any  # bytes, memoryview or zmq.Frame: anything exposing the buffer protocol


def topic_of(msg: Message) -> bytes:
    """The first message part: what SUB sockets filter on."""
    if isinstance(msg, Frame):
        return f"{C.TOPIC_FRAME}.{msg.encoding}.{msg.session}".encode()
    if isinstance(msg, Status):
        return f"{C.TOPIC_STATUS}.{msg.session}".encode()
    if isinstance(msg, EventNotice):
        return f"{C.TOPIC_EVENT}.{msg.session}".encode()
    return msg.TYPE.encode()


def encode(msg: Message) -> list[Part]:
    """The parts to send: [topic, body] or, for frames, [topic, header, payload].
    The payload is passed through untouched so it can be sent with copy=False."""
    body = msgpack.packb(msg.body(), use_bin_type=True)
    if isinstance(msg, Frame):
        return [topic_of(msg), body, msg.data]
    return [topic_of(msg), body]


def decode_control(parts: Sequence[Part]) -> ControlMessage:
    """Decode one message received on the daemon's control socket."""
    if len(parts) != 2:
        event_id = _peek_id(parts[1]) if len(parts) > 2 else None
        raise ProtocolError(ErrorCode.MALFORMED, f"a control message has 2 parts (topic, body); got {len(parts)}", event_id)
    msg = _decode_body(_bytes(parts[1]), CONTROL_TYPES, versions=C.ACCEPTED_VERSIONS)
    _expect_topic(parts[0], msg)
    assert isinstance(msg, ControlMessage)
    return msg


def _peek_id(part: Part) -> str | None:
    """The id in a body that came with the wrong number of parts, so the error can name it."""
    try:
        return _event_id(_unpack(_bytes(part)))
    except ProtocolError:
        return None


def decode_stream(parts: Sequence[Part]) -> StreamMessage:
    """Decode one message received from the daemon's stream socket."""
    if len(parts) not in (2, 3):
        raise ProtocolError(ErrorCode.MALFORMED, f"a stream message has 2 or 3 parts; got {len(parts)}")
    payload = memoryview(parts[2]) if len(parts) == 3 else None
    msg = _decode_body(_bytes(parts[1]), STREAM_TYPES, payload)
    if isinstance(msg, Frame) != (payload is not None):
        raise ProtocolError(ErrorCode.MALFORMED, f"a {msg.TYPE} message has {3 if isinstance(msg, Frame) else 2} parts; got {len(parts)}", msg.id)
    _expect_topic(parts[0], msg)
    assert isinstance(msg, StreamMessage)
    return msg


def _bytes(part: Part) -> bytes:
    return part if isinstance(part, bytes) else bytes(memoryview(part))


def _expect_topic(part: Part, msg: Message) -> None:
    got, want = _bytes(part), topic_of(msg)
    if got != want:
        raise ProtocolError(ErrorCode.MALFORMED, f"topic {got[:80]!r} does not match the message; expected {want!r}", msg.id)


def _unpack(body: bytes) -> dict[Any, Any]:
    if len(body) > C.MAX_MESSAGE_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message body has {len(body)} bytes; the limit is {C.MAX_MESSAGE_BYTES}")
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=True)
    # The unpacker is third-party C code with several exception types (ExtraData,
    # FormatError, StackError, UnicodeDecodeError, ...); whatever it raises, the bytes are
    # not one valid msgpack value. Its own nesting stack is bounded (StackError), and the
    # body is at most MAX_MESSAGE_BYTES, so decoding itself cannot exhaust the daemon.
    except Exception as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"body is not valid msgpack: {type(exc).__name__}: {exc}"[:300]) from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.MALFORMED, f"body must be a msgpack map, got {type(obj).__name__}")
    try:
        _check_structure(obj)
    except ProtocolError as exc:
        raise ProtocolError(exc.code, exc.message, _event_id(obj)) from None
    return obj


def _check_structure(body: dict[Any, Any]) -> None:
    """Refuse bodies nested deeper than MAX_NESTING or with a non-string map key anywhere.

    Runs before any other code looks at the decoded value and walks it without recursion,
    so no later check (payload depth, error messages that repr a field) can meet a value
    deep enough to overflow Python's stack."""
    level: list[Any] = [body]
    for depth in range(1, C.MAX_NESTING + 1):
        below: list[Any] = []
        for container in level:
            if isinstance(container, dict):
                if not all(type(key) is str for key in container):
                    bad = next(k for k in container if type(k) is not str)
                    raise ProtocolError(ErrorCode.MALFORMED, f"map keys must be strings; got a {type(bad).__name__} key")
                items = container.values()
            else:
                items = container
            below.extend(item for item in items if type(item) in (dict, list))
        if not below:
            return
        level = below
    raise ProtocolError(ErrorCode.MALFORMED, f"body is nested deeper than {C.MAX_NESTING} levels")


def _event_id(obj: dict[Any, Any]) -> str | None:
    """The sender's id if it is readable, so that even a refused message can be matched."""
    value = obj.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= C.MAX_ID_CHARS else None


def _decode_body(body: bytes, registry: dict[str, type[Message]], payload: memoryview | None = None,
                 versions: tuple[int, ...] = (C.PROTOCOL_VERSION,)) -> Message:
    """Checks run in a fixed order, so a body with several faults always gets the same code:
    version, type, then each field in declared order (SPEC.md, Errors: precedence)."""
    obj = _unpack(body)
    event_id = _event_id(obj)
    version = obj.get("v")
    if version is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "message has no 'v' (protocol version) field", event_id)
    if isinstance(version, bool) or not isinstance(version, int) or version not in versions:
        raise ProtocolError(ErrorCode.BAD_VERSION, f"protocol version {version!r:.40} is not supported; this side "
                            f"speaks version {', '.join(map(str, versions))}", event_id)
    kind = obj.get("type")
    if kind is None:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "message has no 'type' field", event_id)
    cls = registry.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r:.60}; expected one of {', '.join(registry)}", event_id)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "data":
            kwargs["data"] = payload
        elif obj.get(f.name) is not None:
            kwargs[f.name] = obj[f.name]
        elif f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue  # an optional field: nil means absent, so it takes its default
        elif f.name in obj and _nullable(f):
            kwargs[f.name] = None  # a field every message carries, whose value may be nil
        else:
            sent = "is nil" if f.name in obj else "is missing"
            raise ProtocolError(ErrorCode.MISSING_FIELD, f"{kind} message: required field '{f.name}' {sent}", event_id)
    try:
        return cls(**kwargs)
    except ProtocolError as exc:
        raise ProtocolError(exc.code, f"{kind}: {exc.message}", event_id) from None


def _nullable(f: dataclasses.Field) -> bool:
    """Whether a required field's check takes nil (e.g. a frame's `prompt_id`)."""
    try:
        f.metadata["check"](f.name, None)
    except ProtocolError:
        return False
    return True
