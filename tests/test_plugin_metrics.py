"""The metrics plugin: notes in, a Prometheus endpoint scraped over HTTP on loopback and parsed
with prometheus_client's own parser; then a real daemon (random-small, loopback sockets) whose
scraped frame count equals the frames a viewer received."""

from __future__ import annotations

import re
import socket
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from plugins.hookspecs import AckInfo, SessionInfo
from plugins.host import PluginHost
from plugins.metrics import Metrics
from tests.serve_child import serve_with_plugin


def session(name: str = "main") -> SessionInfo:
    return SessionInfo(name, "toy", 16.0, (64, 64), 0, 3)


def status(**figures) -> dict:
    return {"fps_target": 16.0, "fps_measured": 0.0, "frames_late": 0, "cache_fill": 0.0, "latency_ms": None,
            "frame": 0, "pending_events": 0, "observations_dropped": 0, **figures}


def metrics_host(**settings) -> tuple[PluginHost, Metrics]:
    metrics = Metrics()
    host = PluginHost({"metrics": {"port": 0, **settings}}, builtin_models=False)
    assert host.register(metrics, "metrics") == "metrics", host.disabled
    return host, metrics


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def scrape_when(url: str, ready, timeout: float = 10.0) -> dict:
    """Scrape until ``ready(samples)`` holds: notes reach the plugin on its own thread."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.02)


def test_figures_follow_the_notes_fed():
    host, metrics = metrics_host()
    url = metrics.url
    assert url is not None and re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", url) and not url.endswith(":0/metrics")
    a, b = session("a"), session("b")
    host.notify("session_opened", session=a, prompt="x")
    host.notify("session_opened", session=b, prompt="y")
    host.notify("session_status", session=a, status=status(frame=30, frames_late=2, fps_measured=15.5,
                                                           cache_fill=0.5, pending_events=1, observations_dropped=3))
    host.notify("session_status", session=a, status=status(frame=48, frames_late=2, fps_measured=16.25,
                                                           cache_fill=1.0, observations_dropped=5))
    host.notify("session_status", session=b, status=status(frame=12, frames_late=1, observations_dropped=5))
    host.notify("event_acked", session=a, ack=AckInfo("e1", "prompt", "applied", 12, latency_ms=180.0))
    host.notify("event_acked", session=a, ack=AckInfo("e2", "prompt", "applied", 24, latency_ms=420.0))
    host.notify("event_acked", session=a, ack=AckInfo("e3", "prompt", "superseded", None))
    host.notify("event_acked", session=a, ack=AckInfo("e4", "event", "applied", None))  # no latency: not observed
    host.notify("session_closed", session=b, frames=15)  # the exact count beats the last status
    s = scrape_when(url, lambda s: sample(s, "longlive_sessions_open") == 1.0
                    and sample(s, "longlive_frames_total", session="b") == 15.0)
    assert sample(s, "longlive_frames_total", session="a") == 48.0  # running totals, not their sum
    assert sample(s, "longlive_frames_total", session="b") == 15.0
    assert sample(s, "longlive_frames_late_total", session="a") == 2.0
    assert sample(s, "longlive_frames_late_total", session="b") == 1.0
    assert sample(s, "longlive_fps_measured", session="a") == 16.25
    assert sample(s, "longlive_fps_target", session="a") == 16.0
    assert sample(s, "longlive_cache_fill", session="a") == 1.0
    assert sample(s, "longlive_pending_events", session="a") == 0.0
    assert sample(s, "longlive_fps_measured", session="b") is None  # a closed session's gauges are gone
    assert sample(s, "longlive_cache_fill", session="b") is None
    assert sample(s, "longlive_plugin_observations_dropped_total") == 5.0  # the daemon-wide total, not 3+5+5
    assert sample(s, "longlive_events_acked_total", session="a", type="prompt", status="applied") == 2.0
    assert sample(s, "longlive_events_acked_total", session="a", type="prompt", status="superseded") == 1.0
    assert sample(s, "longlive_events_acked_total", session="a", type="event", status="applied") == 1.0
    assert sample(s, "longlive_event_latency_seconds_count", session="a") == 2.0
    assert sample(s, "longlive_event_latency_seconds_sum", session="a") == pytest.approx(0.6)
    assert sample(s, "longlive_event_latency_seconds_bucket", session="a", le="0.2") == 1.0
    assert sample(s, "longlive_event_latency_seconds_bucket", session="a", le="0.4") == 1.0
    assert sample(s, "longlive_event_latency_seconds_bucket", session="a", le="0.5") == 2.0
    host.close()


def test_a_reopened_session_adds_its_own_frames_and_totals_never_go_back():
    host, metrics = metrics_host()
    a = session("a")
    host.notify("session_opened", session=a, prompt="x")
    host.notify("session_status", session=a, status=status(frame=30, frames_late=4))
    host.notify("session_status", session=a, status=status(frame=20, frames_late=3))  # stale: ignored
    host.notify("session_closed", session=a, frames=33)
    host.notify("session_opened", session=a, prompt="x")
    host.notify("session_status", session=a, status=status(frame=9, frames_late=1))
    s = scrape_when(metrics.url, lambda s: sample(s, "longlive_frames_total", session="a") == 42.0)
    assert sample(s, "longlive_frames_total", session="a") == 42.0  # 33 + 9
    assert sample(s, "longlive_frames_late_total", session="a") == 5.0  # 4 + 1
    assert sample(s, "longlive_sessions_open") == 1.0
    host.close()


def test_daemon_stopping_closes_the_endpoint():
    host, metrics = metrics_host()
    url = metrics.url
    assert sample(scrape(url), "longlive_sessions_open") == 0.0
    host.close()  # notifies daemon_stopping and drains the worker
    assert metrics.url is None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_a_taken_port_disables_the_plugin_with_the_reason():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        host = PluginHost({"metrics": {"port": port}}, builtin_models=False)
        assert host.register(Metrics(), "metrics") is None
    assert f"cannot serve on 127.0.0.1:{port}" in host.disabled["metrics"]


@pytest.mark.parametrize("table, message", [
    ("9100", "[metrics] must be a table, not str"),
    ({"port": 70000}, "port must be an integer 0..65535 (0: any free port), not 70000"),
    ({"port": "9100"}, "port must be an integer 0..65535 (0: any free port), not '9100'"),
    ({"port": True}, "port must be an integer 0..65535"),
    ({"host": ""}, "host must be a non-empty address string, not ''"),
    ({"addr": "127.0.0.1"}, "[metrics] has unknown settings addr; known: host, port"),
])
def test_bad_settings_are_refused_with_the_reason(table, message):
    host = PluginHost({"metrics": table}, builtin_models=False)
    assert host.register(Metrics(), "metrics") is None
    assert message in host.disabled["metrics"]


def test_daemon_frames_counted_end_to_end():
    from protocol import Ack
    from protocol.client import Controller, Picture, Viewer
    from runtime.daemon.daemon import DaemonConfig
    from runtime.daemon.inprocess import serve_in_thread
    from runtime.pipeline import load_pipeline

    pipe = load_pipeline("random-small", max_streams=2)
    host, metrics = metrics_host()
    config = DaemonConfig(control="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*", status_s=0.25)
    frames = []
    with serve_in_thread(pipe, config, host) as daemon, \
            Viewer(daemon.endpoints[1], sessions=("main", "m"), status=False) as view, \
            Controller(daemon.endpoints[0]) as ctl:
        assert isinstance(next(view.frames(timeout=20)), Picture)  # subscribed before "m" opens: no frame missed
        ctl.open("m", seed=1, prompt="a red ball").result(timeout=20)
        prompts = [ctl.send_prompt(text, session="m").result(timeout=20) for text in ("a blue cube", "a green orb")]
        live = scrape_when(metrics.url, lambda s: (sample(s, "longlive_frames_total", session="m") or 0) > 0)
        assert sample(live, "longlive_sessions_open") == 2.0  # main and m
        assert sample(live, "longlive_fps_target", session="m") == pipe.fps
        closed = ctl.close_session("m")
        while not (isinstance(msg := view.recv(timeout=20), Ack) and msg.event_id == closed.event_id):
            assert msg is not None
            if isinstance(msg, Picture) and msg.frame.session == "m":
                frames.append(msg.frame.frame)
        s = scrape_when(metrics.url, lambda s: sample(s, "longlive_sessions_open") == 1.0)
    assert frames == list(range(len(frames))) and view.missed == 0 and len(frames) > prompts[-1].frame
    assert sample(s, "longlive_frames_total", session="m") == len(frames)
    assert sample(s, "longlive_events_acked_total", session="m", type="prompt", status="applied") == 2.0
    assert sample(s, "longlive_events_acked_total", session="m", type="open", status="applied") == 1.0
    latencies = sample(s, "longlive_event_latency_seconds_count", session="m")
    assert latencies is not None and latencies >= 2  # both prompts (and the open's prompt, if timed)
    assert sample(s, "longlive_fps_target", session="m") is None
    assert metrics.url is None  # the daemon stopped and closed the endpoint


def test_longlive_serve_logs_the_port_it_picked(tmp_path):
    proc = serve_with_plugin(tmp_path, "metrics", "[metrics]\nport = 0\n")
    try:
        url = None
        while url is None:
            line = proc.stdout.readline()
            assert line, "serve stopped before logging the metrics endpoint"
            if match := re.search(r"serving Prometheus metrics at (http://127\.0\.0\.1:\d+/metrics)", line):
                url = match.group(1)
        s = scrape_when(url, lambda s: (sample(s, "longlive_frames_total", session="main") or 0) > 0, timeout=30)
        assert sample(s, "longlive_sessions_open") == 1.0
        assert sample(s, "longlive_frames_total", session="main") > 0
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
