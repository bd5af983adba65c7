"""The daemon: one loop, one zmq.Poller, no threads.

Each turn of the loop polls the control socket, the stream socket's subscription events and
a wake-up socket, with a timeout that ends when the next block or timer is due; then it runs
the timers and, if any session is due, one batched `pipe.step` over the due sessions. Control
is therefore read between every two blocks and never waits behind frames.
"""

from __future__ import annotations

import io
import logging
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
from protocol.messages import (Ack, Close, ControlMessage, Error, Frame, GameEvent, Heartbeat, Open, Pause,
                               Prompt, Resume, Seed, Status, StatusRequest, StreamMessage)
from plugins.hookspecs import AckInfo, DaemonInfo, EventInfo, PromptChange, SessionInfo
from plugins.host import PluginHost
from runtime.daemon.admission import RateLimiter, RecentEvents
from runtime.daemon.pacing import Pacer
from runtime.daemon.session import Awaiting, PendingPrompt, Session
from runtime.daemon.sockets import CurveServer, DaemonSockets
from runtime.daemon.subscriptions import Subscriptions
from runtime.pipeline import Pipeline, PromptError, VideoStream

log = logging.getLogger("longlive.daemon")

MAX_CONTROL_PER_TURN = 256  # bounded so a flood of events cannot starve the generator


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
        for sock in (self.sockets.control_sub, self.sockets.stream_pub, self._wake_recv, self.sockets.zap):
            if sock is not None:
                self.poller.register(sock, zmq.POLLIN)
        self.sessions: dict[str, Session] = {}
        self.subs = Subscriptions()
        self.recent = RecentEvents(C.DUPLICATE_MEMORY)
        self.limiter = RateLimiter(C.EVENTS_PER_SECOND, C.EVENT_BURST)
        self._boot, self._serial = secrets.token_hex(3), 0
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
                self.turn()
        finally:
            self.close()

    def stop(self) -> None:
        """Ask `run()` to return; safe from a signal handler or from one other thread."""
        with self._wake_lock:  # the loop closes the wake socket under the same lock
            self._stopping = True
            if not self._wake_send.closed:
                try:
                    self._wake_send.send(b"", zmq.NOBLOCK)
                except zmq.Again:
                    pass  # wake-ups already queued: the loop will see the flag

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
        if self.sockets.control_sub in events:
            self._drain(self.sockets.control_sub, self._on_control)
        now = self.clock()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.config.heartbeat_s
            self._publish(Heartbeat(id=self._id(), time=self.wall_clock(), period=self.config.heartbeat_s,
                                    sessions=tuple(self.sessions)))
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
        for _ in range(MAX_CONTROL_PER_TURN):
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            handle(parts)

    def _next_block_at(self) -> float:
        times = [s.pacer.ready_at(s.next_frame) for s in self.sessions.values() if not s.paused]
        return min(times, default=math.inf)

    def _step(self, now: float) -> None:
        """One block for every due session, batched; sessions due within half a block join."""
        active = [s for s in self.sessions.values() if not s.paused]
        if not any(s.pacer.ready_at(s.next_frame) <= now for s in active):
            return
        due = [s for s in active if s.pacer.ready_at(s.next_frame) <= now + 0.5 * s.pacer.block_s]
        for session in due:
            self._boundary(session)
        blocks = self.pipe.step([s.stream for s in due])
        done, wall = self.clock(), self.wall_clock()
        observed = self.plugins.observes("frames")
        for session, frames in zip(due, blocks):
            first = session.next_frame - len(frames)
            session.pacer.generated(first, len(frames), done, wall)
            self._publish_frames(session, frames, first)
            if observed:
                copy = np.array(frames)  # the observers' own, so the decoder may reuse its buffer
                copy.flags.writeable = False
                self.plugins.notify("frames", session=session.info, first_index=first, frames=copy,
                                    prompt_id=session.prompt_id)
            for item in session.produced(len(frames), done):
                latency = session.latency_ms(item, first) if item.prompt is not None else None
                self._ack(item.event_id, item.event_type, session, first, item.prompt, latency)

    def _boundary(self, session: Session) -> None:
        """Apply the prompt due at this block boundary; ack the ones it supersedes."""
        winner, superseded = session.take_due_prompts()
        for loser in superseded:
            self._supersede(session, loser.event_id, loser.event_type, winner.event_id if winner else None)
        if winner is not None:
            session.apply_prompt(winner)

    # ------------------------------------------------------------------ control events

    def _on_control(self, parts: list[bytes]) -> None:
        now = self.clock()
        try:
            msg = decode_control(parts)
        except ProtocolError as exc:
            # Undecodable input spends the anonymous budget; beyond it, it gets no answer, so
            # garbage cannot be amplified into a flood of error messages.
            if self.limiter.allow("", now):
                log.info("refused a message: %s", exc)
                self._publish(self._error(exc.event_id, exc.code, exc.message, None))
            return
        session = getattr(msg, "session", None)
        if not self.limiter.allow(msg.client or "", now):
            self._publish(self._error(msg.id, ErrorCode.RATE_LIMITED, f"client {msg.client or '(anonymous)'} sends more than "
                                      f"{C.EVENTS_PER_SECOND:g} events/s; event dropped", session))
            return
        if not isinstance(msg, StatusRequest) and msg.id in self.recent:
            for answer in self.recent.answers(msg.id) or ():  # pending: its ack is still to come
                self._publish(answer)
            return
        try:
            self._handle(msg, now)
        except ProtocolError as exc:
            self._answer(msg.id, self._error(msg.id, exc.code, exc.message, session))
        except Exception as exc:  # a daemon bug must cost one event, not the stream
            log.exception("internal error handling %s %s", msg.TYPE, msg.id)
            self._answer(msg.id, self._error(msg.id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}", session))

    def _handle(self, msg: ControlMessage, now: float) -> None:
        if isinstance(msg, Open):
            self._on_open(msg, now)
        elif isinstance(msg, StatusRequest):
            targets = list(self.sessions.values()) if msg.session is None else [self._session(msg.session)]
            for session in targets:
                self._publish(self._status(session, msg.id))
            self._publish(Ack(id=self._id(), event_id=msg.id, event_type=msg.TYPE, session=msg.session))
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
            return self.pipe.encode_prompt(text)
        except PromptError as exc:
            raise ProtocolError(ErrorCode.BAD_PROMPT, str(exc)) from None

    def _check_prompt(self, text: str) -> None:
        """For plugins (SessionInfo.check_prompt): PromptError (a ValueError) if the model cannot take ``text``."""
        self.pipe.encode_prompt(text)

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
        self.sessions[msg.session].awaiting.append(Awaiting(msg.id, msg.TYPE, now))
        self.recent.pending(msg.id)

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
        text = self._rewrite(session.info, text, event)
        cond = self._encode_prompt(text)
        session.prompts.append(PendingPrompt(event_id, event_type, text, cond, transition, blend_blocks, at_frame, now))
        self.recent.pending(event_id)

    def _on_pause(self, session: Session, msg: Pause, now: float) -> None:
        session.pause()
        for item in [a for a in session.awaiting if a.event_type == Resume.TYPE]:  # undone before any frame
            session.awaiting.remove(item)
            self._supersede(session, item.event_id, item.event_type, msg.id)
        self._ack(msg.id, msg.TYPE, session, session.next_frame)

    def _on_resume(self, session: Session, msg: Resume, now: float) -> None:
        if not session.paused:
            self._ack(msg.id, msg.TYPE, session, session.next_frame)
            return
        session.resume()
        session.awaiting.append(Awaiting(msg.id, msg.TYPE, now))
        self.recent.pending(msg.id)

    def _on_seed(self, session: Session, msg: Seed, now: float) -> None:
        session.stream.set_seed(msg.seed)  # between blocks, so it applies from the next block
        session.seed = msg.seed
        session.info = replace(session.info, seed=msg.seed)
        session.awaiting.append(Awaiting(msg.id, msg.TYPE, now))
        self.recent.pending(msg.id)

    def _on_game_event(self, session: Session, msg: GameEvent, now: float) -> None:
        change, plugin = self.plugins.game_event(session.info, msg.name, msg.payload)
        if change is None:
            self._ack(msg.id, msg.TYPE, session, None)
            return
        problem = _change_problem(change)
        if problem:
            raise ProtocolError(ErrorCode.BAD_PROMPT, f"plugin {plugin} mapped event {msg.name!r} to an unusable "
                                f"prompt change: {problem}")
        self._queue_prompt(session, EventInfo(msg.id, msg.TYPE, msg.client, msg.name, msg.payload), change.text,
                           change.transition, change.blend_blocks, change.at_frame, now)

    # ------------------------------------------------------------------ publishing

    def _on_subscription(self, event: bytes) -> None:
        """Greet a new status subscriber with the current state of every session it matches."""
        prefix = self.subs.update(event)
        if prefix is None:
            return
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
        return Status(id=self._id(), session=session.name, model=self.model, shape=(height, width, 3),
                      fps_target=session.pacer.fps, fps_measured=session.fps_measured(now), latency_ms=last,
                      latency_mean_ms=mean, pending_events=len(session.prompts) + len(session.awaiting),
                      lookahead_blocks=session.pacer.blocks_ahead(session.next_frame, now),
                      cache_fill=_cache_fill(session.stream), frames_late=session.pacer.frames_late,
                      frame=session.next_frame, block=session.block, prompt_id=session.prompt_id,
                      prompt=session.prompt, paused=session.paused, seed=session.seed, request_id=request_id,
                      plugins=self.plugins.names, observations_dropped=self.plugins.observations_dropped())

    def _id(self) -> str:
        self._serial += 1
        return f"{self._boot}-{self._serial}"

    def _error(self, event_id: str | None, code: ErrorCode, message: str, session: str | None) -> Error:
        return Error(id=self._id(), event_id=event_id, code=int(code), name=ErrorCode(code).name,
                     message=message[:1000], session=session)

    def _ack(self, event_id: str, event_type: str, session: Session, frame: int | None,
             prompt: PendingPrompt | None = None, latency_ms: float | None = None) -> None:
        self._answer(event_id, Ack(id=self._id(), event_id=event_id, event_type=event_type, session=session.name,
                                   frame=frame))
        change = {} if prompt is None else {"text": prompt.text, "transition": prompt.transition,
                                            "source": prompt.event_type}
        self.plugins.notify("event_acked", session=session.info, ack=AckInfo(
            event_id, event_type, "ok", frame, latency_ms=latency_ms, **change))

    def _supersede(self, session: Session, event_id: str, event_type: str, by: str | None) -> None:
        self._answer(event_id, Ack(id=self._id(), event_id=event_id, event_type=event_type, session=session.name,
                                   status="superseded", superseded_by=by))
        self.plugins.notify("event_acked", session=session.info, ack=AckInfo(event_id, event_type, "superseded", None))

    def _answer(self, event_id: str, message: StreamMessage) -> None:
        """Publish the final answer to an event and remember it for resends."""
        self.recent.answered(event_id, [message])
        self._publish(message)

    def _publish(self, msg: StreamMessage) -> None:
        try:
            # XPUB drops per subscriber at the high-water mark, so this does not block or
            # refuse; NOBLOCK makes sure the generator could never be made to wait here.
            self.sockets.stream_pub.send_multipart(encode(msg), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.warning("stream socket refused a %s message; dropped", msg.TYPE)

    def close(self) -> None:
        for session in list(self.sessions.values()):
            self._end(session, closed_by=None)
        self.plugins.close()
        self.sockets.close()
        self._wake_recv.close()
        with self._wake_lock:
            self._wake_send.close()
        self.context.term()


def _change_problem(change: PromptChange) -> str | None:
    """Why a plugin's prompt change cannot be queued, or None."""
    if not isinstance(change.text, str) or not change.text.strip() or len(change.text) > C.MAX_PROMPT_CHARS:
        return f"text must be 1..{C.MAX_PROMPT_CHARS} characters, got {change.text!r:.80}"
    if change.transition not in C.TRANSITIONS:
        return f"transition {change.transition!r} is not one of {list(C.TRANSITIONS)}"
    if change.transition == "blend" and not (isinstance(change.blend_blocks, int)
                                             and 1 <= change.blend_blocks <= C.MAX_BLEND_BLOCKS):
        return f"a blend needs blend_blocks in 1..{C.MAX_BLEND_BLOCKS}"
    if change.at_frame is not None and not (isinstance(change.at_frame, int) and change.at_frame >= 0):
        return f"at_frame must be a frame index >= 0, got {change.at_frame!r}"
    return None
