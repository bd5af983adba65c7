"""The daemon's sockets, bound with the security the endpoints call for.

    control      ROUTER, bound: events from controllers' DEALER sockets in, and each event's
                 answers (acks, errors, status replies) back to the connection that sent it
    stream_pub   XPUB, bound: frames, status, heartbeats, relayed game events, and copies of
                 the answers for observers; reports subscriptions
    zap          REP (only with CURVE client keys): answers ZeroMQ's authentication requests
                 (ZAP), polled by the daemon loop like the others, so no authenticator thread runs

Binding beyond loopback without CURVE is refused: the protocol has no other authentication.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from protocol import constants as C
from protocol.security import is_loopback

log = logging.getLogger("longlive.daemon")
ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by the ZAP specification


@dataclass(frozen=True)
class CurveServer:
    """The daemon's certificate (`.key_secret` file) and the directory of allowed client
    public keys (`*.key`). Without a directory the daemon refuses to start unless
    `allow_any_client` says so explicitly (encryption without authentication)."""

    secret_file: Path
    clients_dir: Path | None = None
    allow_any_client: bool = False


def check_endpoints(control: str, stream: str, curve: CurveServer | None) -> None:
    """Raise ValueError if an endpoint is reachable from other machines and CURVE is off."""
    for endpoint in (control, stream):
        if curve is None and not is_loopback(endpoint):
            raise ValueError(f"refusing to bind {endpoint} without CURVE: it is reachable from other machines; "
                             "pass a server key (--curve-secret) or bind to 127.0.0.1 / ipc://")
    if curve is not None and curve.clients_dir is None and not curve.allow_any_client:
        raise ValueError("CURVE needs an allow-list of client keys (--curve-clients DIR); pass "
                         "--curve-allow-any-client to accept any key (encryption without authentication)")


class DaemonSockets:
    def __init__(self, context: zmq.Context, control: str, stream: str, hwm: int, curve: CurveServer | None) -> None:
        check_endpoints(control, stream, curve)
        self.zap: zmq.Socket | None = None
        self._allowed: frozenset[bytes] = frozenset()
        self._allow_any = curve is not None and curve.allow_any_client and curve.clients_dir is None
        if curve is not None:
            # The ZAP handler must exist before the first handshake, so before binding. It
            # also names each client by its key (the ZAP user id), which keys rate limits.
            if curve.clients_dir is not None:
                self._allowed = frozenset(zmq.auth.load_certificates(curve.clients_dir))
            self.zap = context.socket(zmq.REP)
            self.zap.linger = 0
            self.zap.bind(ZAP_ENDPOINT)
        self.control = context.socket(zmq.ROUTER)
        self.stream_pub = context.socket(zmq.XPUB)
        for sock in (self.control, self.stream_pub):
            sock.linger = 0
            if curve is not None:
                public, secret = zmq.auth.load_certificate(curve.secret_file)
                if secret is None:
                    raise ValueError(f"{curve.secret_file} holds no secret key; pass the .key_secret file")
                sock.curve_server = True
                sock.curve_secretkey = secret
                sock.curve_publickey = public
        self.control.maxmsgsize = C.HARD_MESSAGE_BYTES
        # Answers are small, so a connection may queue many (a burst's acks are never dropped
        # for a controller that reads); an answer to a gone or stuck peer raises instead of
        # vanishing silently, and the daemon counts it (SPEC section 9).
        self.control.sndhwm = C.ANSWER_HWM
        self.control.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # Verbose-r: every subscribe and unsubscribe reaches the daemon, duplicates included.
        self.stream_pub.setsockopt(zmq.XPUB_VERBOSER, 1)
        self.stream_pub.sndhwm = hwm
        self.control.bind(control)
        self.stream_pub.bind(stream)

    def handle_zap(self) -> None:
        """Answer one ZeroMQ authentication request (RFC 27): allow a CURVE client whose
        public key is listed; refuse everything else."""
        assert self.zap is not None
        request = self.zap.recv_multipart()
        version, request_id, mechanism = request[0], request[1], request[5] if len(request) > 5 else b""
        key = z85.encode(request[6]) if mechanism == b"CURVE" and len(request) > 6 and len(request[6]) == 32 else None
        if key is not None and (self._allow_any or key in self._allowed):
            self.zap.send_multipart([version, request_id, b"200", b"OK", key, b""])
        else:
            log.info("refused a %s client (key %s)", mechanism.decode(errors="replace"), key)
            self.zap.send_multipart([version, request_id, b"400", b"not an allowed client key", b"", b""])

    def endpoints(self) -> tuple[str, str]:
        """The bound endpoints, with the real port when a tcp port 0 was asked for."""
        return (self.control.getsockopt_string(zmq.LAST_ENDPOINT),
                self.stream_pub.getsockopt_string(zmq.LAST_ENDPOINT))

    def close(self) -> None:
        self.control.close()
        self.stream_pub.close()
        if self.zap is not None:
            self.zap.close()
