"""Codec: exact round-trips for every message type, specific errors, and decoder fuzzing
(whatever arrives, only ProtocolError may escape)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (Ack, Close, Error, ErrorCode, Frame, GameEvent, Heartbeat, Open, Pause, Prompt,
                      ProtocolError, Resume, Seed, Status, StatusRequest, decode_control, decode_stream,
                      encode)
from protocol import constants as C

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONTROL_EXAMPLES = [
    Open(id="o1", session="main", seed=0),
    Open(id="o2", client="pad", session="side_2", seed=C.MAX_SEED, model="toy", prompt="fog", fps=12.5, width=64, height=48),
    Close(id="c1", session="main"),
    Prompt(id="p1", session="main", text="a red ball"),
    Prompt(id="p2", session="main", text="ünïcødé ☃", transition="blend", blend_blocks=3, at_frame=40),
    Prompt(id="p3", session="main", text="x" * C.MAX_PROMPT_CHARS, transition="cut"),
    Pause(id="pa", session="main"),
    Resume(id="re", session="main"),
    Seed(id="se", session="main", seed=7),
    GameEvent(id="ev", session="main", name="hit", payload={"hp": -3, "pos": [0.5, 1], "raw": b"\x00", "n": None}),
    StatusRequest(id="st"),
    StatusRequest(id="st2", session="main"),
]

STREAM_EXAMPLES = [
    Frame(id="f1", session="main", frame=8, block=2, t=0.5, wall=1.7e9, prompt_id="p1", shape=(4, 2, 3),
          encoding="raw", data=bytes(range(24))),
    Frame(id="f2", session="main", frame=0, block=0, t=0.0, wall=0.0, prompt_id=None, shape=(4, 2, 3),
          encoding="jpeg", data=b"\xff\xd8\xff\xd9"),
    Ack(id="a1", event_id="p1", event_type="prompt", session="main", frame=8),
    Ack(id="a2", event_id="p0", event_type="prompt", session="main", status="superseded", superseded_by="p1"),
    Ack(id="a3", event_id="st", event_type="status", session=None),
    Error(id="e1", event_id=None, code=100, name="MALFORMED", message="body is not valid msgpack"),
    Error(id="e2", event_id="p9", code=202, name="BAD_PROMPT", message="unknown word 'zzz'", session="main"),
    Status(id="s1", session="main", model="toy", shape=(64, 64, 3), fps_target=16.0, fps_measured=15.9, latency_ms=None,
           latency_mean_ms=None, pending_events=0, lookahead_blocks=1, cache_fill=0.5, frames_late=3, frame=100,
           block=25, prompt_id=None, prompt="", paused=True, seed=0, request_id="st"),
    Heartbeat(id="h1", time=1.7e9, period=1.0, sessions=("main", "side")),
]


@pytest.mark.parametrize("msg", CONTROL_EXAMPLES, ids=lambda m: f"{m.TYPE}-{m.id}")
def test_control_round_trip(msg):
    parts = encode(msg)
    assert parts[0] == msg.TYPE.encode()
    assert decode_control(parts) == msg
    assert encode(decode_control(parts)) == parts


@pytest.mark.parametrize("msg", STREAM_EXAMPLES, ids=lambda m: f"{m.TYPE}-{m.id}")
def test_stream_round_trip(msg):
    parts = [bytes(p) for p in encode(msg)]
    decoded = decode_stream(parts)
    assert decoded == msg
    if isinstance(msg, Frame):
        assert bytes(decoded.data) == bytes(msg.data)
        assert parts[0] == f"frame.{msg.encoding}.main".encode()
    assert [bytes(p) for p in encode(decoded)] == parts


def test_frame_payload_is_passed_through_without_copy():
    data = bytearray(24)
    parts = encode(Frame(id="f", session="s", frame=0, block=0, t=0, wall=0, prompt_id=None, shape=(2, 4, 3),
                         encoding="raw", data=data))
    assert parts[2] is data


def test_constructing_an_invalid_message_fails_before_sending():
    with pytest.raises(ProtocolError) as info:
        Prompt(id="p", session="main", text="x" * (C.MAX_PROMPT_CHARS + 1))
    assert info.value.code == ErrorCode.PROMPT_TOO_LONG
    assert "2001 characters" in info.value.message
    with pytest.raises(ProtocolError) as info:
        Seed(id="s", session="main", seed=-1)
    assert info.value.code == ErrorCode.BAD_FIELD and "'seed'" in info.value.message


def test_errors_name_the_problem_and_carry_the_event_id():
    body = Prompt(id="p7", session="main", text="hi").body()
    body["at_frame"] = "soon"
    with pytest.raises(ProtocolError) as info:
        decode_control([b"prompt", msgpack.packb(body)])
    assert info.value.code == ErrorCode.BAD_FIELD
    assert info.value.event_id == "p7"
    assert "at_frame" in info.value.message and "integer" in info.value.message
    with pytest.raises(ProtocolError) as info:
        decode_control([b"prompt", msgpack.packb({"v": 1, "type": "prompt", "id": "p8", "session": "main"})])
    assert info.value.code == ErrorCode.MISSING_FIELD and "'text'" in info.value.message


# ---------------------------------------------------------------- fuzzing

PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4),
    max_leaves=20,
)
FIELD_NAMES = st.sampled_from(["v", "type", "id", "client", "session", "text", "transition", "blend_blocks", "at_frame",
                               "seed", "fps", "width", "height", "name", "payload", "model", "prompt", "frame", "shape",
                               "encoding", "event_id", "code", "status", "time", "sessions", "wall", "t"])
TOPICS = st.sampled_from([b"prompt", b"open", b"event", b"frame.raw.main", b"ack", b"status.main", b""]) | st.binary(max_size=12)


def _packable(obj):
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return msgpack.packb(None)


def _mutated(base_parts, edits):
    body = msgpack.unpackb(base_parts[1], strict_map_key=False)
    for key, value, delete in edits:
        if delete:
            body.pop(key, None)
        else:
            body[key] = value
    return [base_parts[0], _packable(body)] + list(base_parts[2:])


def _only_protocol_errors(decoder, parts):
    try:
        msg = decoder(parts)
    except ProtocolError as exc:
        assert isinstance(exc.code, ErrorCode) and exc.message
        return
    # Whatever was accepted must re-encode to something the decoder accepts again.
    assert decoder([bytes(p) for p in encode(msg)]) == msg


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=4))
def test_fuzz_control_raw_bytes(parts):
    _only_protocol_errors(decode_control, parts)


@FUZZ
@given(TOPICS, PLAIN)
def test_fuzz_control_any_msgpack(topic, obj):
    _only_protocol_errors(decode_control, [topic, _packable(obj)])


@FUZZ
@given(st.sampled_from(CONTROL_EXAMPLES), st.lists(st.tuples(FIELD_NAMES, PLAIN, st.booleans()), max_size=3))
def test_fuzz_control_mutated(msg, edits):
    _only_protocol_errors(decode_control, _mutated(encode(msg), edits))


@FUZZ
@given(st.sampled_from(STREAM_EXAMPLES), st.lists(st.tuples(FIELD_NAMES, PLAIN, st.booleans()), max_size=3),
       st.one_of(st.none(), st.binary(max_size=30)))
def test_fuzz_stream_mutated(msg, edits, payload):
    parts = _mutated([bytes(p) for p in encode(msg)], edits)
    if payload is not None:
        parts = parts[:2] + [payload]
    _only_protocol_errors(decode_stream, parts)


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=4))
def test_fuzz_stream_raw_bytes(parts):
    _only_protocol_errors(decode_stream, parts)


@FUZZ
@given(st.text(min_size=1, max_size=C.MAX_PROMPT_CHARS), st.integers(0, C.MAX_SEED),
       st.sampled_from(C.TRANSITIONS), st.integers(1, C.MAX_BLEND_BLOCKS), st.none() | st.integers(0, 2**63 - 1))
def test_round_trip_generated_prompts(text, seed, transition, blocks, at_frame):
    msg = Prompt(id=f"p{seed}", session="main", text=text, transition=transition,
                 blend_blocks=blocks if transition == "blend" else None, at_frame=at_frame)
    assert decode_control(encode(msg)) == msg
