"""Issue 12: a short load, 20 controllers x 20 events/s x 5 s against a live random-small
daemon (runtime/daemon/soak.py, the code path of `longlive soak`): every event gets exactly
one final answer, none is lost, and the sessions keep their frame rate."""

from __future__ import annotations

from runtime.daemon.daemon import DaemonConfig
from runtime.daemon.inprocess import serve_in_thread
from runtime.daemon.soak import LoadPlan, rss_mib, run_load
from runtime.pipeline import load_pipeline

TCP = "tcp://127.0.0.1:*"


def test_twenty_controllers_lose_no_event_and_the_sessions_keep_their_fps():
    pipe = load_pipeline("random-small", max_streams=2)
    plan = LoadPlan(controllers=20, rate=20.0, seconds=5.0, sessions=2, fps=8.0, grace_s=30.0)
    with serve_in_thread(pipe, DaemonConfig(control=TCP, stream=TCP, default_session=None)) as daemon:
        figures = run_load(daemon.endpoints[0], plan, memory=lambda: rss_mib(__import__("os").getpid()), log=print)
    events = figures["events"]
    assert events["sent"] >= 0.95 * plan.controllers * plan.rate * plan.seconds
    assert events["lost"] == 0 and events["two_final_answers"] == 0
    assert events["applied"] + events["superseded"] + events["errored"] == events["sent"]
    assert events["applied"] >= events["sent"] // 4  # seeds and game events apply; prompts coalesce
    assert set(events["errors"]) <= {"TOO_MANY_PENDING"}, events["errors"]
    # Alone on the 2-core VM the sessions keep 100 % of their frames; with another job on the
    # machine, 83-89 %, and once 72 % in a clean-clone CI run (2026-12-04). A starved generator (the
    # full soak here) keeps about a third. The frame rate itself is `longlive soak`'s figure
    # (RELIABILITY.md); this bound only tells a kept rate from a starved one.
    for session, frames in figures["frames"].items():
        assert frames["kept"] >= 0.5, (session, frames)
