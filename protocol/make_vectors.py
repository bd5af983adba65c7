"""Write protocol/vectors/: wire-exact test vectors for implementers in any language.

Each vector is one multipart message stored as `NN-name.msgpack` (a msgpack array of the
message parts, each a bin). `index.json` says, per file, which socket it arrives on,
whether a receiver must accept it, what it decodes to, and otherwise which error code it
must produce. Vector bodies are written here as literal maps packed by plain msgpack (never
by protocol.codec), so the codec is checked against them rather than against itself.

Run: python -m protocol.make_vectors
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from protocol.constants import MAX_ID_CHARS, MAX_MESSAGE_BYTES, ErrorCode

VECTOR_DIR = Path(__file__).with_name("vectors")


@dataclass(frozen=True)
class Vector:
    name: str
    socket: str  # "control" or "stream": which receiver decodes it
    parts: tuple[bytes, ...]
    description: str
    message: dict[str, Any] | None = None  # canonical decoded body, valid vectors only
    canonical: bool = False  # re-encoding the decoded message reproduces `parts` exactly
    error: str | None = None  # expected ErrorCode name, invalid vectors only
    event_id: str | None = None  # the id the error must carry (invalid vectors whose id is readable)


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _ok(name: str, socket: str, topic: str, body: dict[str, Any], description: str, payload: bytes | None = None) -> Vector:
    parts = (topic.encode(), _pack(body)) + ((payload,) if payload is not None else ())
    return Vector(name, socket, parts, description, message=body, canonical=True)


def _bad(name: str, socket: str, parts: tuple[bytes, ...], error: str, description: str) -> Vector:
    return Vector(name, socket, parts, description, error=error, event_id=_readable_id(parts))


def _readable_id(parts: tuple[bytes, ...]) -> str | None:
    """The id a receiver must put in its error (SPEC.md section 7): the body's `id` when the
    body is within MAX_MESSAGE_BYTES, is one msgpack map and its `id` is a valid id string."""
    if len(parts) < 2 or len(parts[1]) > MAX_MESSAGE_BYTES:
        return None
    try:
        body = msgpack.unpackb(parts[1], strict_map_key=False)
    except Exception:  # any decoding failure: no id can be read
        return None
    value = body.get("id") if isinstance(body, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS else None


def _prompt(**changes: Any) -> dict[str, Any]:
    body = {"v": 3, "type": "prompt", "id": "ev-0003", "client": "game", "session": "main",
            "text": "a red ball rolls over green grass", "transition": "recache",
            "blend_blocks": None, "at_frame": None}
    body.update(changes)
    return body


def _control_valid() -> list[Vector]:
    return [
        _ok("open", "control", "open", {"v": 3, "type": "open", "id": "ev-0001", "client": "game", "session": "main",
                                         "seed": 42, "model": "toy", "prompt": "a quiet forest at dawn", "fps": 16.0,
                                         "width": None, "height": None, "idle": "keep", "idle_after_s": 10.0}, "open session 'main' with a first prompt"),
        _ok("close", "control", "close", {"v": 3, "type": "close", "id": "ev-0002", "client": None, "session": "main"},
            "close session 'main'"),
        _ok("prompt-recache", "control", "prompt", _prompt(), "switch prompt with the LongLive KV-recache"),
        _ok("prompt-blend-scheduled", "control", "prompt",
            _prompt(id="ev-0004", transition="blend", blend_blocks=4, at_frame=96),
            "blend to a new prompt over 4 blocks, starting at the first block boundary >= frame 96"),
        _ok("pause", "control", "pause", {"v": 3, "type": "pause", "id": "ev-0005", "client": None, "session": "main"}, "pause"),
        _ok("resume", "control", "resume", {"v": 3, "type": "resume", "id": "ev-0006", "client": None, "session": "main"}, "resume"),
        _ok("seed", "control", "seed", {"v": 3, "type": "seed", "id": "ev-0007", "client": None, "session": "main", "seed": 2**40},
            "set the seed live"),
        _ok("event", "control", "event", {"v": 3, "type": "event", "id": "ev-0008", "client": "game", "session": "main",
                                           "name": "door_opened", "payload": {"room": "hall", "hp": 3, "pos": [1.5, -2.0],
                                                                              "flags": {"boss": True}, "blob": b"\x00\x01"}},
            "a game event with a nested payload"),
        _ok("status-all", "control", "status", {"v": 3, "type": "status", "id": "ev-0009", "client": None, "session": None},
            "request a status message for every session"),
        Vector("prompt-minimal", "control", (b"prompt", _pack({"v": 3, "type": "prompt", "id": "ev-0010", "session": "main", "text": "snow"})),
               "optional fields may be omitted; they take their defaults",
               message=_prompt(id="ev-0010", client=None, text="snow")),
        Vector("prompt-extra-fields", "control", (b"prompt", _pack({"id": "ev-0011", "x-trace": [1, 2], "text": "snow", "type": "prompt",
                                                                    "session": "main", "v": 3, "future": {"a": 1}})),
               "keys may come in any order and unknown fields are ignored",
               message=_prompt(id="ev-0011", client=None, text="snow")),
    ]


def _control_invalid() -> list[Vector]:
    long_text = "x" * 2001
    bad_utf8 = b"\x85" + b"".join(_pack(x) for x in ("v", 1, "type", "prompt", "id", "ev-1", "session", "main", "text")) + b"\xa2\xff\xfe"
    deep: Any = 1
    for _ in range(17):
        deep = [deep]
    return [
        _bad("not-msgpack", "control", (b"prompt", b"\xc1"), "MALFORMED", "0xc1 is never used in msgpack"),
        _bad("truncated", "control", (b"prompt", _pack(_prompt())[:20]), "MALFORMED", "body cut short"),
        _bad("trailing-bytes", "control", (b"prompt", _pack(_prompt()) + b"\x00"), "MALFORMED", "a second value after the map"),
        _bad("body-not-map", "control", (b"prompt", _pack([1, "prompt"])), "MALFORMED", "the body is an array"),
        _bad("one-part", "control", (b"prompt",), "MALFORMED", "the body part is missing"),
        _bad("three-parts", "control", (b"prompt", _pack(_prompt()), b""), "MALFORMED",
             "control messages have exactly 2 parts; the error still names the readable id"),
        _bad("topic-mismatch", "control", (b"pause", _pack(_prompt())), "MALFORMED", "the topic must equal the type"),
        _bad("non-string-key", "control", (b"prompt", _pack({1: 2, "v": 1})), "MALFORMED", "map keys must be strings"),
        _bad("invalid-utf8", "control", (b"prompt", bad_utf8), "MALFORMED", "strings must be valid UTF-8"),
        _bad("no-version", "control", (b"prompt", _pack({k: v for k, v in _prompt().items() if k != "v"})), "MISSING_FIELD", "'v' is required"),
        _bad("version-4", "control", (b"prompt", _pack(_prompt(v=4))), "BAD_VERSION", "a future protocol version"),
        _bad("version-string", "control", (b"prompt", _pack(_prompt(v="1"))), "BAD_VERSION", "'v' must be an integer (1, 2 or 3)"),
        _bad("unknown-type", "control", (b"teleport", _pack(_prompt(type="teleport"))), "UNKNOWN_TYPE", "no such message type"),
        _bad("missing-text", "control", (b"prompt", _pack({k: v for k, v in _prompt().items() if k != "text"})), "MISSING_FIELD", "prompt needs 'text'"),
        _bad("missing-id", "control", (b"prompt", _pack({k: v for k, v in _prompt().items() if k != "id"})), "MISSING_FIELD", "every message needs 'id'"),
        _bad("id-too-long", "control", (b"prompt", _pack(_prompt(id="i" * 129))), "BAD_FIELD", "ids have at most 128 characters"),
        _bad("session-with-dot", "control", (b"prompt", _pack(_prompt(session="main.2"))), "BAD_FIELD", "session names are [A-Za-z0-9_-]+"),
        _bad("prompt-too-long", "control", (b"prompt", _pack(_prompt(text=long_text))), "PROMPT_TOO_LONG", "2001 characters"),
        _bad("message-too-large", "control", (b"event", _pack({"v": 3, "type": "event", "id": "ev-1", "session": "main", "name": "big",
                                                               "payload": {"blob": b"\x00" * 65536}})), "TOO_LARGE", "body over 64 KiB"),
        _bad("unknown-transition", "control", (b"prompt", _pack(_prompt(transition="fade"))), "BAD_FIELD", "transition is an enum"),
        _bad("blend-without-blocks", "control", (b"prompt", _pack(_prompt(transition="blend"))), "MISSING_FIELD", "blend needs blend_blocks"),
        _bad("blocks-without-blend", "control", (b"prompt", _pack(_prompt(blend_blocks=3))), "BAD_FIELD", "blend_blocks only with blend"),
        _bad("negative-at-frame", "control", (b"prompt", _pack(_prompt(at_frame=-1))), "BAD_FIELD", "frame indices are >= 0"),
        _bad("seed-string", "control", (b"seed", _pack({"v": 3, "type": "seed", "id": "ev-1", "session": "main", "seed": "42"})), "BAD_FIELD", "seed is an integer"),
        _bad("seed-boolean", "control", (b"seed", _pack({"v": 3, "type": "seed", "id": "ev-1", "session": "main", "seed": True})), "BAD_FIELD", "booleans are not integers"),
        _bad("seed-too-big", "control", (b"seed", _pack({"v": 3, "type": "seed", "id": "ev-1", "session": "main", "seed": 2**64 - 1})), "BAD_FIELD", "seeds are < 2**63"),
        _bad("fps-nan", "control", (b"open", _pack({"v": 3, "type": "open", "id": "ev-1", "session": "s", "seed": 0, "fps": float("nan")})), "BAD_FIELD", "fps must be finite"),
        _bad("payload-ext-type", "control", (b"event", _pack({"v": 3, "type": "event", "id": "ev-1", "session": "main", "name": "x",
                                                              "payload": {"t": msgpack.ExtType(5, b"ab")}})), "BAD_FIELD", "no extension types in payloads"),
        _bad("payload-too-deep", "control", (b"event", _pack({"v": 3, "type": "event", "id": "ev-1", "session": "main", "name": "x",
                                                              "payload": {"d": deep}})), "BAD_FIELD", "payloads nest at most 16 levels"),
    ]


def _frame(**changes: Any) -> dict[str, Any]:
    body = {"v": 3, "type": "frame", "id": "d-17", "session": "main", "frame": 16, "block": 4, "t": 1.0,
            "wall": 1700000000.25, "prompt_id": "ev-0003", "shape": [2, 2, 3], "encoding": "raw"}
    body.update(changes)
    return body


def _stream() -> list[Vector]:
    pixels = bytes(range(12))
    jpeg = b"\xff\xd8\xff\xd9"  # opaque to the codec; a real stream carries a full JPEG file
    return [
        _ok("frame-raw", "stream", "frame.raw.main", _frame(), "a 2x2 raw RGB frame; pixel (r, c) channel k is byte (r*2+c)*3+k", pixels),
        _ok("frame-jpeg", "stream", "frame.jpeg.main", _frame(id="d-18", encoding="jpeg"), "a JPEG frame (payload opaque to the codec)", jpeg),
        _ok("ack", "stream", "ack", {"v": 3, "type": "ack", "id": "d-19", "event_id": "ev-0003", "event_type": "prompt", "session": "main",
                                     "status": "applied", "frame": 16, "superseded_by": None, "warning": None},
            "prompt ev-0003 took effect at frame 16"),
        _ok("ack-superseded", "stream", "ack", {"v": 3, "type": "ack", "id": "d-20", "event_id": "ev-0010", "event_type": "prompt",
                                                "session": "main", "status": "superseded", "frame": None, "superseded_by": "ev-0011",
                                                "warning": None},
            "a prompt replaced before its block boundary"),
        _ok("error", "stream", "error", {"v": 3, "type": "error", "id": "d-21", "event_id": "ev-0012", "code": 200, "name": "UNKNOWN_SESSION",
                                         "message": "no session named 'side'", "session": "side"}, "an event for a session that does not exist"),
        _ok("status", "stream", "status.main", {"v": 3, "type": "status", "id": "d-22", "session": "main", "model": "toy", "shape": [64, 64, 3],
                                                "fps_target": 16.0, "fps_measured": 15.98, "latency_ms": 180.5, "latency_mean_ms": 210.0,
                                                "pending_events": 0, "lookahead_blocks": 1, "cache_fill": 0.75, "frames_late": 0,
                                                "frame": 320, "block": 80, "prompt_id": "ev-0003", "prompt": "a red ball rolls over green grass",
                                                "paused": False, "seed": 42, "request_id": None, "plugins": ["recorder", "mygame.rules"],
                                                "observations_dropped": 0, "frames_per_block": 4, "max_prompt_tokens": 16,
                                                "idle": "keep", "cache_sink_frames": 3, "cache_window_frames": 12,
                                                "answers_dropped": 0}, "the state of session 'main'"),
        _ok("heartbeat", "stream", "heartbeat", {"v": 3, "type": "heartbeat", "id": "d-23", "time": 1700000001.0, "period": 1.0,
                                                 "sessions": ["main"]}, "the daemon is alive and serves one session"),
        _bad("frame-wrong-size", "stream", (b"frame.raw.main", _pack(_frame()), pixels[:11]), "BAD_FIELD", "raw payload must be h*w*3 bytes"),
        _bad("frame-no-payload", "stream", (b"frame.raw.main", _pack(_frame())), "MALFORMED", "frames have 3 parts"),
        _bad("frame-wrong-topic", "stream", (b"frame.jpeg.main", _pack(_frame()), pixels), "MALFORMED", "topic names the encoding"),
    ]


def _version_2() -> list[Vector]:
    """Added with protocol version 2 (appended, so earlier files keep their numbers)."""
    nested: Any = 1
    for _ in range(1000):
        nested = [nested]
    depth_16: Any = {"hp": 1}
    for _ in range(15):
        depth_16 = {"d": depth_16}
    event = {"v": 3, "type": "event", "id": "ev-0013", "client": None, "session": "main", "name": "deep", "payload": depth_16}
    return [
        _ok("ack-accepted", "stream", "ack", {"v": 3, "type": "ack", "id": "d-24", "event_id": "ev-0004", "event_type": "prompt",
                                              "session": "main", "status": "accepted", "frame": 96, "superseded_by": None,
                                              "warning": None},
            "prompt ev-0004 is queued for the block boundary at frame 96; its final ack follows"),
        Vector("prompt-version-1", "control", (b"prompt", _pack(_prompt(v=1))),
               "a version-1 control body is accepted unchanged (it decodes to the current message)", message=_prompt()),
        Vector("prompt-nil-optionals", "control", (b"prompt", _pack(_prompt(id="ev-0012", transition=None))),
               "nil in an optional field means absent: transition takes its default", message=_prompt(id="ev-0012")),
        _ok("event-payload-16-deep", "control", "event", event, "a payload nested exactly 16 levels (the payload map is level 1)"),
        _bad("payload-17-deep", "control", (b"event", _pack({**event, "payload": {"d": depth_16}})), "BAD_FIELD",
             "a payload nested 17 levels"),
        _bad("nested-1000-deep", "control", (b"prompt", _pack(_prompt(name=nested))), "MALFORMED",
             "a 1 KB body nested 1000 levels (limit MAX_NESTING = 32 for the whole body)"),
        _bad("binary-key", "control", (b"prompt", _pack({**_prompt(), b"x": 1})), "MALFORMED", "a binary map key"),
        _bad("binary-key-in-payload", "control", (b"event", _pack({**event, "payload": {b"k": 1}})), "MALFORMED",
             "a binary map key inside a payload"),
        _bad("required-nil", "control", (b"prompt", _pack(_prompt(text=None))), "MISSING_FIELD",
             "a required field sent as nil is missing"),
        _bad("missing-type", "control", (b"prompt", _pack({k: v for k, v in _prompt().items() if k != "type"})),
             "MISSING_FIELD", "'type' is required"),
        _ok("event-relayed", "stream", "event.main", {"v": 3, "type": "event", "id": "d-25", "event_id": "ev-0014",
                                                      "session": "main", "name": "choice", "payload": {"index": 1},
                                                      "client": "game", "frame": 132},
            "the daemon relays game event ev-0014 it accepted at frame 132 to listeners of event.main"),
    ]


def _version_3() -> list[Vector]:
    """Added with protocol version 3 (appended)."""
    return [
        Vector("prompt-version-2", "control", (b"prompt", _pack(_prompt(v=2))),
               "a version-2 control body is accepted unchanged (version 3 changed only the control socket's type)",
               message=_prompt()),
        _ok("ack-warning", "stream", "ack", {"v": 3, "type": "ack", "id": "d-26", "event_id": "ev-0015", "event_type": "prompt",
                                             "session": "main", "status": "applied", "frame": 48, "superseded_by": None,
                                             "warning": "unknown words in prompt: 'dragon'"},
            "prompt ev-0015 took effect at frame 48; the model read past one of its words, which `warning` names"),
    ]


def build_vectors() -> list[Vector]:
    """Every vector, in file order."""
    return _control_valid() + _control_invalid() + _stream() + _version_2() + _version_3()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bin_hex": value.hex()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def render(vectors: list[Vector]) -> dict[str, bytes]:
    """File name -> exact file contents, index.json included."""
    files: dict[str, bytes] = {}
    index = []
    for number, vec in enumerate(vectors, start=1):
        name = f"{number:02d}-{vec.name}.msgpack"
        files[name] = _pack(list(vec.parts))
        entry: dict[str, Any] = {"file": name, "socket": vec.socket, "valid": vec.error is None, "description": vec.description}
        if vec.error is None:
            entry.update(canonical=vec.canonical, message=_jsonable(vec.message))
            if len(vec.parts) == 3:
                entry["payload_hex"] = vec.parts[2].hex()
        else:
            entry["error"] = {"code": int(ErrorCode[vec.error]), "name": vec.error}
            if vec.event_id is not None:
                entry["error"]["event_id"] = vec.event_id
        index.append(entry)
    files["index.json"] = (json.dumps(index, indent=1) + "\n").encode()
    return files


def main() -> None:
    VECTOR_DIR.mkdir(exist_ok=True)
    for old in VECTOR_DIR.glob("*.msgpack"):
        old.unlink()
    for name, data in render(build_vectors()).items():
        (VECTOR_DIR / name).write_bytes(data)
    print(f"wrote {len(build_vectors())} vectors to {VECTOR_DIR}")


if __name__ == "__main__":
    main()
