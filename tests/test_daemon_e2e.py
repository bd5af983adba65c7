"""The daemon end to end over real sockets (tcp loopback on free ports, and ipc), with the
real random-small pipeline: prompt switches land exactly on the acked frame, coalescing,
scheduling, several sessions batched, late joiners, errors that never stop the stream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import msgpack
import pytest
import zmq

from protocol import Ack, Error, ErrorCode, Pause, Prompt, Resume, Status, encode
from protocol import constants as C
from plugins import hookimpl
from plugins.host import PluginHost
from protocol.client import Controller, Picture, RemoteError, Viewer
from runtime.daemon.daemon import Daemon, DaemonConfig
from runtime.daemon.inprocess import serve_in_thread
from runtime.pipeline import load_pipeline

BLUE = "a blue cube slides on the snowy field"
NIGHT = "a red ball bounces under the starry night sky"
TCP = "tcp://127.0.0.1:*"


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("random-small", max_streams=4)


@contextmanager
def daemon_on(pipe, transport: str = "tcp", tmp_path=None, plugins=None, **config) -> Iterator[tuple[Daemon, str, str]]:
    if transport == "tcp":
        control, stream = TCP, TCP
    else:
        control, stream = f"ipc://{tmp_path}/control", f"ipc://{tmp_path}/stream"
    with serve_in_thread(pipe, DaemonConfig(control=control, stream=stream, **config), plugins) as daemon:
        yield daemon, *daemon.endpoints


def gather(view: Viewer, last_frame: int | None = None, session: str = "main", ack_ids: set[str] = frozenset(),
           timeout: float = 20) -> tuple[list[Picture], dict[str, Ack]]:
    """Pictures of `session` up to frame `last_frame`, and the acks for `ack_ids`."""
    pictures: list[Picture] = []
    acks: dict[str, Ack] = {}
    deadline = time.monotonic() + timeout
    while set(acks) != set(ack_ids) or (last_frame is not None and (not pictures or pictures[-1].frame.frame < last_frame)):
        msg = view.recv(timeout=max(0.0, deadline - time.monotonic()))
        assert msg is not None, f"timed out: frames {[p.frame.frame for p in pictures]}, acks {sorted(acks)}"
        if isinstance(msg, Picture) and msg.frame.session == session:
            pictures.append(msg)
        elif isinstance(msg, Ack) and msg.event_id in ack_ids:
            acks[msg.event_id] = msg
    return pictures, acks


def frames_until(view: Viewer, last_frame: int, session: str = "main") -> list[Picture]:
    return gather(view, last_frame, session)[0]


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_prompt_takes_effect_exactly_at_the_acked_frame(pipe, transport, tmp_path):
    with daemon_on(pipe, transport, tmp_path) as (_, control, stream), \
            Viewer(stream, acks=False, status=False) as view, Controller(control) as ctl:
        first = next(view.frames(timeout=20))  # the viewer is live before the prompt is sent
        ack = ctl.send_prompt(BLUE).result()
        assert ack.status == "applied" and ack.session == "main" and ack.frame > first.frame.frame
        pictures = [first] + frames_until(view, ack.frame + pipe.frames_per_block)
    indices = [p.frame.frame for p in pictures]
    assert indices == list(range(indices[0], indices[-1] + 1))  # contiguous: nothing lost or reordered
    for p in pictures:
        assert p.frame.prompt_id == (ack.event_id if p.frame.frame >= ack.frame else None)
        assert p.frame.t == pytest.approx(p.frame.frame / pipe.fps)
        assert p.image.shape == (*pipe.frame_shape, 3)
    walls = [p.frame.wall for p in pictures]
    assert walls == sorted(walls)


def test_coalescing_scheduling_and_superseded_acks(pipe):
    F = pipe.frames_per_block
    with daemon_on(pipe) as (_, control, stream), Viewer(stream, status=False) as view, \
            Controller(control) as ctl:
        paused = ctl.pause().result()
        # Three prompts reach the paused session before its next block boundary.
        a, b = (Prompt(id=ctl.new_id(), session="main", text=t) for t in (NIGHT, BLUE))
        c = Prompt(id=ctl.new_id(), session="main", text=NIGHT, at_frame=paused.frame + 2 * F + 1)
        for msg in (a, b, c):
            ctl.publish(msg)  # same connection as the acked pause, so none is lost
        resumed = ctl.resume().result()
        pictures, acks = gather(view, paused.frame + 4 * F, ack_ids={a.id, b.id, c.id})
    assert resumed.frame == paused.frame
    assert acks[a.id].status == "superseded" and acks[a.id].superseded_by == b.id and acks[a.id].frame is None
    assert acks[b.id].status == "applied" and acks[b.id].frame == paused.frame
    assert acks[c.id].frame == paused.frame + 3 * F  # the first block boundary >= at_frame
    by_frame = {p.frame.frame: p.frame.prompt_id for p in pictures}
    assert by_frame[paused.frame] == b.id and by_frame[paused.frame + 3 * F - 1] == b.id
    assert by_frame[paused.frame + 3 * F] == c.id


def test_sessions_are_batched_and_limited(pipe):
    batches: list[int] = []
    step = pipe.engine.step

    def counting_step(streams):
        batches.append(len(streams))
        return step(streams)

    pipe.engine.step = counting_step
    try:
        with daemon_on(pipe, max_sessions=2) as (_, control, stream), \
                Viewer(stream, sessions=None, acks=False, status=False) as view, Controller(control) as ctl:
            opened = ctl.open("side", seed=3, prompt=BLUE).result()
            assert opened.frame == 0
            with pytest.raises(RemoteError) as info:
                ctl.open("third", seed=0).result()
            assert info.value.code == ErrorCode.TOO_MANY_SESSIONS
            side_frames = frames_until(view, 2 * pipe.frames_per_block, "side")
            assert ctl.close_session("side").result().frame is None
    finally:
        del pipe.engine.step
    assert 2 in batches  # both sessions advanced in one batched engine step
    assert side_frames[0].frame.frame == 0 and side_frames[-1].frame.prompt_id == opened.event_id


def test_late_joiner_is_greeted_with_current_state(pipe):
    with daemon_on(pipe, status_s=3600.0) as (_, control, stream), Controller(control) as ctl:
        ctl.open("side", seed=1).result()
        ack = ctl.send_prompt(BLUE).result()
        with Viewer(stream, sessions=None, acks=False) as late:
            statuses: dict[str, Status] = {}
            while len(statuses) < 2:
                msg = late.recv(timeout=5)  # far sooner than the hour-long status period
                assert msg is not None, "no greeting"
                if isinstance(msg, Status):
                    statuses[msg.session] = msg
    main = statuses["main"]
    assert main.prompt_id == ack.event_id and main.prompt == BLUE and main.frame > ack.frame
    assert main.request_id is None and not main.paused and main.model == "random-small"
    assert statuses["side"].prompt_id is None


def test_resent_event_is_answered_again_not_executed_again(pipe):
    with daemon_on(pipe) as (_, control, stream), Controller(control) as ctl:
        prompt = Prompt(id=ctl.new_id(), session="main", text=BLUE)
        first = ctl.send(prompt)
        again = ctl.send(prompt)
        assert again == first  # the remembered answer, same frame, not a second switch
        status, = ctl.status("main")
        assert status.prompt_id == prompt.id and status.latency_ms is not None


def test_game_event_hook_maps_events_to_prompts(pipe):
    class Rules:
        @hookimpl
        def longlive_game_event(self, name, payload):
            return NIGHT if name == "door_opened" and payload.get("room") == "hall" else None

    host = PluginHost(builtin_models=False)
    host.register(Rules(), "rules")
    with daemon_on(pipe, plugins=host) as (_, control, stream), Viewer(stream, acks=False, status=False) as view, \
            Controller(control) as ctl:
        assert ctl.event("footstep", {"x": 1.5}).result().frame is None
        ack = ctl.event("door_opened", {"room": "hall"}).result()
        pictures = frames_until(view, ack.frame)
    assert ack.event_type == "event" and pictures[-1].frame.prompt_id == ack.event_id


def test_bad_input_is_answered_and_the_stream_goes_on(pipe):
    def body(**fields):
        return msgpack.packb({"v": 1, "id": fields.pop("id"), **fields})

    bad = [  # (parts, expected code, event id reported)
        ([b"prompt", b"\xc1garbage"], ErrorCode.MALFORMED, None),
        ([b"prompt", body(id="e1", type="prompt", v=9, session="main", text="x")], ErrorCode.BAD_VERSION, "e1"),
        ([b"warp", body(id="e2", type="warp")], ErrorCode.UNKNOWN_TYPE, "e2"),
        ([b"prompt", body(id="e3", type="prompt", session="main", text="x" * 2001)], ErrorCode.PROMPT_TOO_LONG, "e3"),
        ([b"prompt", body(id="e4", type="prompt", session="main", text="x" * 70000)], ErrorCode.TOO_LARGE, None),
        ([b"seed", body(id="e5", type="seed", session="main", seed="7")], ErrorCode.BAD_FIELD, "e5"),
        (encode(Prompt(id="e6", session="nope", text=BLUE)), ErrorCode.UNKNOWN_SESSION, "e6"),
        (encode(Prompt(id="e7", session="main", text="!!! ???")), ErrorCode.BAD_PROMPT, "e7"),
        ([b"open", body(id="e8", type="open", session="main", seed=0)], ErrorCode.SESSION_EXISTS, "e8"),
        ([b"open", body(id="e9", type="open", session="s2", seed=0, model="wan-14b")], ErrorCode.UNKNOWN_MODEL, "e9"),
        ([b"open", body(id="e10", type="open", session="s2", seed=0, width=100)], ErrorCode.UNSUPPORTED, "e10"),
    ]
    with daemon_on(pipe) as (_, control, stream), Viewer(stream, status=False) as view, \
            Controller(control) as ctl:
        ctl.status()  # the controller's connection is up: raw sends below are not lost
        for parts, _, _ in bad:
            ctl.control.send_multipart(parts)
        errors: list[Error] = []
        while len(errors) < len(bad):
            msg = view.recv(timeout=20)
            assert msg is not None, f"only {len(errors)} errors came back"
            if isinstance(msg, Error):
                errors.append(msg)
        before = next(view.frames(timeout=20)).frame.frame
        ack = ctl.send_prompt(BLUE).result()  # still obeying
        after = frames_until(view, ack.frame)
    # BAD_PROMPT comes after `accepted`, at the block boundary where the text is encoded; the
    # others in the order sent.
    assert sorted((e.code, e.event_id or "") for e in errors) == sorted((int(c), i or "") for _, c, i in bad)
    assert [e.event_id for e in errors if e.code != ErrorCode.BAD_PROMPT] == [i for _, c, i in bad if c != ErrorCode.BAD_PROMPT]
    assert all(e.name == ErrorCode(e.code).name and e.message for e in errors)
    assert "2001 characters" in errors[3].message and "nope" in errors[6].message
    assert after[-1].frame.frame > before


def test_oversized_beyond_the_hard_limit_costs_only_that_connection(pipe):
    with daemon_on(pipe) as (_, control, stream), Controller(control) as hostile:
        hostile.status()
        hostile.control.send_multipart([b"event", b"\x00" * (2 * 1024 * 1024)])
        with Controller(control) as ctl:
            assert ctl.send_prompt(BLUE).result().frame is not None


def _timed_frames(view: Viewer, seconds: float) -> list[tuple[float, Picture]]:
    """(arrival wall time, picture) for every frame arriving within `seconds`."""
    out = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        msg = view.recv(timeout=left)
        if isinstance(msg, Picture):
            out.append((time.time(), msg))
    return out


def test_paced_stream_holds_fps_and_lookahead_and_resumes_without_burst(pipe):
    fps, F = 4.0, pipe.frames_per_block  # a block lasts 0.75 s; random-small makes one in ~0.2 s here
    block_s = F / fps
    with daemon_on(pipe, default_session=None, lookahead_blocks=1.0) as (_, control, stream), \
            Viewer(stream, sessions=["paced"], acks=False, status=False) as view, Controller(control) as ctl:
        ctl.open("paced", seed=0, fps=fps).result()
        steady = _timed_frames(view, 2.5)
        paused = ctl.pause("paced").result()
        _timed_frames(view, 1.5)  # frames generated ahead still arrive; then silence
        resume_wall = time.time()
        resumed = ctl.resume("paced").result()
        after = _timed_frames(view, 1.5)
        status, = ctl.status("paced")
    assert status.frames_late == 0 and status.fps_target == fps

    # Holds its rate: due times exactly 1/fps apart, and about fps frames per second arrive.
    walls = [p.frame.wall for _, p in steady]
    assert all(b - a == pytest.approx(1 / fps, abs=1e-6) for a, b in zip(walls, walls[1:]))
    arrived_in_2s = [t for t, _ in steady if t <= steady[0][0] + 2.0]
    assert 2.0 * fps - F <= len(arrived_in_2s) <= 2.0 * fps + 2 * F
    # Lookahead: a block starts once its first frame is due within one block, so no frame
    # arrives after it is due, and none more than that block plus its own length early.
    for arrival, p in steady + after:
        ahead = p.frame.wall - arrival
        assert -0.05 <= ahead <= (block_s if p.frame.frame % F == 0 else 2 * block_s) + 0.05

    # Resume: re-anchored at the resume time, the first frame is the acked one, due at once ...
    first_t, first = after[0]
    assert first.frame.frame == resumed.frame == paused.frame
    assert resume_wall <= first.frame.wall <= resume_wall + block_s
    # ... and no burst makes up for the 1.5 s paused: at most one second of frames plus the lookahead.
    within_1s = [p for t, p in after if t <= resume_wall + 1.0]
    assert len(within_1s) <= fps * 1.0 + 2 * F
    walls = [p.frame.wall for _, p in after]
    assert all(b - a == pytest.approx(1 / fps, abs=1e-6) for a, b in zip(walls, walls[1:]))


def test_stalled_and_vanished_viewers_do_not_hold_back_others(pipe):
    with daemon_on(pipe, hwm=4) as (_, control, stream), Viewer(stream, acks=False, status=False) as view:
        context = zmq.Context()
        try:
            stalled = context.socket(zmq.SUB)  # subscribes to everything and never reads
            stalled.rcvhwm = 1
            stalled.connect(stream)
            stalled.subscribe(b"")
            vanished = context.socket(zmq.SUB)
            vanished.connect(stream)
            vanished.subscribe(b"frame.jpeg.main")
            first = next(view.frames(timeout=20)).frame.frame
            vanished.close(linger=0)
            pictures = frames_until(view, first + 12 * pipe.frames_per_block)
        finally:
            context.destroy(linger=0)
    assert [p.frame.frame for p in pictures] == list(range(first + 1, first + 12 * pipe.frames_per_block + 1))
    assert view.missed == 0


def test_a_flooding_client_is_rate_limited_per_client(pipe):
    with daemon_on(pipe, hwm=1000) as (_, control, stream), Viewer(stream, status=False) as view, \
            Controller(control, name="flood") as flood, Controller(control, name="calm") as calm:
        flood.status()
        ids = [flood.new_id() for _ in range(C.EVENT_BURST + 60)]
        for event_id in ids:
            flood.publish(Pause(id=event_id, client="flood", session="main"))
        assert calm.status()  # another client's budget is untouched
        answers: dict[str, Ack | Error] = {}
        while len(answers) < len(ids):
            msg = view.recv(timeout=20)
            assert msg is not None, f"{len(answers)} of {len(ids)} answered"
            if isinstance(msg, (Ack, Error)) and msg.event_id in ids:
                answers[msg.event_id] = msg
    limited = [a for a in answers.values() if isinstance(a, Error)]
    assert all(a.code == ErrorCode.RATE_LIMITED and "flood" in a.message for a in limited)
    assert len(ids) - len(limited) >= C.EVENT_BURST and len(limited) >= 30


def test_pause_before_the_next_block_supersedes_a_resume(pipe):
    # Driven turn by turn over inproc (delivery is immediate there), so that resume and pause
    # are certain to meet the daemon between the same two blocks.
    daemon = Daemon(pipe, DaemonConfig(control="inproc://control", stream="inproc://stream"))
    try:
        with Controller("inproc://control", context=daemon.context) as ctl, \
                Viewer("inproc://stream", status=False, context=daemon.context) as view:

            def answer(msg):
                """Resend until acked, turning the daemon by hand (the slow-joiner dance)."""
                for _ in range(50):
                    ctl.publish(msg)
                    daemon.turn()
                    try:
                        return gather(view, ack_ids={msg.id}, timeout=0.1)[1][msg.id]
                    except AssertionError:
                        continue
                raise AssertionError(f"{msg.TYPE} was never acked")

            pause = answer(Pause(id=ctl.new_id(), session="main"))
            resume, pause_again = Resume(id=ctl.new_id(), session="main"), Pause(id=ctl.new_id(), session="main")
            ctl.publish(resume)
            ctl.publish(pause_again)
            daemon.turn()
            _, acks = gather(view, ack_ids={resume.id, pause_again.id}, timeout=1)
    finally:
        daemon.close()
    assert acks[resume.id].status == "superseded" and acks[resume.id].superseded_by == pause_again.id
    assert acks[pause_again.id].frame == pause.frame and daemon.sessions == {}


def test_a_viewer_that_waits_until_ready_sees_a_new_sessions_first_frame(pipe):
    """The daemon greets a heartbeat subscriber at once, so `wait_ready` returns as soon as the
    subscriptions are in, and a session opened after it is seen from frame 0 (SPEC section 5)."""
    with daemon_on(pipe, heartbeat_s=3600.0) as (_, control, stream), \
            Viewer(stream, sessions=["fresh"], acks=False, status=False) as view, Controller(control) as ctl:
        started = time.monotonic()
        view.wait_ready(10)  # no regular heartbeat for an hour: only the greeting can answer
        waited = time.monotonic() - started
        ctl.open("fresh", seed=1).result(10)
        first = next(view.frames(timeout=20))
    assert first.frame.frame == 0 and waited < 5
