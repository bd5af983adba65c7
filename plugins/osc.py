"""The OSC bridge: OSC messages in, protocol events out, answers back as OSC replies
(docs/plugins/osc.md).

Show tools and engines (TouchDesigner, Max, Unity/Unreal OSC packages) speak OSC over UDP.
The bridge is a *controller*: it reaches the daemon only through the protocol (a DEALER on
the control endpoint, which carries its events out and their answers back), never through the
daemon's internals, so it works the same inside ``longlive serve --plugin osc`` and as a
separate program (``OscBridge(control).start()``).

One thread owns every socket (the UDP socket, the ZeroMQ DEALER and a wake-up pair) and
polls them together: an OSC message is translated and sent at once, and acks are matched
as they arrive, so the OSC receive path never waits for an answer. Each event is resent
with its id until the daemon answers it (an answer can be lost to a daemon restart; the
daemon treats a repeated id as the same event), with the schedule of
``protocol.client.Controller``.

Addresses (arguments in ``<>`` are required, in ``[]`` optional; ``session`` defaults to the
configured one):

* ``/longlive/prompt <text> [session]`` — a ``prompt``, with the transition last set;
* ``/longlive/event <name> [payload] [session]`` — a game ``event``; the payload is one JSON
  object string (``'{"height": 2}'``) or key/value argument pairs (``height 2``);
* ``/longlive/transition <recache|none|cut|blend> [blend_blocks]`` — the transition of later
  prompts (a bridge setting, confirmed by the same address echoed back);
* ``/longlive/seed <seed> [session]``, ``/longlive/pause [session]``, ``/longlive/resume [session]``.

Replies go to the sender's address, or to ``reply_host``/``reply_port`` when configured:
``/longlive/ack <event_id> <frame or -1> <accepted|applied|superseded> [warning]`` and
``/longlive/error <event_id or ""> <code> <name> <message>``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import zmq
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket, ParseError

from plugins.hookspecs import DaemonInfo, hookimpl
from protocol import constants as C
from protocol.codec import decode_stream, encode
from protocol.constants import ErrorCode
from protocol.errors import ProtocolError
from protocol.messages import Ack, ControlMessage, Error, GameEvent, Pause, Prompt, Resume, Seed
from protocol.security import CurveClient

log = logging.getLogger("longlive.plugins.osc")

PREFIX = "/longlive/"
ACK_ADDRESS, ERROR_ADDRESS = PREFIX + "ack", PREFIX + "error"
NO_ANSWER = (0, "NO_ANSWER")  # the bridge's own error, not a daemon code
MAX_OUTSTANDING = 256  # events awaiting an answer; more are refused (TOO_MANY_PENDING) rather than queued
MAX_DATAGRAM = 65535
READS_PER_TURN = 64  # datagrams or daemon answers read before looking at the other sockets


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class OscSettings:
    """The ``[osc]`` table of the plugin config, and the standalone bridge's settings."""

    host: str = "127.0.0.1"  # where the bridge listens for OSC (UDP)
    port: int = 9000  # 0: any free port (see OscBridge.address)
    session: str = C.DEFAULT_SESSION  # the session of messages that name none
    reply_host: str | None = None  # replies go here instead of the sender's address ...
    reply_port: int | None = None  # ... and to this port instead of the sender's
    allow_remote: bool = False  # OSC has no authentication: listening beyond loopback must be asked for
    no_answer_s: float = 10.0  # an event the daemon has not accepted by then is given up (it is not there)

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise ValueError(f"[osc] host must be a non-empty address string, not {self.host!r}")
        _port("port", self.port, 0)
        if not isinstance(self.session, str) or not re.fullmatch(C.NAME_PATTERN, self.session) \
                or len(self.session) > C.MAX_NAME_CHARS:
            raise ValueError(f"[osc] session must be a session name ({C.NAME_PATTERN}), not {self.session!r}")
        if self.reply_host is not None and (not isinstance(self.reply_host, str) or not self.reply_host.strip()):
            raise ValueError(f"[osc] reply_host must be a non-empty address string, not {self.reply_host!r}")
        if self.reply_port is not None:
            _port("reply_port", self.reply_port, 1)
        if isinstance(self.no_answer_s, bool) or not isinstance(self.no_answer_s, int | float) \
                or not 0 < self.no_answer_s <= 3600:
            raise ValueError(f"[osc] no_answer_s must be a number of seconds in (0, 3600], not {self.no_answer_s!r}")
        if not isinstance(self.allow_remote, bool):
            raise ValueError(f"[osc] allow_remote must be true or false, not {self.allow_remote!r}")
        if not self.allow_remote and not _is_loopback(self.host):
            raise ValueError(f"[osc] host {self.host!r} is reachable from other machines and OSC has no "
                             f"authentication: anyone there could steer the daemon; set allow_remote = true "
                             f"to listen there anyway")

    @classmethod
    def from_table(cls, table: Any) -> tuple[OscSettings, CurveClient | None]:
        """The settings and, when ``server_key``/``client_key`` name CURVE key files, the keys the
        bridge uses to reach a CURVE daemon. ValueError names the bad setting."""
        if not isinstance(table, Mapping):
            raise ValueError(f"[osc] must be a table, not {type(table).__name__}")
        known = ("host", "port", "session", "reply_host", "reply_port", "allow_remote", "no_answer_s", "server_key",
                 "client_key")
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise ValueError(f"[osc] has unknown settings {', '.join(unknown)}; known: {', '.join(known)}")
        keys = {k: table[k] for k in ("server_key", "client_key") if k in table}
        curve = None
        if keys:
            if len(keys) != 2 or not all(isinstance(v, str) and v for v in keys.values()):
                raise ValueError("[osc] server_key (the daemon's .key file) and client_key (this bridge's "
                                 ".key_secret file) go together, as two paths")
            try:
                curve = CurveClient.from_files(keys["server_key"], keys["client_key"])
            except (OSError, ValueError) as exc:
                raise ValueError(f"[osc] cannot read the CURVE keys: {exc}") from None
        return cls(**{k: v for k, v in table.items() if k not in keys}), curve


