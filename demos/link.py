"""A demo's connection to a daemon: a Viewer and a Controller, pumped without ever blocking.

The render loop calls `Link.poll()` once per drawn frame. Every socket read has timeout 0, so
a missing or stopped daemon costs the loop nothing; ZeroMQ reconnects by itself when a daemon
comes back on the same endpoints, and the link notices from its heartbeats (one every
HEARTBEAT_PERIOD_S) and asks it for status again. Frames are held until their `wall` time,
so the picture advances at the stream's fps however early the daemon sends a block.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from protocol import constants as C
from protocol.client import Controller, Picture, RemoteError, Ticket, Viewer
from protocol.messages import Error, Heartbeat, Status, StatusRequest

SKEW_S = 2.0  # a frame due further ahead than this is shown at once (clocks of two machines differ)
FPS_WINDOW = 32  # frames over which the shown fps is measured


@dataclass
class Sent:
    """An event this demo sent: what to call it, its ticket, when it left, when its frame was shown."""

    label: str
    ticket: Ticket
    sent_at: float
    shown_at: float | None = None
    picture: Picture | None = None  # the frame its final ack names, once on screen

    @property
    def latency_ms(self) -> float | None:
        return None if self.shown_at is None else (self.shown_at - self.sent_at) * 1000

    def outcome(self) -> str:
        """One short line: where the event landed, or why not."""
        t = self.ticket
        if not t.done():
            return f"accepted for frame {t.accepted.frame}" if t.accepted and t.accepted.frame is not None else "sent"
        try:
            ack = t.result(0)
        except RemoteError as exc:
            return f"refused: {exc.error.name}"
        if ack.status == "superseded":
            return "superseded"
        return "no visible effect" if ack.frame is None else f"frame {ack.frame}"

    def warning(self) -> str | None:
        """What the daemon said it set aside from the event (an ack's `warning`), if anything."""
        t = self.ticket
        final = t.result(0) if t.done() and self.error() is None else None
        return next((a.warning for a in (final, t.accepted) if a is not None and a.warning), None)

    def error(self) -> Error | None:
        """The daemon's refusal, if it refused the event."""
        if not self.ticket.done():
            return None
        try:
            self.ticket.result(0)
        except RemoteError as exc:
            return exc.error
        return None


class Link:
    """Frames, status and acks of one session, and a controller to steer it."""

    def __init__(self, control: str, stream: str, session: str = C.DEFAULT_SESSION, name: str = "demo") -> None:
        self.control, self.stream, self.session = control, stream, session
        self.viewer = Viewer(stream, sessions=[session], heartbeats=True)
        self.ctl = Controller(control, name=f"{name}-{id(self) & 0xffff:x}")
        self.pending: deque[Picture] = deque()  # received, not yet due
        self.picture: Picture | None = None  # on screen now
        self.status: Status | None = None
        self.texts: dict[str | None, str] = {}  # prompt id -> text
        self.sent: deque[Sent] = deque(maxlen=32)
        self.errors: deque[Error] = deque(maxlen=8)
        self.frames_shown = 0
        self._shown_at: deque[float] = deque(maxlen=FPS_WINDOW)
        self._heard_at: float | None = None
        self._period = C.HEARTBEAT_PERIOD_S
        self._asked: set[str | None] = set()  # prompt ids whose text we asked for
        self._was_connected = False

    # ------------------------------------------------------------------ state for the HUD

    @property
    def connected(self) -> bool:
        """Heard from the daemon within HEARTBEAT_LIVENESS heartbeat periods."""
        return self._heard_at is not None and time.monotonic() - self._heard_at < C.HEARTBEAT_LIVENESS * self._period

    @property
    def ever_connected(self) -> bool:
        return self._heard_at is not None

    @property
    def fps(self) -> float | None:
        """Frames per second put on screen, over the last FPS_WINDOW frames."""
        if len(self._shown_at) < 2 or self._shown_at[-1] == self._shown_at[0]:
            return None
        return (len(self._shown_at) - 1) / (self._shown_at[-1] - self._shown_at[0])

    @property
    def prompt_id(self) -> str | None:
        if self.picture is not None:
            return self.picture.frame.prompt_id
        return self.status.prompt_id if self.status else None

    @property
    def prompt(self) -> str | None:
        """Text of the prompt in effect on screen (None until the daemon told us)."""
        return self.texts.get(self.prompt_id)

    @property
    def latency_ms(self) -> float | None:
        """Event -> frame on screen, for the latest of our events that has shown."""
        return next((s.latency_ms for s in reversed(self.sent) if s.latency_ms is not None), None)

    # ------------------------------------------------------------------ steering

    def track(self, label: str, ticket: Ticket, text: str | None = None) -> Sent:
        """Follow an event sent through `self.ctl` (its text, when it is a prompt we know)."""
        if text is not None:
            self.texts[ticket.event_id] = text
        sent = Sent(label, ticket, time.monotonic())
        self.sent.append(sent)
        return sent

    def send_prompt(self, text: str, transition: str = "recache", blend_blocks: int | None = None) -> Sent:
        ticket = self.ctl.send_prompt(text, self.session, transition=transition,
                                      blend_blocks=blend_blocks if transition == "blend" else None)
        return self.track(f"prompt ({transition})", ticket, text)

    def send_event(self, name: str, payload: dict | None = None, label: str | None = None) -> Sent:
        return self.track(label or name, self.ctl.event(name, payload or {}, self.session))

    # ------------------------------------------------------------------ the pump

    def poll(self, max_messages: int = 256) -> None:
        """Read what has arrived, settle tickets, put the frames that are due on screen."""
        for _ in range(max_messages):
            msg = self.viewer.recv(timeout=0)
            if msg is None:
                break
            self._heard_at = time.monotonic()
            if isinstance(msg, Picture):
                if self.pending and msg.frame.frame <= self.pending[-1].frame.frame:
                    self.pending.clear()  # a restarted daemon counts from 0 again
                self.pending.append(msg)
            elif isinstance(msg, Status):
                self.status = msg
                self.texts[msg.prompt_id] = msg.prompt
            elif isinstance(msg, Heartbeat):
                self._period = msg.period
            elif isinstance(msg, Error) and (msg.session in (None, self.session)):
                self.errors.append(msg)
        self.ctl.pump(0)
        connected = self.connected
        if connected and not self._was_connected:
            self._asked.clear()  # a new daemon (or the first one): ask again
            self._ask_status()
        self._was_connected = connected
        wall = time.time()
        while self.pending and (self.pending[0].frame.wall <= wall or self.pending[0].frame.wall - wall > SKEW_S):
            self._show(self.pending.popleft())

    def _show(self, picture: Picture) -> None:
        now = time.monotonic()
        self.picture = picture
        self.frames_shown += 1
        self._shown_at.append(now)
        pid = picture.frame.prompt_id
        if pid not in self.texts and pid not in self._asked:
            self._ask_status()
            self._asked.add(pid)
        for sent in self.sent:
            if sent.shown_at is not None:
                continue
            frame = _final_frame(sent.ticket) if sent.ticket.done() else None
            if pid == sent.ticket.event_id or (frame is not None and picture.frame.frame >= frame):
                sent.shown_at, sent.picture = now, picture

    def _ask_status(self) -> None:
        """Ask for this session's status without waiting: the answer arrives on the viewer."""
        self.ctl.submit(StatusRequest(id=self.ctl.new_id(), client=self.ctl.name, session=self.session))

    def close(self) -> None:
        self.viewer.close()
        self.ctl.close()


def _final_frame(ticket: Ticket) -> int | None:
    try:
        ack = ticket.result(0)
    except RemoteError:
        return None
    return ack.frame if ack.status == "applied" else None
