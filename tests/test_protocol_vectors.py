"""The codec against the wire-exact vectors in protocol/vectors/ (byte for byte)."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from protocol import ErrorCode, ProtocolError, decode_control, decode_stream, encode
from protocol.make_vectors import VECTOR_DIR, build_vectors, render

INDEX = json.loads((VECTOR_DIR / "index.json").read_text())


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"bin_hex"}:
        return bytes.fromhex(value["bin_hex"])
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _parts(entry: dict[str, Any]) -> list[bytes]:
    return msgpack.unpackb((VECTOR_DIR / entry["file"]).read_bytes())


def _decode(entry: dict[str, Any], parts: list[bytes]):
    return (decode_control if entry["socket"] == "control" else decode_stream)(parts)


def test_files_match_generator():
    """The checked-in files are exactly what protocol/make_vectors.py writes."""
    expected = render(build_vectors())
    on_disk = {p.name: p.read_bytes() for p in VECTOR_DIR.iterdir() if p.suffix in (".msgpack", ".json")}
    assert on_disk == expected


def test_index_covers_both_outcomes_and_every_type():
    valid = [e for e in INDEX if e["valid"]]
    types = {(e["socket"], e["message"]["type"]) for e in valid}
    assert types == {("control", t) for t in ("open", "close", "prompt", "pause", "resume", "seed", "event", "status")} | {
        ("stream", t) for t in ("frame", "ack", "error", "status", "heartbeat", "event")}
    assert len(INDEX) - len(valid) >= 25


@pytest.mark.parametrize("entry", [e for e in INDEX if e["valid"]], ids=lambda e: e["file"])
def test_valid_vector(entry):
    parts = _parts(entry)
    msg = _decode(entry, parts)
    assert msg.body() == _from_json(entry["message"])
    if "payload_hex" in entry:
        assert bytes(msg.data) == bytes.fromhex(entry["payload_hex"])
    reencoded = [bytes(p) for p in encode(msg)]
    if entry["canonical"]:
        assert reencoded == parts
    else:
        assert _decode(entry, reencoded) == msg


@pytest.mark.parametrize("entry", [e for e in INDEX if not e["valid"]], ids=lambda e: e["file"])
def test_invalid_vector(entry):
    with pytest.raises(ProtocolError) as info:
        _decode(entry, _parts(entry))
    assert info.value.code == ErrorCode[entry["error"]["name"]] == entry["error"]["code"]
    assert info.value.message  # a human-readable reason, not an empty string
    assert info.value.event_id == entry["error"].get("event_id")