def _port(name: str, value: Any, lowest: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= 65535:
        raise ValueError(f"[osc] {name} must be an integer {lowest}..65535, not {value!r}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve anywhere
        return False


# ---------------------------------------------------------------- OSC -> protocol messages


class OscRefused(Exception):
    """An OSC message the bridge cannot turn into an event; answered with ``/longlive/error``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Translator:
    """Turns one OSC message into a protocol message, and holds the bridge's transition setting."""

    def __init__(self, session: str, client: str) -> None:
        self.session, self.client = session, client
        self.transition, self.blend_blocks = "recache", None

    def message(self, address: str, args: Sequence[Any], event_id: str) -> ControlMessage | None:
        """The event to send, or None for a bridge setting (``/longlive/transition``); OscRefused
        says why the message cannot be sent."""
        verb = address[len(PREFIX):] if address.startswith(PREFIX) else None
        handler = _VERBS.get(verb) if verb is not None else None
        if handler is None:
            raise OscRefused(ErrorCode.UNKNOWN_TYPE, f"unknown OSC address {address!r}; known: "
                             + ", ".join(PREFIX + v for v in _VERBS))
        try:
            return handler(self, list(args), event_id)
        except (OscRefused, ProtocolError) as exc:  # ProtocolError: the message's own checks (names, ranges)
            raise OscRefused(exc.code, f"{address}: {exc.message}") from None

    def _common(self, event_id: str, session: str | None) -> dict[str, Any]:
        return {"id": event_id, "client": self.client, "session": self.session if session is None else session}

    def prompt(self, args: list[Any], event_id: str) -> Prompt:
        _arity(args, 1, 2)
        return Prompt(**self._common(event_id, _session(args, 1)), text=_text(args[0], "text"),
                      transition=self.transition, blend_blocks=self.blend_blocks)

    def event(self, args: list[Any], event_id: str) -> GameEvent:
        if not args:
            raise OscRefused(ErrorCode.MISSING_FIELD, "needs <name> [payload] [session]")
        name, rest = _text(args[0], "name"), args[1:]
        if rest and isinstance(rest[0], str) and rest[0].lstrip().startswith("{"):
            _arity(args, 2, 3)
            try:
                payload = json.loads(rest[0])
            except json.JSONDecodeError as exc:
                raise OscRefused(ErrorCode.BAD_FIELD, f"payload is not valid JSON: {exc}") from None
            if not isinstance(payload, dict):
                raise OscRefused(ErrorCode.BAD_FIELD, "payload must be a JSON object")
            session = _session(rest, 1)
        else:  # key value pairs; an odd one out at the end is the session
            session = _session(rest, len(rest) - 1) if len(rest) % 2 else None
            pairs = rest[:len(rest) - len(rest) % 2]
            payload = {}
            for key, value in zip(pairs[::2], pairs[1::2]):
                payload[_text(key, "payload key")] = list(value) if isinstance(value, tuple) else value
        return GameEvent(**self._common(event_id, session), name=name, payload=payload)

    def transition_(self, args: list[Any], event_id: str) -> None:
        _arity(args, 1, 2)
        transition = _text(args[0], "transition")
        if transition not in C.TRANSITIONS:
            raise OscRefused(ErrorCode.BAD_FIELD, f"transition must be one of {', '.join(C.TRANSITIONS)}, "
                             f"not {transition!r}")
        blocks = _integer(args[1], "blend_blocks") if len(args) > 1 else None
        # the checks a prompt with this transition will meet (blend needs blend_blocks, the others refuse it)
        Prompt(id=event_id, session=self.session, text="-", transition=transition, blend_blocks=blocks)
        self.transition, self.blend_blocks = transition, blocks
        return None

    def seed(self, args: list[Any], event_id: str) -> Seed:
        _arity(args, 1, 2)
        return Seed(**self._common(event_id, _session(args, 1)), seed=_integer(args[0], "seed"))

    def pause(self, args: list[Any], event_id: str) -> Pause:
        _arity(args, 0, 1)
        return Pause(**self._common(event_id, _session(args, 0)))

    def resume(self, args: list[Any], event_id: str) -> Resume:
        _arity(args, 0, 1)
        return Resume(**self._common(event_id, _session(args, 0)))


_VERBS = {"prompt": Translator.prompt, "event": Translator.event, "transition": Translator.transition_,
          "seed": Translator.seed, "pause": Translator.pause, "resume": Translator.resume}


def _arity(args: list[Any], least: int, most: int) -> None:
    if len(args) < least:
        raise OscRefused(ErrorCode.MISSING_FIELD, f"needs at least {least} argument(s), got {len(args)}")
    if len(args) > most:
        raise OscRefused(ErrorCode.BAD_FIELD, f"takes at most {most} argument(s), got {len(args)}")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise OscRefused(ErrorCode.BAD_FIELD, f"{what} must be an OSC string, got {type(value).__name__} {value!r}")
    return value


def _integer(value: Any, what: str) -> int:
    """An OSC int, or a float with an integral value (many show tools send only floats)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise OscRefused(ErrorCode.BAD_FIELD, f"{what} must be an integer, got {type(value).__name__} {value!r}")
    return value


def _session(args: list[Any], index: int) -> str | None:
    return _text(args[index], "session") if 0 <= index < len(args) else None


def osc_message(address: str, *args: Any) -> bytes:
    """One OSC message as a datagram."""
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


# ---------------------------------------------------------------- the bridge


@dataclass
class _Pending:
    """An event sent and not yet finally answered."""

    msg: ControlMessage
    reply_to: tuple[str, int]
    resend_at: float
    give_up_at: float  # only while not accepted: once the daemon has it, wait for its answer
    accepted: bool = False


class OscBridge:
    """Listens for OSC on UDP and steers the daemon at ``control`` through the protocol; the
    daemon's answers come back on the same connection.

    ``start()`` binds and connects (errors raise there) and starts the bridge's one thread;
    ``stop()`` ends it and closes every socket. ``curve`` holds the keys for a CURVE daemon."""

    def __init__(self, control: str = C.DEFAULT_CONTROL_ENDPOINT, settings: OscSettings = OscSettings(), *,
                 curve: CurveClient | None = None, context: zmq.Context | None = None) -> None:
        self.control, self.settings, self.curve = control, settings, curve
        self.client = f"osc-{uuid.uuid4().hex[:8]}"
        self.translator = Translator(settings.session, self.client)
        self._context = context or zmq.Context.instance()
        self._serial = 0
        self._pending: dict[str, _Pending] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def address(self) -> tuple[str, int]:
        """The bound UDP (host, port): the real port when the settings asked for 0."""
        return self._udp.getsockname()[:2]

    def start(self) -> OscBridge:
        if self._thread is not None:
            raise RuntimeError("the OSC bridge is already started")
        try:
            family, _, _, _, where = socket.getaddrinfo(self.settings.host, self.settings.port,
                                                        type=socket.SOCK_DGRAM)[0]
            self._udp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                self._udp.bind(where)
            except OSError:
                self._udp.close()
                raise
        except OSError as exc:
            raise OSError(exc.errno, f"the OSC bridge cannot listen on udp {self.settings.host}:{self.settings.port}: "
                                     f"{exc.strerror}") from None
        self._udp.setblocking(False)
        self._wake_recv, self._wake_send = socket.socketpair()
        self._wake_recv.setblocking(False)
        # Created here, used only by the bridge's thread from now on (thread start is the hand-over).
        self.dealer = self._context.socket(zmq.DEALER)
        try:
            self.dealer.linger = 0
            if self.curve is not None:
                self.curve.apply(self.dealer)
            self.dealer.connect(self.control)
        except zmq.ZMQError as exc:
            for sock in (self.dealer, self._udp, self._wake_recv, self._wake_send):
                sock.close()
            raise ValueError(f"the OSC bridge cannot connect to {self.control}: {exc}") from None
        self._thread = threading.Thread(target=self._run, name="osc-bridge", daemon=True)
        self._thread.start()
        log.info("osc: listening on udp %s:%d for %s*, steering %s (session %s)", *self.address, PREFIX,
                 self.control, self.settings.session)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread and close the sockets; events still unanswered are abandoned."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake_send.send(b"\0")
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("osc: the bridge thread did not stop within %.0f s", timeout)
        self._wake_send.close()
        self._thread = None

    def __enter__(self) -> OscBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        poller = zmq.Poller()
        for sock in (self._udp, self.dealer, self._wake_recv):
            poller.register(sock, zmq.POLLIN)
        udp, wake = self._udp.fileno(), self._wake_recv.fileno()
        try:
            while not self._stopping:
                try:
                    events = dict(poller.poll(self._poll_ms()))
                    if udp in events:
                        self._read_osc()
                    if self.dealer in events:
                        self._read_answers()
                    if wake in events:
                        self._wake_recv.recv(64)
                    self._resend(time.monotonic())
                except Exception:  # a bridge bug costs one turn, never the bridge
                    log.exception("osc: bridge turn failed; continuing")
                    time.sleep(0.01)  # a fault that repeats every turn must not spin a core
        finally:
            for pending in self._pending.values():
                log.warning("osc: stopping with %s event %s unanswered", pending.msg.TYPE, pending.msg.id)
            self._pending.clear()
            self.dealer.close()
            self._udp.close()
            self._wake_recv.close()

    def _poll_ms(self) -> int | None:
        if not self._pending:
            return None  # nothing to resend: sleep until a datagram, an answer or stop()
        due = min(p.resend_at if p.accepted else min(p.resend_at, p.give_up_at) for p in self._pending.values())
        return max(0, int((due - time.monotonic()) * 1000) + 1)

    def _read_osc(self) -> None:
        for _ in range(READS_PER_TURN):
            try:
                data, sender = self._udp.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. an ICMP error surfaced by the OS: the socket itself is fine
                log.debug("osc: receive failed: %s", exc)
                return
            self._on_datagram(data, sender[:2])

    def _on_datagram(self, data: bytes, sender: tuple[str, int]) -> None:
        reply_to = (self.settings.reply_host or sender[0], self.settings.reply_port or sender[1])
        try:
            messages = [timed.message for timed in OscPacket(data).messages]
        except ParseError as exc:
            self._refuse(reply_to, sender, OscRefused(ErrorCode.MALFORMED, f"not an OSC packet: {exc}"))
            return
        for message in messages:  # a bundle's time tag is not honoured: its messages act at once
            self._serial += 1
            event_id = f"{self.client}-{self._serial}"
            try:
                msg = self.translator.message(message.address, message.params, event_id)
            except OscRefused as refused:
                self._refuse(reply_to, sender, refused)
                continue
            if msg is None:  # a bridge setting: confirm it
                t = self.translator
                self._reply(reply_to, osc_message(message.address, t.transition, t.blend_blocks or 0))
            elif len(self._pending) >= MAX_OUTSTANDING:
                self._refuse(reply_to, sender, OscRefused(
                    ErrorCode.TOO_MANY_PENDING, f"the bridge already waits for {MAX_OUTSTANDING} answers"))
            else:
                now = time.monotonic()
                self._pending[msg.id] = _Pending(msg, reply_to, now + C.RESEND_S, now + self.settings.no_answer_s)
                self._send(msg)

    def _read_answers(self) -> None:
        for _ in range(READS_PER_TURN):
            try:
                parts = self.dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = decode_stream(parts)
            except ProtocolError as exc:
                log.warning("osc: unreadable message from the daemon: %s", exc)
                continue
            pending = self._pending.get(getattr(reply, "event_id", None) or "")
            if pending is None:
                continue  # a repeat of an answer already forwarded
            if isinstance(reply, Error):
                del self._pending[reply.event_id]
                self._reply(pending.reply_to, osc_message(ERROR_ADDRESS, reply.event_id, reply.code, reply.name,
                                                          reply.message))
            elif isinstance(reply, Ack) and (reply.final or not pending.accepted):
                if reply.final:
                    del self._pending[reply.event_id]
                else:
                    pending.accepted, pending.resend_at = True, time.monotonic() + C.ACCEPTED_RESEND_S
                frame = -1 if reply.frame is None else reply.frame
                warning = [reply.warning] if reply.warning else []  # what the model set aside from a prompt
                self._reply(pending.reply_to, osc_message(ACK_ADDRESS, reply.event_id, frame, reply.status, *warning))

    def _resend(self, now: float) -> None:
        for event_id, pending in list(self._pending.items()):
            if not pending.accepted and now >= pending.give_up_at:
                del self._pending[event_id]
                log.warning("osc: %s event %s got no answer from %s in %g s; given up", pending.msg.TYPE,
                            event_id, self.control, self.settings.no_answer_s)
                self._reply(pending.reply_to, osc_message(ERROR_ADDRESS, event_id, *NO_ANSWER,
                                                          f"no answer from the daemon at {self.control} "
                                                          f"in {self.settings.no_answer_s:g} s; is it running?"))
            elif now >= pending.resend_at:
                self._send(pending.msg)
                pending.resend_at = now + (C.ACCEPTED_RESEND_S if pending.accepted else C.RESEND_S)

    def _send(self, msg: ControlMessage) -> None:
        try:
            self.dealer.send_multipart(encode(msg), zmq.NOBLOCK)
        except zmq.Again:  # no daemon for a long while: the resend timer tries again
            log.debug("osc: the control queue is full; %s will be resent", msg.id)

    def _refuse(self, reply_to: tuple[str, int], sender: tuple[str, int], refused: OscRefused) -> None:
        log.warning("osc: refused a message from %s:%d: %s", *sender, refused.message)
        self._reply(reply_to, osc_message(ERROR_ADDRESS, "", int(refused.code), refused.code.name,
                                          refused.message[:1000]))

    def _reply(self, address: tuple[str, int], datagram: bytes) -> None:
        try:
            self._udp.sendto(datagram, address)
        except OSError as exc:  # an unreachable reply address must not stop the bridge
            log.warning("osc: cannot reply to %s:%d: %s", *address, exc)


# ---------------------------------------------------------------- the plugin


class OscPlugin:
    """The hook implementations: a bridge to the daemon that loaded it. Loading the module
    (``--plugin osc``) registers its one instance (below); an embedder running several hosts in
    one process registers its own ``OscPlugin()``."""

    def __init__(self) -> None:
        self.settings, self.curve = OscSettings(), None
        self.bridge: OscBridge | None = None

    @hookimpl
    def longlive_configure(self, config: Mapping[str, Any]) -> None:
        self.settings, self.curve = OscSettings.from_table(config.get("osc", {}))

    @hookimpl
    def longlive_daemon_started(self, daemon: DaemonInfo) -> None:
        if self.bridge is not None:
            self.bridge.stop()
        self.bridge = OscBridge(daemon.control, self.settings, curve=self.curve).start()

    @hookimpl
    def longlive_daemon_stopping(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None


longlive_plugin = OscPlugin()  # what the host registers (plugins/host.py)
