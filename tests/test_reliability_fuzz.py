"""Issue 12: 10^5 malformed control messages over a real TCP socket into a live daemon
(random-small, its start-up session streaming). The daemon must read every one, never die,
keep its memory bounded, and afterwards answer a well-behaved client's every event with
`accepted` and then `applied`.

The messages come from protocol/vectors/ (control side) and from limit cases, mutated
cheaply so that 10^5 of them are made in well under a second: random bytes, flipped and
truncated bodies, deep nesting in every field, huge strings, wrong types, binary keys,
three-part messages. Valid vectors are aimed at a session that does not exist ("fz"), so
a mutation that happens to stay valid cannot open or steer sessions."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from protocol import StatusRequest, encode
from protocol.client import Controller, Viewer
from protocol.codec import decode_stream
from runtime.daemon.daemon import DaemonConfig
from runtime.daemon.inprocess import serve_in_thread
from runtime.pipeline import load_pipeline

TCP = "tcp://127.0.0.1:*"
VECTORS = Path(__file__).resolve().parents[1] / "protocol" / "vectors"
COUNT = 100_000
RSS_GROWTH_MIB = 16  # allowed growth of this process (daemon + client) over a repeated flood


def rss_mib() -> float:
    """Resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _with_nested(base: dict, field: str, depth: int) -> bytes:
    """`base` with `field` set to arrays and maps nested `depth` deep, written byte by byte
    (msgpack's own packer refuses such depths)."""
    rest = {k: v for k, v in base.items() if k != field}
    assert len(rest) < 15  # a fixmap: its header is one byte
    nested = b"".join(b"\x91" if i % 2 else b"\x81\xa1k" for i in range(depth)) + b"\x01"
    return bytes([0x80 | (len(rest) + 1)]) + msgpack.packb(rest)[1:] + msgpack.packb(field) + nested


def _control_vectors() -> list[list[bytes]]:
    """Every control vector, re-aimed at session 'fz' where the body is a map (opens get a wrong topic)."""
    out = []
    for entry in json.loads((VECTORS / "index.json").read_text()):
        if entry["socket"] != "control":
            continue
        parts = msgpack.unpackb((VECTORS / entry["file"]).read_bytes(), raw=False)
        try:
            body = msgpack.unpackb(parts[1], raw=False, strict_map_key=False)
            body["session"] = "fz"
            topic = b"nope" if body.get("type") == "open" else parts[0]
            parts = [topic, msgpack.packb(body, use_bin_type=True), *parts[2:]]
        except Exception:  # noqa: BLE001 - not a map: the vector is kept as it is
            pass
        out.append(parts)
    return out


def _limit_cases() -> list[list[bytes]]:
    base = {"v": 2, "type": "event", "id": "lim", "session": "fz", "name": "x"}
    cases = []
    for field in ("payload", "name", "id", "session", "client", "v", "type"):
        for depth in (33, 200, 2000):
            cases.append([b"event", _with_nested(base, field, depth)])
        for wrong in (3.5, -1, True, None, b"\x00\xff", [1, 2], {"a": 1}, "x" * 3000, 2**64 - 1):
            cases.append([b"event", msgpack.packb({**base, field: wrong}, use_bin_type=True)])
    cases.append([b"event", msgpack.packb({**base, "payload": {b"bin": 1}}, use_bin_type=True)])
    cases.append([b"event", msgpack.packb({**base, 7: 1})])
    cases.append([b"prompt", msgpack.packb({**base, "type": "prompt", "text": "w" * 2001})])
    cases.append([b"event", msgpack.packb(base), b"third part"])
    cases.append([b"event"])
    cases.append([b"", b"", b"", b""])
    return cases


