"""Plugins inside a running daemon, over real loopback sockets: each hook at its documented
moment with its documented arguments, a raising plugin disabled while the stream goes on, a
stuck observer that costs observations but no frames, and a game event turned into a prompt
change by a rules plugin that the toy model then shows."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from plugins import AckInfo, DaemonInfo, SessionInfo, hookimpl
from plugins.host import PluginHost
from protocol.client import Controller, Picture, Viewer
from runtime.daemon.daemon import DaemonConfig
from runtime.daemon.inprocess import serve_in_thread
from runtime.pipeline import load_pipeline

TCP = "tcp://127.0.0.1:*"


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("random-small", max_streams=4)


def serve(pipe, host: PluginHost, **config):
    return serve_in_thread(pipe, DaemonConfig(control=TCP, stream=TCP, **config), host)


def pictures_until(view: Viewer, last_frame: int, session: str = "main", timeout: float = 30) -> list[Picture]:
    got, deadline = [], time.monotonic() + timeout
    while not got or got[-1].frame.frame < last_frame:
        msg = view.recv(timeout=max(0.0, deadline - time.monotonic()))
        assert msg is not None, f"timed out at {[p.frame.frame for p in got][-3:]}"
        if isinstance(msg, Picture) and msg.frame.session == session:
            got.append(msg)
    return got


class Journal:
    """Records every hook call with its arguments and thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.threads: dict[str, set[str]] = {}
        self.done = threading.Event()

    def _log(self, hook: str, **kwargs) -> None:
        self.calls.append((hook, kwargs))
        self.threads.setdefault(hook, set()).add(threading.current_thread().name)

    @hookimpl
    def longlive_rewrite_prompt(self, session, text, event):
        self._log("rewrite_prompt", session=session, text=text, event=event)
        return f"{text} under a starry night sky" if event.type == "prompt" else None

    @hookimpl
    def longlive_game_event(self, session, name, payload):
        self._log("game_event", session=session, name=name, payload=dict(payload))
        return "a blue cube slides on the snowy field" if name == "snow" else None

    @hookimpl
    def longlive_daemon_started(self, daemon):
        self._log("daemon_started", daemon=daemon)

    @hookimpl
    def longlive_session_opened(self, session, prompt):
        self._log("session_opened", session=session, prompt=prompt)

    @hookimpl
    def longlive_session_status(self, session, status):
        self._log("session_status", session=session, status=dict(status))

    @hookimpl
    def longlive_event_acked(self, session, ack):
        self._log("event_acked", session=session, ack=ack)

    @hookimpl
    def longlive_frames(self, session, first_index, frames, prompt_id):
        self._log("frames", session=session, first_index=first_index, n=len(frames), shape=frames.shape,
                  writeable=frames.flags.writeable, prompt_id=prompt_id)

    @hookimpl
    def longlive_session_closed(self, session, frames):
        self._log("session_closed", session=session, frames=frames)

    @hookimpl
    def longlive_daemon_stopping(self):
        self._log("daemon_stopping")
        self.done.set()

    def of(self, hook: str) -> list[dict]:
        return [kwargs for name, kwargs in self.calls if name == hook]


