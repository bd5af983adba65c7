"""The daemon: one loop, one zmq.Poller, and one generation worker thread.

Each turn of the loop polls the control socket, the stream socket's subscription events and
a wake-up socket, with a timeout that ends when the next block or timer is due; then it runs
the timers and, if any session is due, one batched block over the due sessions. The block
(prompt encoding, `pipe.step`, decoding) runs on the worker while the loop keeps answering
ZAP handshakes and publishing heartbeats; every socket is used by the loop thread only.
A session whose block fails is closed alone (its events answered INTERNAL); the loop itself
survives any exception and stops only when asked (a signal, `stop()`).
"""

from __future__ import annotations

import io
import logging
from concurrent.futures import Future, ThreadPoolExecutor
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import zmq
from PIL import Image

from protocol import constants as C
from protocol.codec import decode_control, encode
from protocol.constants import ErrorCode
from protocol.errors import ProtocolError
from protocol.messages import (Ack, Close, ControlMessage, Error, EventNotice, Frame, GameEvent, Heartbeat, Open,
                               Pause, Prompt, Resume, Seed, Status, StatusRequest, StreamMessage)
from plugins.hookspecs import AckInfo, DaemonInfo, EventInfo, Refused, SessionInfo
from plugins.host import PluginHost
from runtime.daemon.admission import RateLimiter, RecentEvents
from runtime.daemon.pacing import Pacer
from runtime.daemon.prompts import PromptCache
from runtime.daemon.session import Awaiting, PendingPrompt, Session
from runtime.daemon.sockets import CurveServer, DaemonSockets
from runtime.daemon.subscriptions import Subscriptions
from runtime.pipeline import Pipeline, PromptError, VideoStream

log = logging.getLogger("longlive.daemon")
MAX_DEFERRED = C.CONTROL_READS_PER_TURN  # control messages read during one block at most (GIL time taken from the worker)


@dataclass(frozen=True)
class DaemonConfig:
    control: str = C.DEFAULT_CONTROL_ENDPOINT
    stream: str = C.DEFAULT_STREAM_ENDPOINT
    default_session: str | None = C.DEFAULT_SESSION  # opened at start so `send` works at once
    default_prompt: str = "a red ball rolls over green grass"
    seed: int = 0
    lookahead_blocks: float = 1.0  # how far ahead of the playback clock blocks are generated
    max_sessions: int = C.MAX_SESSIONS
    hwm: int = 64  # stream messages queued per subscriber before ZeroMQ drops for that one
    jpeg_quality: int = 85
    heartbeat_s: float = C.HEARTBEAT_PERIOD_S
    status_s: float = C.STATUS_PERIOD_S
    curve: CurveServer | None = None


def _cache_fill(stream: VideoStream) -> float:
    """Fill of the stream's KV window: the clean latent frames it holds over its capacity."""
    history = stream.latent.history
    return len(history) / history.maxlen if history.maxlen else 1.0


