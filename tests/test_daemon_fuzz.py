"""Hypothesis drives hostile traffic into a live daemon's control socket: whatever arrives,
the daemon keeps answering and keeps streaming."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import Close, GameEvent, Open, Pause, Prompt, Resume, Seed, StatusRequest, encode
from protocol.client import Controller, Viewer
from runtime.daemon.daemon import DaemonConfig
from runtime.daemon.inprocess import serve_in_thread
from runtime.pipeline import load_pipeline

TCP = "tcp://127.0.0.1:*"
VALID = [
    Open(id="o", session="fuzz", seed=1, prompt="a red ball"),
    Close(id="c", session="main"),
    Prompt(id="p", session="main", text="a blue cube", transition="blend", blend_blocks=2),
    Prompt(id="q", session="main", text="snow", at_frame=12),
    Pause(id="pa", session="main"),
    Resume(id="re", session="main"),
    Seed(id="se", session="main", seed=9),
    GameEvent(id="ev", session="main", name="hit", payload={"hp": 3}),
    StatusRequest(id="st"),
]
SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30) | st.binary(max_size=30)
PLAIN = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=12)
FIELDS = st.sampled_from(["v", "type", "id", "client", "session", "text", "transition", "blend_blocks", "at_frame", "seed",
                          "fps", "width", "height", "name", "payload", "model", "prompt"])


def _pack(obj) -> bytes:
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return b"\xc0"


@st.composite
def mutated(draw) -> list[bytes]:
    msg = draw(st.sampled_from(VALID))
    body = msg.body()
    body["id"] = draw(st.text(min_size=1, max_size=12) | st.just(msg.id))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(FIELDS)
        if draw(st.booleans()):
            body.pop(key, None)
        else:
            body[key] = draw(PLAIN)
    topic = draw(st.just(msg.TYPE.encode()) | st.binary(max_size=8))
    return [topic, _pack(body)]


HOSTILE = (st.lists(st.binary(max_size=80), min_size=1, max_size=4)
           | st.tuples(st.binary(max_size=8), PLAIN).map(lambda tp: [tp[0], _pack(tp[1])])
           | mutated()
           | st.sampled_from(VALID).map(encode))


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("random-small", max_streams=2)


def test_hostile_control_traffic_never_stops_the_daemon(pipe):
    config = DaemonConfig(control=TCP, stream=TCP, max_sessions=2)
    with serve_in_thread(pipe, config) as daemon, Controller(daemon.endpoints[0], name="fuzz-probe") as ctl:
        ctl.status()  # the connection is up, so no burst below is lost to a slow join

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(HOSTILE, min_size=1, max_size=6))
        def burst(messages):
            for parts in messages:
                ctl.control.send_multipart(parts)
            # Sent after the burst on the same connection, so answered after all of it.
            assert ctl.status(timeout=30) is not None

        burst()
        for status in ctl.status():
            ctl.close_session(status.session).result()
        with Viewer(daemon.endpoints[1], sessions=["after"], acks=False, status=False) as view:
            ack = ctl.open("after", seed=0, prompt="a red ball").result()
            picture = next(view.frames(timeout=30))
    assert ack.frame == 0 and picture.frame.session == "after" and picture.frame.prompt_id == ack.event_id
