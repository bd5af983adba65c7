"""CURVE: a daemon with a key pair talks only to clients whose public keys it lists; open
addresses are refused without it."""

from __future__ import annotations

import pytest
import zmq
import zmq.auth

from protocol.client import Controller, Picture, Viewer
from protocol.security import CurveClient, is_loopback
from runtime.daemon.daemon import DaemonConfig
from runtime.daemon.inprocess import serve_in_thread
from runtime.daemon.sockets import CurveServer, check_endpoints
from runtime.pipeline import load_pipeline

TCP = "tcp://127.0.0.1:*"


@pytest.mark.parametrize("endpoint, loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://localhost:5555", True), ("tcp://[::1]:5555", True),
    ("ipc:///tmp/longlive", True), ("inproc://x", True), ("tcp://0.0.0.0:5555", False),
    ("tcp://*:5555", False), ("tcp://eth0:5555", False), ("tcp://192.168.1.2:5555", False), ("udp://127.0.0.1:1", False),
])
def test_is_loopback(endpoint, loopback):
    assert is_loopback(endpoint) is loopback


def test_open_address_needs_curve(tmp_path):
    with pytest.raises(ValueError, match="without CURVE"):
        check_endpoints("tcp://127.0.0.1:5555", "tcp://*:5556", None)
    check_endpoints("tcp://*:5555", "tcp://*:5556", CurveServer(tmp_path / "daemon.key_secret", tmp_path))
    with pytest.raises(ValueError, match="allow-list"):  # CURVE without an allow-list is refused...
        check_endpoints("tcp://*:5555", "tcp://*:5556", CurveServer(tmp_path / "daemon.key_secret"))
    check_endpoints("tcp://*:5555", "tcp://*:5556",  # ...unless asked for explicitly
                    CurveServer(tmp_path / "daemon.key_secret", allow_any_client=True))


@pytest.fixture
def pipe():
    return load_pipeline("random-small", max_streams=1)


def test_curve_daemon_serves_listed_keys_only(pipe, tmp_path):
    for folder, name in (("server", "daemon"), ("clients", "game"), ("strangers", "intruder")):
        (tmp_path / folder).mkdir()
        zmq.auth.create_certificates(tmp_path / folder, name)
    server_key = tmp_path / "server" / "daemon.key"
    game = CurveClient.from_files(server_key, tmp_path / "clients" / "game.key_secret")
    intruder = CurveClient.from_files(server_key, tmp_path / "strangers" / "intruder.key_secret")
    curve = CurveServer(tmp_path / "server" / "daemon.key_secret", tmp_path / "clients")
    with serve_in_thread(pipe, DaemonConfig(control=TCP, stream=TCP, curve=curve)) as daemon:
        control, stream = daemon.endpoints
        with Controller(control, curve=game) as ctl, Viewer(stream, curve=game, acks=False) as view:
            ack = ctl.send_prompt("a blue cube slides on the snowy field").result()
            seen = next(m for m in iter(lambda: view.recv(timeout=20), None) if isinstance(m, Picture))
        assert ack.frame is not None and seen.frame.session == "main"
        for client in (intruder, None):  # a key the daemon does not list, and no CURVE at all
            with Controller(control, curve=client) as ctl:
                with pytest.raises(TimeoutError):
                    ctl.send_prompt("a red ball").result(1.5)


def test_keys_command_writes_a_loadable_certificate_pair(tmp_path):
    from runtime.cli import main

    assert main(["keys", str(tmp_path), "game"]) == 0
    public, secret = zmq.auth.load_certificate(tmp_path / "game.key_secret")
    assert zmq.auth.load_certificate(tmp_path / "game.key")[0] == public and secret is not None and len(public) == 40
    assert main(["keys", str(tmp_path), "game"]) == 2  # never overwrites a key
