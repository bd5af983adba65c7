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
from protocol.messages import (CONTROL_TYPES, STREAM_TYPES, ControlMessage, Frame, Message,
                               Status, StreamMessage)

Part = Any  # bytes, memoryview or zmq.Frame: anything exposing the buffer protocol


def topic_of(msg: Message) -> bytes:
    """The first message part: what SUB sockets filter on."""
    if isinstance(msg, Frame):
        return f"{C.TOPIC_FRAME}.{msg.encoding}.{msg.session}".encode()
    if isinstance(msg, Status):
        return f"{C.TOPIC_STATUS}.{msg.session}".encode()
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
        raise ProtocolError(ErrorCode.MALFORMED, f"a control message has 2 parts (topic, body); got {len(parts)}")
    msg = _decode_body(_bytes(parts[1]), CONTROL_TYPES)
    _expect_topic(parts[0], msg)
    assert isinstance(msg, ControlMessage)
    return msg


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
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    # The unpacker is third-party C code with several exception types (ExtraData,
    # FormatError, StackError, UnicodeDecodeError, ...); whatever it raises, the bytes are
    # not one valid msgpack value.
    except Exception as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"body is not valid msgpack: {type(exc).__name__}: {exc}"[:300]) from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.MALFORMED, f"body must be a msgpack map, got {type(obj).__name__}")
    return obj


def _event_id(obj: dict[Any, Any]) -> str | None:
    """The sender's id if it is readable, so that even a refused message can be matched."""
    value = obj.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= C.MAX_ID_CHARS else None


def _decode_body(body: bytes, registry: dict[str, type[Message]], payload: memoryview | None = None) -> Message:
    obj = _unpack(body)
    event_id = _event_id(obj)
    if "v" not in obj:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "message has no 'v' (protocol version) field", event_id)
    version = obj["v"]
    if isinstance(version, bool) or not isinstance(version, int) or version != C.PROTOCOL_VERSION:
        raise ProtocolError(ErrorCode.BAD_VERSION, f"protocol version {version!r:.40} is not supported; this side speaks version {C.PROTOCOL_VERSION}", event_id)
    if "type" not in obj:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "message has no 'type' field", event_id)
    kind = obj["type"]
    cls = registry.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r:.60}; expected one of {', '.join(registry)}", event_id)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "data":
            kwargs["data"] = payload
        elif f.name in obj:
            kwargs[f.name] = obj[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ProtocolError(ErrorCode.MISSING_FIELD, f"{kind} message is missing required field '{f.name}'", event_id)
    try:
        return cls(**kwargs)
    except ProtocolError as exc:
        raise ProtocolError(exc.code, f"{kind}: {exc.message}", event_id) from None