def test_every_hook_is_called_with_its_arguments_at_its_moment(pipe):
    journal = Journal()
    host = PluginHost(builtin_models=False)
    host.register(journal, "journal")
    with serve(pipe, host, status_s=0.3) as daemon, Viewer(daemon.endpoints[1], status=False) as view, \
            Controller(daemon.endpoints[0]) as ctl:
        ack_prompt = ctl.send_prompt("a red ball bounces", session="main").result()
        ack_event = ctl.event("snow", {"depth": 3}).result()
        ack_other = ctl.event("footstep", {}).result()
        pictures = pictures_until(view, ack_event.frame + 3)
        time.sleep(0.4)  # one status period
        ctl.close_session("main").result()
    assert journal.done.wait(10)

    names = [name for name, _ in journal.calls]
    assert names[0] == "rewrite_prompt" and names[1] == "daemon_started" and names[2] == "session_opened"
    assert names[-2:] == ["session_closed", "daemon_stopping"]
    info = journal.of("session_opened")[0]["session"]
    assert isinstance(info, SessionInfo) and (info.name, info.model, info.fps, info.frames_per_block) == (
        "main", "random-small", pipe.fps, pipe.frames_per_block)
    assert isinstance(journal.of("daemon_started")[0]["daemon"], DaemonInfo)

    # decision hooks run on the daemon's loop (the default session is opened by the constructor,
    # on the caller's thread), observers on the plugin's own thread
    assert journal.threads["rewrite_prompt"] == {"MainThread", "longlive-daemon"}
    assert journal.threads["game_event"] == {"longlive-daemon"}
    assert {t for h, ts in journal.threads.items() if h not in ("rewrite_prompt", "game_event") for t in ts} == {
        "plugin-journal"}

    # the rewrite applied to the prompt; the game event reached the plugin with its payload
    rewritten = [c for c in journal.of("rewrite_prompt") if c["event"].id == ack_prompt.event_id][0]
    assert rewritten["text"] == "a red ball bounces" and rewritten["event"].type == "prompt"
    assert journal.of("game_event")[0] == {"session": info, "name": "snow", "payload": {"depth": 3}}
    assert ack_other.frame is None

    # frames: contiguous, read-only copies, the prompt id in effect
    blocks = journal.of("frames")
    assert [b["first_index"] for b in blocks] == list(range(0, 3 * len(blocks), 3))
    assert all(b["shape"] == (3, 64, 64, 3) and not b["writeable"] for b in blocks)
    by_frame = {b["first_index"]: b["prompt_id"] for b in blocks}
    assert by_frame[ack_event.frame] == ack_event.event_id
    assert {p.frame.frame: p.frame.prompt_id for p in pictures}[ack_prompt.frame] == ack_prompt.event_id

    # acks: after the frames they name, with what took effect
    acks = {c["ack"].event_id: c["ack"] for c in journal.of("event_acked")}
    assert acks[ack_prompt.event_id] == AckInfo(ack_prompt.event_id, "prompt", "applied", ack_prompt.frame,
                                                "a red ball bounces under a starry night sky", "recache", "prompt",
                                                acks[ack_prompt.event_id].latency_ms)
    assert acks[ack_prompt.event_id].latency_ms >= 0
    assert (acks[ack_event.event_id].frame, acks[ack_event.event_id].source) == (ack_event.frame, "event")
    assert acks[ack_other.event_id].frame is None
    position = {id(kw): i for i, (_, kw) in enumerate(journal.calls)}
    ack_at = position[id([c for c in journal.of("event_acked") if c["ack"].event_id == ack_event.event_id][0])]
    frames_at = position[id([b for b in blocks if b["first_index"] == ack_event.frame][0])]
    assert frames_at < ack_at

    statuses = journal.of("session_status")
    assert statuses and statuses[-1]["status"]["plugins"] == ("journal",)
    assert statuses[-1]["status"]["observations_dropped"] == 0
    assert journal.of("session_closed")[0]["frames"] == 3 * len(blocks)


def test_a_plugin_raising_in_a_hook_is_disabled_and_every_session_goes_on(pipe):
    class Faulty:
        @hookimpl
        def longlive_game_event(self, name):
            raise KeyError(name)

    host = PluginHost(builtin_models=False)
    host.register(Faulty(), "faulty")
    with serve(pipe, host) as daemon, Viewer(daemon.endpoints[1], sessions=None) as view, \
            Controller(daemon.endpoints[0]) as ctl:
        ctl.open("side", seed=1).result()
        assert ctl.event("jump", {}).result().frame is None  # declined, not an error
        ack = ctl.send_prompt("a blue cube slides on the snowy field", session="side").result()
        status = ctl.status("main")[0]
        pictures_until(view, ack.frame + 3, session="side")
    assert status.plugins == () and "KeyError: 'jump'" in host.disabled["faulty"]


def test_a_stuck_frames_observer_costs_observations_not_frames(pipe):
    """The observer never returns while the daemon streams at 16 fps: generation keeps its
    paced schedule (counted frames vs elapsed video time) and status counts the drops."""
    release = threading.Event()

    class Stuck:
        @hookimpl
        def longlive_frames(self):
            release.wait()

    host = PluginHost(builtin_models=False, observer_queue_blocks=4)
    host.register(Stuck(), "stuck")
    try:
        with serve(pipe, host) as daemon, Viewer(daemon.endpoints[1], status=False) as view, \
                Controller(daemon.endpoints[0]) as ctl:
            first = pictures_until(view, 0)[-1]
            start = time.monotonic()
            last = pictures_until(view, first.frame.frame + 48)[-1]
            elapsed = time.monotonic() - start
            status = ctl.status("main")[0]
            release.set()
    finally:
        release.set()
    produced = last.frame.frame - first.frame.frame
    # a blocking observer would hold the loop forever; a paced stream makes 16 frames/s
    assert produced / elapsed > 0.8 * pipe.fps
    assert status.observations_dropped >= produced // 3 - 4 - 1


