"""The metrics plugin: a Prometheus endpoint for the daemon (docs/plugins/metrics.md).

Everything it exposes comes from observer notes, so it runs on the plugin's worker thread
and never on the daemon's loop; the HTTP server answers scrapes from its own thread.

It does not observe ``longlive_frames``: that hook makes the daemon copy every block for
its observers, and its notes are the ones dropped when a plugin falls behind. Frame counts
come from each status note's ``frame`` (the session's next frame index) and from the exact
count at ``longlive_session_closed``, so they are never lost, at the cost of lagging by
up to one status period (2 s) while a session runs.

Counters the daemon reports as running totals (``frame``, ``frames_late``,
``observations_dropped``) become Prometheus counters by adding what grew since the last
note; a session that is closed and opened again under the same name starts its own totals
from zero and keeps adding to the same counter.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from plugins.hookspecs import AckInfo, DaemonInfo, SessionInfo, hookimpl

log = logging.getLogger("longlive.plugins.metrics")

# Event -> frame latency buckets, seconds: a toy block lasts ~0.19 s at 16 fps and one block of
# lookahead adds another, so most prompt changes land between 0.1 and 0.5 s.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


@dataclass(frozen=True)
class MetricsConfig:
    """The ``[metrics]`` table of the plugin config."""

    host: str = "127.0.0.1"  # loopback: the figures name sessions and plugins
    port: int = 9464  # 0: pick a free port (logged, and in Metrics.url)

    @classmethod
    def from_table(cls, table: Any) -> MetricsConfig:
        """Parse and check the table; ValueError names the bad setting."""
        if not isinstance(table, Mapping):
            raise ValueError(f"[metrics] must be a table, not {type(table).__name__}")
        unknown = sorted(set(table) - {"host", "port"})
        if unknown:
            raise ValueError(f"[metrics] has unknown settings {', '.join(unknown)}; known: host, port")
        host = table.get("host", cls.host)
        if not isinstance(host, str) or not host.strip():
            raise ValueError(f"[metrics] host must be a non-empty address string, not {host!r}")
        port = table.get("port", cls.port)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"[metrics] port must be an integer 0..65535 (0: any free port), not {port!r}")
        return cls(host.strip(), port)


class _QuietHandler(WSGIRequestHandler):
    """Scrapes every few seconds would flood stderr with access lines; keep them at debug level."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("metrics: %s " + format, self.address_string(), *args)


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per scrape, so a stalled scraper cannot block the next one."""

    daemon_threads = True


class Metrics:
    """The hook implementations and the metrics they feed. Loading the module (``--plugin metrics``)
    registers its one instance (below); an embedder running several hosts in one process registers
    its own ``Metrics()``. Each instance has its own ``CollectorRegistry``."""

    def __init__(self) -> None:
        self.config = MetricsConfig()
        self.registry = CollectorRegistry()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        r, s = self.registry, ("session",)
        self.frames = Counter("longlive_frames", "Frames produced, per session", s, registry=r)
        self.fps_measured = Gauge("longlive_fps_measured", "Frames per second produced over the last few seconds",
                                  s, registry=r)
        self.fps_target = Gauge("longlive_fps_target", "The session's playback rate", s, registry=r)
        self.frames_late = Counter("longlive_frames_late", "Frames ready only after their due time", s, registry=r)
        self.cache_fill = Gauge("longlive_cache_fill", "Fill of the session's KV-cache window, 0..1", s, registry=r)
        self.pending = Gauge("longlive_pending_events", "Accepted events not yet in effect", s, registry=r)
        self.latency = Histogram("longlive_event_latency_seconds",
                                 "Prompt change: from the daemon receiving the event to the due time of the first "
                                 "frame showing it", s, buckets=LATENCY_BUCKETS, registry=r)
        self.acked = Counter("longlive_events_acked", "Events finally answered, by type and status",
                             ("session", "type", "status"), registry=r)
        self.sessions_open = Gauge("longlive_sessions_open", "Sessions open now", registry=r)
        self.dropped = Counter("longlive_plugin_observations_dropped",
                               "Plugin observer notes dropped because a plugin fell behind", registry=r)
        self._open: set[str] = set()
        self._totals: dict[tuple[str, str], int] = {}  # (session, figure) -> running total last seen
        self._dropped_seen = 0

    @property
    def url(self) -> str | None:
        """Where the endpoint serves (the real port when configured with 0), or None when stopped."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/metrics"

    # ------------------------------------------------------------ hooks

    @hookimpl
    def longlive_configure(self, config: Mapping[str, Any]) -> None:
        self.config = MetricsConfig.from_table(config.get("metrics", {}))
        self._stop_server()
        try:
            self._server = make_server(self.config.host, self.config.port, make_wsgi_app(self.registry),
                                       server_class=_Server, handler_class=_QuietHandler)
        except OSError as exc:  # the host disables the plugin with this message; the daemon carries on
            raise ValueError(f"[metrics] cannot serve on {self.config.host}:{self.config.port}: "
                             f"{exc.strerror or exc}") from None
        # a short poll interval: shutdown() waits up to one interval for the loop to notice
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="metrics-http",
                                        daemon=True)
        self._thread.start()
        log.info("metrics: serving Prometheus metrics at %s", self.url)

    @hookimpl
    def longlive_daemon_started(self, daemon: DaemonInfo) -> None:
        log.info("metrics: daemon serving %s; scrape %s", daemon.model, self.url)

    @hookimpl
    def longlive_session_opened(self, session: SessionInfo) -> None:
        for figure in ("frame", "frames_late"):  # a reopened name counts from its own zero
            self._totals[(session.name, figure)] = 0
        self._open.add(session.name)
        self.sessions_open.set(len(self._open))
        self.fps_target.labels(session.name).set(session.fps)

    @hookimpl
    def longlive_session_status(self, session: SessionInfo, status: Mapping[str, Any]) -> None:
        name = session.name
        self._grow(self.frames, name, "frame", status.get("frame"))
        self._grow(self.frames_late, name, "frames_late", status.get("frames_late"))
        for gauge, key in ((self.fps_measured, "fps_measured"), (self.fps_target, "fps_target"),
                           (self.cache_fill, "cache_fill"), (self.pending, "pending_events")):
            if isinstance(value := status.get(key), int | float):
                gauge.labels(name).set(value)
        dropped = status.get("observations_dropped")
        if isinstance(dropped, int) and dropped > self._dropped_seen:  # the daemon's total, in every status
            self.dropped.inc(dropped - self._dropped_seen)
            self._dropped_seen = dropped

    @hookimpl
    def longlive_event_acked(self, session: SessionInfo, ack: AckInfo) -> None:
        self.acked.labels(session.name, ack.event_type, ack.status).inc()
        if ack.latency_ms is not None:
            self.latency.labels(session.name).observe(ack.latency_ms / 1000.0)

    @hookimpl
    def longlive_session_closed(self, session: SessionInfo, frames: int) -> None:
        self._grow(self.frames, session.name, "frame", frames)
        self._open.discard(session.name)
        self.sessions_open.set(len(self._open))
        for gauge in (self.fps_measured, self.fps_target, self.cache_fill, self.pending):
            try:  # a closed session's rates and fill would otherwise linger at their last value
                gauge.remove(session.name)
            except KeyError:
                pass

    @hookimpl
    def longlive_daemon_stopping(self) -> None:
        self._stop_server()

    # ------------------------------------------------------------ helpers

    def _grow(self, counter: Counter, session: str, figure: str, total: Any) -> None:
        """Add to ``counter`` what the daemon's running ``total`` gained since the last note."""
        if isinstance(total, bool) or not isinstance(total, int):
            return
        seen = self._totals.get((session, figure), 0)
        if total > seen:
            counter.labels(session).inc(total - seen)
            self._totals[(session, figure)] = total

    def _stop_server(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()  # waits for serve_forever to return
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
        log.info("metrics: endpoint closed")


longlive_plugin = Metrics()  # what the host registers (plugins/host.py)