class Daemon:
    """Serves one pipeline. `run()` blocks until `stop()`; see runtime/daemon/cli.py for the
    signal handling that `longlive serve` adds.

    ``plugins`` (see plugins/hookspecs.py) decide game events and prompt rewrites on this
    loop's thread and observe frames on their own; the daemon closes the host when it stops."""

    def __init__(self, pipe: Pipeline, config: DaemonConfig = DaemonConfig(), *,
                 plugins: PluginHost | None = None, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.pipe, self.model, self.config = pipe, pipe.name, config
        self.plugins = plugins if plugins is not None else PluginHost(builtin_models=False)
        self.max_sessions = min(config.max_sessions, pipe.engine.max_streams, C.MAX_SESSIONS)
        self.clock, self.wall_clock = clock, wall_clock
        self.context = zmq.Context()
        self.sockets = DaemonSockets(self.context, config.control, config.stream, config.hwm, config.curve)
        self.endpoints = self.sockets.endpoints()
        wake = f"inproc://wake-{secrets.token_hex(4)}"
        self._wake_recv = self.context.socket(zmq.PAIR)
        self._wake_recv.bind(wake)
        self._wake_send = self.context.socket(zmq.PAIR)
        self._wake_send.connect(wake)
        self._wake_lock = threading.RLock()  # re-entrant: a signal may arrive while close() holds it
        self.poller = zmq.Poller()
        for sock in (self.sockets.control, self.sockets.stream_pub, self._wake_recv, self.sockets.zap):
            if sock is not None:
                self.poller.register(sock, zmq.POLLIN)
        self.sessions: dict[str, Session] = {}
        self.subs = Subscriptions()
        self.recent = RecentEvents(C.DUPLICATE_MEMORY)
        self.limiter = RateLimiter(C.EVENTS_PER_SECOND, C.EVENT_BURST)
        self.prompts = PromptCache(pipe.encode_prompt)
        limit = getattr(pipe.text_encoder, "text_len", None)  # the random and Wan encoders state it
        self._max_prompt_tokens = limit if isinstance(limit, int) and limit > 0 else None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="longlive-generate")
        self.answers_dropped = 0  # answers a controller's connection could not take (gone, or its queue full)
        self._boot, self._serial = secrets.token_hex(3), 0
        # While a block is generated, control messages are admitted (decoded, checked, resends
        # answered) and queued here; they are handled once the block is done (`_step`).
        self._deferred: list[tuple[ControlMessage, bytes, float]] | None = None
        self._deferred_ids: set[str] = set()
        self._stopping = False
        now = self.clock()
        self._next_heartbeat, self._next_status = now, now + config.status_s
        control, stream = self.endpoints
        self.plugins.notify("daemon_started", daemon=DaemonInfo(self.model, control, stream, self.plugins.names))
        if config.default_session:
            self._open(config.default_session, config.default_prompt, None, config.seed, None, now)

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        try:
            while not self._stopping:
                try:
                    self.turn()
                except Exception:  # a daemon bug costs one turn, never the daemon
                    log.exception("daemon turn failed; continuing")
                    time.sleep(0.01)  # a fault that repeats every turn must not spin a core
        finally:
            self.close()

    def stop(self) -> None:
        """Ask `run()` to return; safe from a signal handler or from one other thread."""
        self._stopping = True
        self._wake()

    def _wake(self) -> None:
        """Make the loop's poll return; safe from a signal handler or the worker thread."""
        with self._wake_lock:  # the loop closes the wake socket under the same lock
            if not self._wake_send.closed:
                try:
                    self._wake_send.send(b"", zmq.NOBLOCK)
                except zmq.Again:
                    pass  # wake-ups already queued

    def turn(self) -> None:
        now = self.clock()
        wake_at = min(self._next_heartbeat, self._next_status, self._next_block_at())
        events = dict(self.poller.poll(math.ceil(max(0.0, wake_at - now) * 1000)))
        if self.sockets.zap is not None and self.sockets.zap in events:
            self.sockets.handle_zap()
        if self._wake_recv in events:
            self._wake_recv.recv()
        if self.sockets.stream_pub in events:
            self._drain(self.sockets.stream_pub, lambda parts: self._on_subscription(parts[0]))
        if self.sockets.control in events:
            self._drain_control()
        now = self.clock()
        self._heartbeat(now)
        self._apply_idle_policies(now)
        if now >= self._next_status:
            self._next_status = now + self.config.status_s
            for session in self.sessions.values():
                status = self._status(session, None)
                self._publish(status)
                if self.plugins.observes("session_status"):
                    self.plugins.notify("session_status", session=session.info,
                                        status={f.name: getattr(status, f.name) for f in fields(status)})
        self._step(now)

    def _drain(self, sock: zmq.Socket, handle: Callable[[list[bytes]], None]) -> None:
        for _ in range(C.CONTROL_READS_PER_TURN):
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            handle(parts)

    def _drain_control(self) -> None:
        """Read control messages (bounded per turn, so a flood cannot starve the generator)
        with the connection they came on and the sender's CURVE key."""
        for _ in range(C.CONTROL_READS_PER_TURN):
            try:
                frames = self.sockets.control.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            peer = frames[-1].get("User-Id") if self.sockets.zap is not None else None
            self._on_control([f.bytes for f in frames[1:]], frames[0].bytes, peer)

    def _heartbeat(self, now: float) -> None:
        if now >= self._next_heartbeat:
            # Scheduled from the previous due time, not from now, so the period does not drift.
            self._next_heartbeat = max(self._next_heartbeat + self.config.heartbeat_s, now)
            self._send_heartbeat(self.config.heartbeat_s)

    def _send_heartbeat(self, period: float) -> None:
        self._publish(Heartbeat(id=self._id(), time=self.wall_clock(), period=period, sessions=tuple(self.sessions)))

    def _apply_idle_policies(self, now: float) -> None:
        """Pause or close sessions nobody watches (open.idle); resume paused ones once watched."""
        for session in list(self.sessions.values()):
            if session.idle == "keep":
                continue
            watched = any(self.subs.wants(f"{C.TOPIC_FRAME}.{e}.{session.name}".encode()) for e in C.ENCODINGS)
            if watched:
                session.unwatched_since = None
                if session.idle_paused:
                    session.idle_paused = False
                    session.pacer.stop()  # re-anchored at the next block, after the last frame sent
                continue
            if session.unwatched_since is None:
                session.unwatched_since = now
            elif now - session.unwatched_since >= session.idle_after_s:
                if session.idle == "close":
                    log.info("session %s closed: no frame subscriber for %.1f s", session.name, session.idle_after_s)
                    self._end(session, closed_by=None)
                elif not session.idle_paused:
                    log.info("session %s paused: no frame subscriber for %.1f s", session.name, session.idle_after_s)
                    session.idle_paused = True

    def _next_block_at(self) -> float:
        times = [s.pacer.ready_at(s.next_frame) for s in self.sessions.values() if not s.stopped]
        return min(times, default=math.inf)

    def _step(self, now: float) -> None:
        """One block for every due session, batched; sessions due within half a block join.
        The block runs on the worker; failures are charged to the session that caused them."""
        active = [s for s in self.sessions.values() if not s.stopped]
        if not any(s.pacer.ready_at(s.next_frame) <= now for s in active):
            return
        due = [s for s in active if s.pacer.ready_at(s.next_frame) <= now + 0.5 * s.pacer.block_s]
        plans = {s.name: s.take_due_prompts() for s in due}
        self._deferred = []
        try:
            result = self._off_loop(lambda: self._generate(due, plans))
            self._publish_block(due, plans, result)
        finally:
            deferred, self._deferred = self._deferred, None
            self._deferred_ids.clear()
            for msg, route, received in deferred or ():
                try:
                    self._admit(msg, route, received)
                except Exception:  # a daemon bug costs that event (its resend is judged afresh), not the rest
                    log.exception("admitting %s %s failed", msg.TYPE, msg.id)

    def _publish_block(self, due: list[Session], plans: dict[str, tuple[PendingPrompt | None, list[PendingPrompt]]],
                       result: tuple[dict[str, np.ndarray], dict[str, BaseException], dict[str, str]]) -> None:
        """Answer, publish and account for the block the worker made."""
        blocks, failures, refused = result
        done, wall = self.clock(), self.wall_clock()
        observed = self.plugins.observes("frames")
        for session in due:
            winner, superseded = plans[session.name]
            for loser in superseded:
                self._supersede(session, loser.event_id, loser.event_type, winner.event_id if winner else None)
            if session.name in refused:
                self._answer(winner.event_id, self._error(winner.event_id, ErrorCode.BAD_PROMPT, refused[session.name],
                                                          session.name))
            if session.name in failures:
                self._fail(session, failures[session.name])
                continue
            frames = blocks[session.name]
            first = session.next_frame - len(frames)
            try:
                session.pacer.generated(first, len(frames), done, wall)
                self._publish_frames(session, frames, first)
            except Exception as exc:  # e.g. a JPEG encoder error: this session's fault alone
                self._fail(session, exc)
                continue
            if observed:
                copy = np.array(frames)  # the observers' own, so the decoder may reuse its buffer
                copy.flags.writeable = False
                self.plugins.notify("frames", session=session.info, first_index=first, frames=copy,
                                    prompt_id=session.prompt_id)
            for item in session.produced(len(frames), done):
                latency = session.latency_ms(item, first) if item.prompt is not None else None
                self._ack(item.event_id, item.event_type, session, first, item.prompt, latency, item.warning)

    def _off_loop(self, work: Callable[[], Any]) -> Any:
        """Run `work` on the worker; meanwhile keep handshakes and heartbeats on time and admit
        control messages (`_on_control` queues them for after the block). Subscriptions wait
        in their socket until the block is done."""
        future: Future = self._worker.submit(work)
        future.add_done_callback(lambda _: self._wake())
        poller = zmq.Poller()
        for sock in (self.sockets.control, self._wake_recv, self.sockets.zap):
            if sock is not None:
                poller.register(sock, zmq.POLLIN)
        while not future.done():
            wait = max(0.0, self._next_heartbeat - self.clock())
            events = dict(poller.poll(math.ceil(wait * 1000)))
            if self.sockets.zap is not None and self.sockets.zap in events:
                self.sockets.handle_zap()
            if self._wake_recv in events:
                self._wake_recv.recv()
            if self.sockets.control in events:
                self._drain_control()
                if len(self._deferred or ()) >= MAX_DEFERRED:  # the rest waits in ZeroMQ's queues
                    poller.unregister(self.sockets.control)
            self._heartbeat(self.clock())
        return future.result()

    def _generate(self, due: list[Session], plans: dict[str, tuple[PendingPrompt | None, list[PendingPrompt]]]
                  ) -> tuple[dict[str, np.ndarray], dict[str, BaseException], dict[str, str]]:
        """On the worker: encode and apply each boundary's winning prompt, then one batched
        engine step; if the batch fails, each session is stepped alone to find the one at
        fault. Decoding is per session (as in `Pipeline.step`), so one decoder's failure does
        not cost the other sessions the block they already made.
        Returns frames, failures and refused prompts (BAD_PROMPT reasons), by session name."""
        failures: dict[str, BaseException] = {}
        refused: dict[str, str] = {}
        for session in due:
            winner = plans[session.name][0]
            if winner is None:
                continue
            try:
                session.apply_prompt(winner, self.prompts.get(winner.text))
            except PromptError as exc:
                refused[session.name] = str(exc)
            except Exception as exc:
                failures[session.name] = exc
        healthy = [s for s in due if s.name not in failures]
        try:
            latents = self.pipe.engine.step([s.stream.latent for s in healthy])
        except Exception as exc:  # the batch failed before any stream advanced: step each alone
            if len(healthy) == 1:
                failures[healthy[0].name] = exc
                return {}, failures, refused
            latents = []
            for session in list(healthy):
                try:
                    latents.append(self.pipe.engine.step([session.stream.latent])[0])
                except Exception as alone:
                    failures[session.name] = alone
                    healthy.remove(session)
        blocks: dict[str, np.ndarray] = {}
        for session, latent in zip(healthy, latents):
            try:  # decoded per session, so a decoder failure costs only its own block
                blocks[session.name] = self.pipe.decode(session.stream, latent)
            except Exception as exc:
                failures[session.name] = exc
        return blocks, failures, refused

    def _fail(self, session: Session, exc: BaseException) -> None:
        """Close a session whose block failed: its pending events are answered INTERNAL, its
        viewers told by an error without event id; the traceback is logged once."""
        cause = f"session {session.name!r} failed and was closed: {type(exc).__name__}: {exc}"
        log.error("%s", cause, exc_info=(type(exc), exc, exc.__traceback__))
        self.sessions.pop(session.name, None)
        for event_id, _ in [(p.event_id, p.event_type) for p in session.prompts] + [
                (a.event_id, a.event_type) for a in session.awaiting]:
            self._answer(event_id, self._error(event_id, ErrorCode.INTERNAL, cause, session.name))
        self._publish(self._error(None, ErrorCode.INTERNAL, cause, session.name))
        try:
            self.pipe.close_stream(session.stream)
        except Exception:
            log.exception("closing the failed session %s's stream failed too", session.name)
        self.plugins.notify("session_closed", session=session.info, frames=session.next_frame)

    # ------------------------------------------------------------------ control events

    def _on_control(self, parts: list[bytes], route: bytes, peer: str | None = None) -> None:
        """Admission, in SPEC order: decode and validate, duplicate, rate limit, then the
        daemon's state. `route` is the sender's connection, where the answers go; `peer` its
        CURVE key (ZAP user id) when CURVE is on. Either keys the sender's rate limit."""
        now = self.clock()
        sender = f"key:{peer}" if peer else f"conn:{route.hex()}"
        try:
            msg = decode_control(parts)
        except ProtocolError as exc:
            # Undecodable input spends its sender's budget; beyond it, it gets no answer, so
            # garbage cannot be amplified into a flood of error messages.
            if self.limiter.allow(sender, now):
                log.debug("refused a message: %s", exc)
                self._send_answer(route, self._error(exc.event_id, exc.code, exc.message, None))
            return
        session = getattr(msg, "session", None)
        if not isinstance(msg, StatusRequest):  # status requests are answered afresh every time
            if msg.id in self.recent:
                self.recent.resent(msg.id, route)
                for answer in self.recent.answers(msg.id):  # the original's answer, never a new one
                    self._reply(route, answer)
                return
            if msg.id in self._deferred_ids:
                return  # a resend of an event waiting for the block in progress: answered after it
        if not self.limiter.allow(sender, now):
            who = f"key {peer}" if peer else f"connection of client {msg.client or '(anonymous)'}"
            self._send_answer(route, self._error(msg.id, ErrorCode.RATE_LIMITED, f"{who} sends more than "
                                                 f"{C.EVENTS_PER_SECOND:g} events/s; event dropped", session))
            return
        if self._deferred is not None:  # the worker is using the sessions: handle it after the block
            self._deferred.append((msg, route, now))
            self._deferred_ids.add(msg.id)
            return
        self._admit(msg, route, now)

    def _admit(self, msg: ControlMessage, route: bytes, received: float) -> None:
        """Step 4 of admission: the daemon's state decides (SPEC section 6)."""
        session = getattr(msg, "session", None)
        if isinstance(msg, StatusRequest):
            self._on_status_request(msg, route)
            return
        self.recent.admitted(msg.id, route)
        try:
            self._handle(msg, received)
        except ProtocolError as exc:
            self._answer(msg.id, self._error(msg.id, exc.code, exc.message, session))
        except Exception as exc:  # a daemon bug must cost one event, not the stream
            log.exception("internal error handling %s %s", msg.TYPE, msg.id)
            self._answer(msg.id, self._error(msg.id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}", session))

    def _on_status_request(self, msg: StatusRequest, route: bytes) -> None:
        """Status replies and their ack go to the asker (and, as ever, to status subscribers)."""
        try:
            targets = list(self.sessions.values()) if msg.session is None else [self._session(msg.session)]
        except ProtocolError as exc:
            self._send_answer(route, self._error(msg.id, exc.code, exc.message, msg.session))
            return
        for session in targets:
            self._send_answer(route, self._status(session, msg.id))
        self._send_answer(route, Ack(id=self._id(), event_id=msg.id, event_type=msg.TYPE, session=msg.session))

    def _handle(self, msg: ControlMessage, now: float) -> None:
        if isinstance(msg, Open):
            self._on_open(msg, now)
        else:
            session = self._session(msg.session)
            {Close: self._on_close, Prompt: self._on_prompt, Pause: self._on_pause, Resume: self._on_resume,
             Seed: self._on_seed, GameEvent: self._on_game_event}[type(msg)](session, msg, now)

    def _session(self, name: str) -> Session:
        if name not in self.sessions:
            raise ProtocolError(ErrorCode.UNKNOWN_SESSION, f"no session named {name!r}; open ones: {sorted(self.sessions)}")
        return self.sessions[name]

    def _encode_prompt(self, text: str) -> Any:
        try:
            return self.prompts.get(text)
        except PromptError as exc:
            raise ProtocolError(ErrorCode.BAD_PROMPT, str(exc)) from None

    def _check_prompt(self, text: str) -> None:
        """For plugins (SessionInfo.check_prompt), strict like `Pipeline.check_prompt`: PromptError
        (a ValueError) if the model cannot take ``text`` or would read past part of it."""
        self.prompts.get(text)
        if (warning := self._warning(text)) is not None:
            raise PromptError(warning)

    def _warning(self, text: str) -> str | None:
        """The ack `warning` for a prompt the model takes (`Pipeline.lint`); a failing lint costs only the warning."""
        try:
            warning = self.pipe.lint(text)
        except Exception:
            log.exception("the model's prompt lint failed on %r", text)
            return None
        return None if warning is None else warning[:C.MAX_WARNING_CHARS]

    def _accept(self, session: Session, event_id: str, event_type: str, frame: int,
                warning: str | None = None) -> None:
        """Publish `accepted` (the planned frame) and remember the event as pending."""
        ack = encode(Ack(id=self._id(), event_id=event_id, event_type=event_type, session=session.name,
                         status="accepted", frame=frame, warning=warning))
        self.recent.pending(event_id, ack)
        self._send_answer(self.recent.route(event_id), ack)

    def _check_room(self, session: Session) -> None:
        if session.pending_count >= C.MAX_PENDING_EVENTS:
            raise ProtocolError(ErrorCode.TOO_MANY_PENDING, f"session {session.name!r} already has "
                                f"{session.pending_count} events waiting; the limit is {C.MAX_PENDING_EVENTS}")

    def _rewrite(self, info: SessionInfo, text: str, event: EventInfo) -> str:
        """The prompt after the plugins' rewrite chain; a plugin's unusable result is BAD_PROMPT."""
        try:
            text = self.plugins.rewrite_prompt(info, text, event)
        except ValueError as exc:
            raise ProtocolError(ErrorCode.BAD_PROMPT, str(exc)) from None
        if len(text) > C.MAX_PROMPT_CHARS:
            raise ProtocolError(ErrorCode.BAD_PROMPT, f"the rewritten prompt has {len(text)} characters, "
                                f"more than {C.MAX_PROMPT_CHARS}")
        return text

    def _on_open(self, msg: Open, now: float) -> None:
        if msg.session in self.sessions:
            raise ProtocolError(ErrorCode.SESSION_EXISTS, f"session {msg.session!r} is already open")
        if len(self.sessions) >= self.max_sessions:
            raise ProtocolError(ErrorCode.TOO_MANY_SESSIONS, f"{len(self.sessions)} sessions are open, the limit")
        if msg.model is not None and msg.model != self.model:
            raise ProtocolError(ErrorCode.UNKNOWN_MODEL, f"this daemon serves {self.model!r}, not {msg.model!r}")
        height, width = self.pipe.frame_shape
        if (msg.width or width, msg.height or height) != (width, height):
            raise ProtocolError(ErrorCode.UNSUPPORTED, f"{self.model} makes {width}x{height} frames only")
        prompt = msg.prompt or self.config.default_prompt
        self._open(msg.session, prompt, msg.id if msg.prompt else None, msg.seed, msg.fps, now,
                   EventInfo(msg.id, msg.TYPE, msg.client))
        session = self.sessions[msg.session]
        session.idle, session.idle_after_s = msg.idle, msg.idle_after_s
        warning = self._warning(session.prompt)
        session.awaiting.append(Awaiting(msg.id, msg.TYPE, now, warning=warning))
        self._accept(session, msg.id, msg.TYPE, 0, warning)

    def _open(self, name: str, prompt: str, prompt_id: str | None, seed: int, fps: float | None, now: float,
              event: EventInfo | None = None) -> None:
        fps = fps or self.pipe.fps
        info = SessionInfo(name, self.model, fps, self.pipe.frame_shape, seed, self.pipe.frames_per_block,
                           check_prompt=self._check_prompt)
        prompt = self._rewrite(info, prompt, event or EventInfo(f"{self._boot}-default", "open"))
        stream = self.pipe.open_stream(self._encode_prompt(prompt), seed=seed)
        pacer = Pacer(fps, self.pipe.frames_per_block, self.config.lookahead_blocks)
        self.sessions[name] = Session(name, stream, pacer, prompt, prompt_id, seed, info)
        log.info("session %s opened (seed %d): %s", name, seed, prompt)
        self.plugins.notify("session_opened", session=info, prompt=prompt)

    def _on_close(self, session: Session, msg: Close, now: float) -> None:
        self._end(session, closed_by=msg)

    def _end(self, session: Session, closed_by: Close | None) -> None:
        """Close a session's stream; its unfinished events are acked superseded (by the close)."""
        self.pipe.close_stream(session.stream)
        del self.sessions[session.name]
        unfinished = [(p.event_id, p.event_type) for p in session.prompts] + [
            (a.event_id, a.event_type) for a in session.awaiting]
        for event_id, event_type in unfinished:
            self._supersede(session, event_id, event_type, closed_by.id if closed_by else None)
        if closed_by is not None:
            self._ack(closed_by.id, closed_by.TYPE, session, None)
        self.plugins.notify("session_closed", session=session.info, frames=session.next_frame)

    def _on_prompt(self, session: Session, msg: Prompt, now: float) -> None:
        self._queue_prompt(session, EventInfo(msg.id, msg.TYPE, msg.client), msg.text, msg.transition,
                           msg.blend_blocks, msg.at_frame, now)

    def _queue_prompt(self, session: Session, event: EventInfo, text: str, transition: str,
                      blend_blocks: int | None, at_frame: int | None, now: float) -> None:
        event_id, event_type = event.id, event.type
        self._check_room(session)
        if at_frame is not None and at_frame > session.next_frame + C.MAX_SCHEDULE_FRAMES:
            raise ProtocolError(ErrorCode.TOO_FAR_AHEAD, f"at_frame {at_frame} is more than {C.MAX_SCHEDULE_FRAMES} "
                                f"frames after session {session.name!r}'s next frame {session.next_frame}")
        text = self._rewrite(session.info, text, event)
        warning = self._warning(text)
        session.prompts.append(PendingPrompt(event_id, event_type, text, transition, blend_blocks, at_frame, now,
                                             warning))
        self._accept(session, event_id, event_type, session.planned_frame(at_frame), warning)

    def _on_pause(self, session: Session, msg: Pause, now: float) -> None:
        if session.paused:
            self._ack(msg.id, msg.TYPE, session, session.next_frame)
            return
        session.pause()
        for item in [a for a in session.awaiting if a.event_type == Resume.TYPE]:  # undone before any frame
            session.awaiting.remove(item)
            self._supersede(session, item.event_id, item.event_type, msg.id)
        self._ack(msg.id, msg.TYPE, session, session.next_frame)

    def _on_resume(self, session: Session, msg: Resume, now: float) -> None:
        if not session.paused:
            self._ack(msg.id, msg.TYPE, session, session.next_frame)
            return
        self._check_room(session)
        session.resume()
        session.awaiting.append(Awaiting(msg.id, msg.TYPE, now))
        self._accept(session, msg.id, msg.TYPE, session.next_frame)

    def _on_seed(self, session: Session, msg: Seed, now: float) -> None:
        self._check_room(session)
        session.stream.set_seed(msg.seed)  # between blocks, so it applies from the next block
        session.seed = msg.seed
        session.info = replace(session.info, seed=msg.seed)
        session.awaiting.append(Awaiting(msg.id, msg.TYPE, now))
        self._accept(session, msg.id, msg.TYPE, session.next_frame)

    def _on_game_event(self, session: Session, msg: GameEvent, now: float) -> None:
        self._publish(EventNotice(id=self._id(), event_id=msg.id, session=session.name, name=msg.name,
                                  payload=msg.payload, client=msg.client, frame=session.next_frame))
        try:
            change, plugin = self.plugins.game_event(session.info, msg.name, msg.payload)
        except Refused as exc:
            raise ProtocolError(ErrorCode.EVENT_REFUSED, str(exc)) from None
        if change is None:
            self._ack(msg.id, msg.TYPE, session, None)
            return
        try:  # the rules of a controller's `prompt` message hold for a plugin's change too
            Prompt(id=msg.id, session=session.name, text=change.text, transition=change.transition,
                   blend_blocks=change.blend_blocks, at_frame=change.at_frame)
        except ProtocolError as exc:
            raise ProtocolError(ErrorCode.BAD_PROMPT, f"plugin {plugin} mapped event {msg.name!r} to an unusable "
                                f"prompt change: {exc.message}") from None
        self._queue_prompt(session, EventInfo(msg.id, msg.TYPE, msg.client, msg.name, msg.payload), change.text,
                           change.transition, change.blend_blocks, change.at_frame, now)

    # ------------------------------------------------------------------ publishing

    def _on_subscription(self, event: bytes) -> None:
        """Greet a new status subscriber with the current state of every session it matches,
        and a new heartbeat subscriber with a heartbeat (it then knows its subscriptions are in)."""
        prefix = self.subs.update(event)
        if prefix is None:
            return
        if C.TOPIC_HEARTBEAT.encode().startswith(prefix):
            self._send_heartbeat(max(0.001, self._next_heartbeat - self.clock()))  # the time left to the next
        for session in self.sessions.values():
            if f"{C.TOPIC_STATUS}.{session.name}".encode().startswith(prefix):
                self._publish(self._status(session, None))

    def _publish_frames(self, session: Session, frames: np.ndarray, first: int) -> None:
        encodings = [e for e in C.ENCODINGS if self.subs.wants(f"{C.TOPIC_FRAME}.{e}.{session.name}".encode())]
        for offset, image in enumerate(frames):
            index = first + offset
            for encoding in encodings:
                data = np.ascontiguousarray(image) if encoding == "raw" else self._jpeg(image)
                self._publish(Frame(id=self._id(), session=session.name, frame=index, block=session.block,
                                    t=index / session.pacer.fps, wall=session.pacer.due_wall(index),
                                    prompt_id=session.prompt_id, shape=image.shape, encoding=encoding, data=data))

    def _jpeg(self, image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=self.config.jpeg_quality)
        return buffer.getvalue()

    def _status(self, session: Session, request_id: str | None) -> Status:
        now = self.clock()
        last, mean = session.latency()
        height, width = self.pipe.frame_shape
        cache = self.pipe.engine.cfg.cache
        return Status(id=self._id(), session=session.name, model=self.model, shape=(height, width, 3),
                      fps_target=session.pacer.fps, fps_measured=session.fps_measured(now), latency_ms=last,
                      latency_mean_ms=mean, pending_events=len(session.prompts) + len(session.awaiting),
                      lookahead_blocks=session.pacer.blocks_ahead(session.next_frame, now),
                      cache_fill=_cache_fill(session.stream), cache_sink_frames=cache.sink_frames,
                      cache_window_frames=cache.window_frames, frames_late=session.pacer.frames_late,
                      frame=session.next_frame, block=session.block, prompt_id=session.prompt_id,
                      prompt=session.prompt, paused=session.stopped, seed=session.seed, request_id=request_id,
                      plugins=self.plugins.names, observations_dropped=self.plugins.observations_dropped(),
                      frames_per_block=self.pipe.frames_per_block, max_prompt_tokens=self._max_prompt_tokens,
                      idle=session.idle, answers_dropped=self.answers_dropped)

    def _id(self) -> str:
        self._serial += 1
        return f"{self._boot}-{self._serial}"

    def _error(self, event_id: str | None, code: ErrorCode, message: str, session: str | None) -> Error:
        return Error(id=self._id(), event_id=event_id, code=int(code), name=ErrorCode(code).name,
                     message=message[:1000], session=session)

    def _ack(self, event_id: str, event_type: str, session: Session, frame: int | None,
             prompt: PendingPrompt | None = None, latency_ms: float | None = None, warning: str | None = None) -> None:
        self._answer(event_id, Ack(id=self._id(), event_id=event_id, event_type=event_type, session=session.name,
                                   frame=frame, warning=warning))
        change = {} if prompt is None else {"text": prompt.text, "transition": prompt.transition,
                                            "source": prompt.event_type}
        self.plugins.notify("event_acked", session=session.info, ack=AckInfo(
            event_id, event_type, "applied", frame, latency_ms=latency_ms, **change))

    def _supersede(self, session: Session, event_id: str, event_type: str, by: str | None) -> None:
        self._answer(event_id, Ack(id=self._id(), event_id=event_id, event_type=event_type, session=session.name,
                                   status="superseded", superseded_by=by))
        self.plugins.notify("event_acked", session=session.info, ack=AckInfo(event_id, event_type, "superseded", None))

    def _answer(self, event_id: str, message: StreamMessage) -> None:
        """Send the final answer to an event and remember it (encoded: the memory holds tens
        of thousands) for resends."""
        route, parts = self.recent.route(event_id), encode(message)
        self.recent.answered(event_id, [parts])
        self._send_answer(route, parts)

    def _send_answer(self, route: bytes | None, message: StreamMessage | list[bytes]) -> None:
        """An answer goes to the connection that sent the event, and a copy to the stream's
        `ack`/`error`/`status.` subscribers (observers such as HUDs and recorders), if any."""
        parts = message if isinstance(message, list) else encode(message)
        if route is not None:
            self._reply(route, parts)
        if self.subs.wants(parts[0]):
            self._send_stream(parts)

    def _reply(self, route: bytes, parts: list[bytes]) -> None:
        try:
            self.sockets.control.send_multipart([route, *parts], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the peer is gone; EAGAIN: its answer queue is full
            self.answers_dropped += 1
            log.debug("an answer to a controller connection was dropped: %s", exc)

    def _publish(self, msg: StreamMessage) -> None:
        self._send_stream(encode(msg))

    def _send_stream(self, parts: list[bytes]) -> None:
        try:
            # XPUB drops per subscriber at the high-water mark, so this does not block or
            # refuse; NOBLOCK makes sure the generator could never be made to wait here.
            self.sockets.stream_pub.send_multipart(parts, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.warning("stream socket refused a %s message; dropped", bytes(parts[0]).decode(errors="replace"))

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        for session in list(self.sessions.values()):
            try:
                self._end(session, closed_by=None)
            except Exception:
                log.exception("closing session %s failed", session.name)
        self.plugins.close()
        self.sockets.close()
        self._wake_recv.close()
        with self._wake_lock:
            self._wake_send.close()
        self.context.term()
