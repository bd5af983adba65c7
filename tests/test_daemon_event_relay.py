"""Game events are relayed on `event.<session>` once per event id, so a story runner or demo
can hear events any controller (a game, the OSC bridge) sends through the daemon."""

from __future__ import annotations

import time

import pytest

from protocol.client import Controller, Viewer
from protocol.messages import EventNotice, GameEvent
from runtime.daemon.daemon import DaemonConfig
from runtime.daemon.inprocess import serve_in_thread
from runtime.pipeline import load_pipeline

TCP = "tcp://127.0.0.1:*"


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("random-small", max_streams=2)


def notices(view: Viewer, seconds: float) -> list[EventNotice]:
    got, deadline = [], time.monotonic() + seconds
    while (msg := view.recv(timeout=max(0.0, deadline - time.monotonic()))) is not None:
        if isinstance(msg, EventNotice):
            got.append(msg)
    return got


def test_an_event_is_relayed_once_to_listeners_of_its_session(pipe):
    with serve_in_thread(pipe, DaemonConfig(control=TCP, stream=TCP)) as daemon, \
            Viewer(daemon.endpoints[1], events=True, acks=False, status=False) as listener, \
            Viewer(daemon.endpoints[1], sessions=("other",), events=True, acks=False, status=False) as elsewhere, \
            Viewer(daemon.endpoints[1], acks=False, status=False) as deaf, \
            Controller(daemon.endpoints[0], name="game") as game:
        ack = game.event("choice", {"index": 1}).result()
        game.publish(GameEvent(id=ack.event_id, client="game", session="main", name="choice", payload={"index": 1}))
        heard = notices(listener, 1.0)
        assert notices(elsewhere, 0.2) == []
        assert not any(isinstance(m, EventNotice) for m in iter(lambda: deaf.recv(timeout=0.2), None))
    assert [(n.event_id, n.name, dict(n.payload), n.client) for n in heard] == [
        (ack.event_id, "choice", {"index": 1}, "game")]
    assert ack.frame is None and heard[0].frame >= 0  # no plugin here: acked without a frame, still relayed