def malformed_messages(count: int, seed: int = 12) -> list[list[bytes]]:
    """`count` hostile multipart messages, made fast from a few hundred templates."""
    rng = random.Random(seed)
    templates = _control_vectors() + _limit_cases()
    huge = [b"prompt", msgpack.packb({"v": 2, "type": "prompt", "id": "huge", "session": "fz", "text": "w " * 40_000})]
    out: list[list[bytes]] = []
    for i in range(count):
        kind = i % 5
        if i % 2000 == 1999:  # a body over MAX_MESSAGE_BYTES, now and then
            out.append(huge)
            continue
        if kind == 0:  # random bytes, 1..4 parts
            out.append([rng.randbytes(rng.randint(0, 40)) for _ in range(rng.randint(1, 4))])
            continue
        topic, body, *rest = rng.choice(templates) + [b""]
        body = bytearray(body)
        if kind in (1, 2) and body:  # flip a few bytes
            for _ in range(rng.randint(1, 3)):
                body[rng.randrange(len(body))] = rng.randrange(256)
        elif kind == 3:  # truncate, or extend with garbage
            body = body[: rng.randrange(len(body) + 1)] if rng.random() < 0.5 else body + rng.randbytes(rng.randint(1, 9))
        parts = [topic, bytes(body)]
        if rng.random() < 0.05:
            parts.append(b"extra")
        out.append(parts)
    return out


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("random-small", max_streams=2)


def _flood(hostile: zmq.Socket, answers: zmq.Socket, messages: list[list[bytes]], end_id: str) -> None:
    """Send every message, then a status request on the same connection; return once it is
    answered, i.e. once the daemon has read everything sent before it."""
    for parts in messages:
        hostile.send_multipart(parts)  # blocks while the queue is full: every message reaches the daemon
    hostile.send_multipart(encode(StatusRequest(id=end_id, client="fuzz-end")))
    deadline = time.monotonic() + 60
    while True:
        assert answers.poll(max(0.0, deadline - time.monotonic()) * 1000), "the daemon stopped answering"
        msg = decode_stream(answers.recv_multipart())
        if getattr(msg, "event_id", None) == end_id:  # answered (or RATE_LIMITED: the flood spent
            return                                      # this connection's budget): read either way


def test_a_flood_of_malformed_messages_leaves_the_daemon_serving(pipe):
    messages = malformed_messages(COUNT)
    config = DaemonConfig(control=TCP, stream=TCP, max_sessions=2)
    with serve_in_thread(pipe, config) as daemon:
        control, stream = daemon.endpoints
        context = zmq.Context()
        try:
            hostile = context.socket(zmq.DEALER)
            hostile.sndhwm = 1000  # a bounded queue here, so the flood's memory is the daemon's to show
            hostile.connect(control)
            answers = hostile  # answers come back on the sender's connection
            hostile.send_multipart(encode(StatusRequest(id="probe", client="fuzz-end")))
            assert hostile.poll(10_000), "the daemon did not answer the probe"
            # Twice the same flood: the first brings the allocators to their working size,
            # the second must not grow the process further (the daemon keeps nothing per message).
            started = time.monotonic()
            _flood(hostile, answers, messages, "end-1")
            first = rss_mib()
            _flood(hostile, answers, messages, "end-2")
            elapsed, second = time.monotonic() - started, rss_mib()
        finally:
            context.destroy(linger=0)
        print(f"fuzz: 2 x {COUNT} messages read by the daemon in {elapsed:.1f} s; RSS {first:.0f} -> {second:.0f} MiB")
        # Bounded bookkeeping: answered ids, rate-limit buckets, open sessions.
        assert len(daemon.recent) <= daemon.recent.capacity + 8
        assert len(daemon.limiter._buckets) <= daemon.limiter.max_clients  # noqa: SLF001
        assert set(daemon.sessions) == {"main"}
        # A well-behaved client: every event accepted, then applied, frames still flowing.
        with Controller(control) as ctl, Viewer(stream, acks=False, status=False) as view:
            for text in ("a blue cube", "a red ball", "a green tree") * 3:  # one at a time: none coalesced
                ticket = ctl.send_prompt(text)
                assert ticket.accepted_frame(10) is not None and ticket.result(10).status == "applied"
            picture = next(p for p in view.frames(timeout=10) if p.frame.frame >= ticket.result(0).frame)
    assert second - first < RSS_GROWTH_MIB
    assert picture.frame.prompt_id == ticket.event_id  # the last prompt is on screen