def test_a_game_event_becomes_a_prompt_the_toy_world_shows():
    """event -> arcade rules plugin -> ack with a frame; the toy model's frames from there on
    show the new sky (read back by the toy probe), the frames before it the old one."""
    from toylab.probe import probe_frames

    toy = load_pipeline("toy", max_streams=1)
    host = PluginHost(builtin_models=False)
    host.load("plugins.examples.arcade_rules")
    day = "a red ball rests on the ground across a grassy meadow under a sunny daytime sky"
    with serve(toy, host, default_prompt=day) as daemon, Viewer(daemon.endpoints[1], status=False) as view, \
            Controller(daemon.endpoints[0]) as ctl:
        pictures = pictures_until(view, 11)
        ack = ctl.event("time", {"of_day": "night"}).result()
        pictures += pictures_until(view, ack.frame + 3 * toy.frames_per_block)
    frames = {p.frame.frame: p for p in pictures}
    assert all(frames[f].frame.prompt_id == ack.event_id for f in frames if f >= ack.frame)
    before = Counter(r.sky for r in probe_frames(
        [frames[f].image for f in frames if ack.frame - 6 <= f < ack.frame]))
    after = Counter(r.sky for r in probe_frames(
        [frames[f].image for f in frames if ack.frame + toy.frames_per_block <= f]))
    assert before.most_common(1)[0][0] == "day" and after.most_common(1)[0][0] == "night", (before, after)


def test_the_rules_plugin_in_the_docs_works_as_documented(tmp_path):
    """docs/PLUGINS.md's first example, loaded from a file, against the toy model."""
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "PLUGINS.md").read_text()
    (tmp_path / "rules.py").write_text(doc.split("```python\n", 1)[1].split("```", 1)[0])
    toy = load_pipeline("toy", max_streams=1)
    host = PluginHost(builtin_models=False)
    assert host.load(str(tmp_path / "rules.py")) == "rules"
    with serve(toy, host) as daemon, Viewer(daemon.endpoints[1], status=False) as view, \
            Controller(daemon.endpoints[0]) as ctl:
        night = ctl.event("clock", {"time": "night"}).result()
        ignored = ctl.event("clock", {"time": "teatime"}).result()
        pictures = pictures_until(view, night.frame)
    assert night.frame is not None and ignored.frame is None and not host.disabled
    assert pictures[-1].frame.prompt_id == night.event_id


def test_a_refused_event_is_an_error_with_the_plugins_reason(pipe):
    from plugins import Refused
    from protocol.client import RemoteError
    from protocol.constants import ErrorCode

    class Gate:
        @hookimpl
        def longlive_game_event(self, name):
            raise Refused(f"{name} is not allowed here")

    host = PluginHost(builtin_models=False)
    host.register(Gate(), "gate")
    with serve(pipe, host) as daemon, Controller(daemon.endpoints[0]) as ctl:
        with pytest.raises(RemoteError) as refused:
            ctl.event("teleport", {}).result()
        status = ctl.status("main")[0]
    assert refused.value.code == ErrorCode.EVENT_REFUSED
    assert "plugin gate refused: teleport is not allowed here" in str(refused.value)
    assert status.plugins == ("gate",)


def test_a_plugins_unusable_prompt_change_is_bad_prompt_naming_the_plugin(pipe):
    """A plugin's change obeys the rules of a controller's `prompt` message."""
    from plugins import PromptChange
    from protocol import constants as C
    from protocol.client import RemoteError
    from protocol.constants import ErrorCode

    class Sloppy:
        @hookimpl
        def longlive_game_event(self, name):
            return {"sideways": PromptChange("a red ball", transition="sideways"),
                    "blend": PromptChange("a red ball", transition="blend"),
                    "long": PromptChange("a" * (C.MAX_PROMPT_CHARS + 1))}.get(name)

    host = PluginHost(builtin_models=False)
    host.register(Sloppy(), "sloppy")
    with serve(pipe, host) as daemon, Controller(daemon.endpoints[0]) as ctl:
        for name, why in (("sideways", "transition"), ("blend", "blend_blocks"), ("long", "text")):
            with pytest.raises(RemoteError) as refused:
                ctl.event(name, {}).result()
            assert refused.value.code == ErrorCode.BAD_PROMPT
            assert f"plugin sloppy mapped event {name!r} to an unusable prompt change" in str(refused.value)
            assert why in str(refused.value)
        status = ctl.status("main")[0]
    assert status.plugins == ("sloppy",)  # refused changes do not disable the plugin
