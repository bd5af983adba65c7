"""CurveZMQ keys for clients and the loopback test that decides when they are required.

Keys are the standard ZeroMQ certificate files written by `zmq.auth.create_certificates`:
`name.key` holds the public key, `name.key_secret` both keys.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth


@dataclass(frozen=True)
class CurveClient:
    """What a client needs to talk to a CURVE daemon: the daemon's public key and its own
    key pair (whose public half the daemon must list as allowed)."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def from_files(cls, server_public_file: str | Path, client_secret_file: str | Path) -> CurveClient:
        server_public, _ = zmq.auth.load_certificate(server_public_file)
        public, secret = zmq.auth.load_certificate(client_secret_file)
        if secret is None:
            raise ValueError(f"{client_secret_file} holds no secret key; pass the .key_secret file")
        return cls(server_public, public, secret)

    def apply(self, socket: zmq.Socket) -> None:
        """Configure a socket before it connects."""
        socket.curve_serverkey = self.server_public
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret


def is_loopback(endpoint: str) -> bool:
    """True when only this machine can reach the endpoint: ipc://, inproc://, or tcp:// on a
    loopback address. Anything else needs CURVE (see SPEC.md, Security)."""
    scheme = endpoint.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name or '*': reachable from outside
        return False
