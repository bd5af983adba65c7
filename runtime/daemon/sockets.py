"""The daemon's sockets, bound with the security the endpoints call for.

    control_sub  SUB, bound: events from controllers' PUB sockets (subscribed to everything)
    stream_pub   XPUB, bound: frames, acks, errors, status, heartbeats; reports subscriptions
    zap          REP (only with CURVE client keys): answers ZeroMQ's authentication requests,
                 polled by the daemon loop like the others, so no authenticator thread runs

Binding beyond loopback without CURVE is refused: the protocol has no other authentication.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.base import Authenticator

from protocol import constants as C
from protocol.security import is_loopback


@dataclass(frozen=True)
class CurveServer:
    """The daemon's certificate (`.key_secret` file) and, optionally, a directory of allowed
    client public keys (`*.key`); without it any client key is accepted (encryption only)."""

    secret_file: Path
    clients_dir: Path | None = None


def check_endpoints(control: str, stream: str, curve: CurveServer | None) -> None:
    """Raise ValueError if an endpoint is reachable from other machines and CURVE is off."""
    for endpoint in (control, stream):
        if curve is None and not is_loopback(endpoint):
            raise ValueError(f"refusing to bind {endpoint} without CURVE: it is reachable from other machines; "
                             "pass a server key (--curve-secret) or bind to 127.0.0.1 / ipc://")


class DaemonSockets:
    def __init__(self, context: zmq.Context, control: str, stream: str, hwm: int, curve: CurveServer | None) -> None:
        check_endpoints(control, stream, curve)
        self.auth: Authenticator | None = None
        if curve is not None and curve.clients_dir is not None:
            # The ZAP handler must exist before the first handshake, so before binding.
            self.auth = Authenticator(context)
            self.auth.start()
            self.auth.configure_curve(domain="*", location=str(curve.clients_dir))
        self.control_sub = context.socket(zmq.SUB)
        self.stream_pub = context.socket(zmq.XPUB)
        for sock in (self.control_sub, self.stream_pub):
            sock.linger = 0
            if curve is not None:
                public, secret = zmq.auth.load_certificate(curve.secret_file)
                if secret is None:
                    raise ValueError(f"{curve.secret_file} holds no secret key; pass the .key_secret file")
                sock.curve_server = True
                sock.curve_secretkey = secret
                sock.curve_publickey = public
        self.control_sub.maxmsgsize = C.HARD_MESSAGE_BYTES
        self.control_sub.subscribe(b"")
        # Verbose-r: every subscribe and unsubscribe reaches the daemon, duplicates included.
        self.stream_pub.setsockopt(zmq.XPUB_VERBOSER, 1)
        self.stream_pub.sndhwm = hwm
        self.control_sub.bind(control)
        self.stream_pub.bind(stream)

    @property
    def zap(self) -> zmq.Socket | None:
        return self.auth.zap_socket if self.auth is not None else None

    def handle_zap(self) -> None:
        assert self.auth is not None
        self.auth.handle_zap_message(self.auth.zap_socket.recv_multipart())

    def endpoints(self) -> tuple[str, str]:
        """The bound endpoints, with the real port when a tcp port 0 was asked for."""
        return (self.control_sub.getsockopt_string(zmq.LAST_ENDPOINT),
                self.stream_pub.getsockopt_string(zmq.LAST_ENDPOINT))

    def close(self) -> None:
        self.control_sub.close()
        self.stream_pub.close()
        if self.auth is not None:
            self.auth.stop()
