"""The OSC bridge: OSC over a real UDP socket on loopback, a real daemon (random-small) behind
it; acks come back as OSC replies naming the frame the change took effect at, which the
daemon's own frames confirm. Malformed OSC is answered with an error and the bridge goes on."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pythonosc.osc_packet import OscPacket

from plugins import AckInfo, PromptChange, hookimpl
from plugins.host import PluginHost
from plugins.osc import OscBridge, OscPlugin, OscRefused, OscSettings, Translator, osc_message
from protocol.client import Picture, Viewer
from protocol.constants import ErrorCode
from protocol.messages import GameEvent, Pause, Prompt, Resume, Seed
from tests.serve_child import serve_with_plugin

TCP = "tcp://127.0.0.1:*"


# ---------------------------------------------------------------- OSC -> protocol messages


@pytest.mark.parametrize("address, args, expected", [
    ("/longlive/prompt", ["a red ball"], Prompt(id="e", client="c", session="main", text="a red ball")),
    ("/longlive/prompt", ["a red ball", "s2"], Prompt(id="e", client="c", session="s2", text="a red ball")),
    ("/longlive/event", ["jump"], GameEvent(id="e", client="c", session="main", name="jump", payload={})),
    ("/longlive/event", ["jump", "s2"], GameEvent(id="e", client="c", session="s2", name="jump", payload={})),
    ("/longlive/event", ["jump", '{"h": [1, 2], "who": "hero"}', "s2"],
     GameEvent(id="e", client="c", session="s2", name="jump", payload={"h": [1, 2], "who": "hero"})),
    ("/longlive/event", ["jump", "h", 2, "w", 1.5],
     GameEvent(id="e", client="c", session="main", name="jump", payload={"h": 2, "w": 1.5})),
    ("/longlive/event", ["jump", "h", 2, "s3"], GameEvent(id="e", client="c", session="s3", name="jump", payload={"h": 2})),
    ("/longlive/seed", [7], Seed(id="e", client="c", session="main", seed=7)),
    ("/longlive/seed", [7.0, "s2"], Seed(id="e", client="c", session="s2", seed=7)),  # show tools often send floats
    ("/longlive/pause", [], Pause(id="e", client="c", session="main")),
    ("/longlive/resume", ["s2"], Resume(id="e", client="c", session="s2")),
])
def test_osc_messages_become_protocol_events(address, args, expected):
    assert Translator("main", "c").message(address, args, "e") == expected


@pytest.mark.parametrize("address, args, code, message", [
    ("/longlive/zoom", [], ErrorCode.UNKNOWN_TYPE, "unknown OSC address '/longlive/zoom'; known: /longlive/prompt"),
    ("/other/prompt", ["x"], ErrorCode.UNKNOWN_TYPE, "unknown OSC address '/other/prompt'"),
    ("/longlive/prompt", [], ErrorCode.MISSING_FIELD, "/longlive/prompt: needs at least 1 argument(s), got 0"),
    ("/longlive/prompt", [3], ErrorCode.BAD_FIELD, "/longlive/prompt: text must be an OSC string, got int 3"),
    ("/longlive/prompt", ["x", "main", "extra"], ErrorCode.BAD_FIELD, "takes at most 2 argument(s), got 3"),
    ("/longlive/prompt", [""], ErrorCode.BAD_FIELD, "field 'text'"),
    ("/longlive/prompt", ["x", "a.b"], ErrorCode.BAD_FIELD, "field 'session' must match"),
    ("/longlive/event", [], ErrorCode.MISSING_FIELD, "/longlive/event: needs <name> [payload] [session]"),
    ("/longlive/event", ["jump", "{h: 1}"], ErrorCode.BAD_FIELD, "payload is not valid JSON"),
    ("/longlive/event", ["jump", "{}", "s", "x"], ErrorCode.BAD_FIELD, "takes at most 3 argument(s)"),
    ("/longlive/event", ["jump", 1, 2], ErrorCode.BAD_FIELD, "payload key must be an OSC string, got int 1"),
    ("/longlive/seed", ["7"], ErrorCode.BAD_FIELD, "/longlive/seed: seed must be an integer, got str '7'"),
    ("/longlive/seed", [1.5], ErrorCode.BAD_FIELD, "seed must be an integer, got float 1.5"),
    ("/longlive/seed", [True], ErrorCode.BAD_FIELD, "seed must be an integer, got bool True"),
    ("/longlive/seed", [-1], ErrorCode.BAD_FIELD, "field 'seed'"),
    ("/longlive/transition", ["zoom"], ErrorCode.BAD_FIELD, "transition must be one of recache, cut, none, blend"),
    ("/longlive/transition", ["blend"], ErrorCode.MISSING_FIELD, "'blend_blocks' is required when transition is 'blend'"),
    ("/longlive/transition", ["cut", 2], ErrorCode.BAD_FIELD, "'blend_blocks' only applies to transition 'blend'"),
    ("/longlive/transition", ["blend", 1000], ErrorCode.BAD_FIELD, "field 'blend_blocks'"),
])
def test_malformed_osc_is_refused_with_a_code_and_the_reason(address, args, code, message):
    with pytest.raises(OscRefused) as refused:
        Translator("main", "c").message(address, args, "e")
    assert refused.value.code == code and message in refused.value.message


def test_the_transition_applies_to_later_prompts_and_a_refused_one_changes_nothing():
    t = Translator("main", "c")
    assert t.message("/longlive/transition", ["blend", 4.0], "e1") is None
    with pytest.raises(OscRefused):
        t.message("/longlive/transition", ["cut", 3], "e2")
    prompt = t.message("/longlive/prompt", ["x"], "e3")
    assert (prompt.transition, prompt.blend_blocks) == ("blend", 4)
    assert t.message("/longlive/transition", ["none"], "e4") is None
    assert t.message("/longlive/prompt", ["x"], "e5").transition == "none"


@pytest.mark.parametrize("table, message", [
    ("9000", "[osc] must be a table, not str"),
    ({"port": 70000}, "[osc] port must be an integer 0..65535, not 70000"),
    ({"reply_port": 0}, "[osc] reply_port must be an integer 1..65535, not 0"),
    ({"session": "a.b"}, "[osc] session must be a session name"),
    ({"host": "0.0.0.0"}, "[osc] host '0.0.0.0' is reachable from other machines and OSC has no authentication"),
    ({"allow_remote": "yes"}, "[osc] allow_remote must be true or false"),
    ({"no_answer_s": 0}, "[osc] no_answer_s must be a number of seconds in (0, 3600]"),
    ({"server_key": "a.key"}, "[osc] server_key (the daemon's .key file) and client_key"),
    ({"server_key": "/nonexistent/a.key", "client_key": "/nonexistent/b.key_secret"}, "[osc] cannot read the CURVE keys"),
    ({"listen": 9000}, "[osc] has unknown settings listen; known: host, port, session"),
])
def test_bad_settings_are_refused_with_the_reason(table, message):
    host = PluginHost({"osc": table}, builtin_models=False)
    assert host.register(OscPlugin(), "osc") is None
    assert message in host.disabled["osc"]


def test_listening_beyond_loopback_must_be_asked_for():
    assert OscSettings(host="0.0.0.0", allow_remote=True).host == "0.0.0.0"
    assert OscSettings(host="::1").host == "::1"


# ---------------------------------------------------------------- over the wire


class OscPeer:
    """A show tool: one UDP socket that sends OSC and reads the replies."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def send(self, to: tuple[str, int], address: str, *args) -> None:
        self.sock.sendto(osc_message(address, *args), to)

    def recv(self, timeout: float = 10.0) -> tuple[str, list]:
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(65535)
        message = OscPacket(data).messages[0].message
        return message.address, list(message.params)

    def final(self, timeout: float = 20.0) -> tuple[str, list]:
        """The next reply that is not an 'accepted' ack."""
        while (reply := self.recv(timeout))[1][2] == "accepted":
            pass
        return reply

    def close(self) -> None:
        self.sock.close()


class Rules:
    """A game's rules plugin ("jump" shows the hero jumping) that also keeps every final ack."""

    def __init__(self) -> None:
        self.acks: list[AckInfo] = []

    @hookimpl
    def longlive_game_event(self, name, payload):
        return PromptChange(f"the hero jumps {payload.get('h', 1)} times") if name == "jump" else None

    @hookimpl
    def longlive_event_acked(self, ack):
        self.acks.append(ack)


@pytest.fixture(scope="module")
def pipe():
    from runtime.pipeline import load_pipeline

    return load_pipeline("random-small", max_streams=2)


def frames_until(view: Viewer, last: int, timeout: float = 20.0) -> dict[int, str | None]:
    """frame index -> prompt_id of session main, until frame ``last`` has arrived."""
    seen, deadline = {}, time.monotonic() + timeout
    while last not in seen:
        msg = view.recv(timeout=max(0.0, deadline - time.monotonic()))
        assert msg is not None, f"no frame {last}; saw up to {max(seen, default=None)}"
        if isinstance(msg, Picture) and msg.frame.session == "main":
            seen[msg.frame.frame] = msg.frame.prompt_id
    return seen


def test_osc_round_trip_through_the_plugin_and_a_daemon(pipe):
    from runtime.daemon.daemon import DaemonConfig
    from runtime.daemon.inprocess import serve_in_thread

    osc, rules = OscPlugin(), Rules()
    host = PluginHost({"osc": {"port": 0}}, builtin_models=False)
    assert host.register(rules, "rules") and host.register(osc, "osc"), host.disabled
    peer = OscPeer()
    try:
        with serve_in_thread(pipe, DaemonConfig(control=TCP, stream=TCP), host) as daemon, \
                Viewer(daemon.endpoints[1], acks=False, status=False) as view:
            deadline = time.monotonic() + 10
            while osc.bridge is None:  # started on the plugin's thread once the daemon is bound
                assert time.monotonic() < deadline, host.disabled
                time.sleep(0.01)
            bridge = osc.bridge.address
            assert bridge[1] != 0
            next(view.frames(timeout=20))  # the viewer is subscribed

            peer.send(bridge, "/longlive/prompt", "a red ball rolls to the left")
            address, (event_id, planned, status) = peer.recv()
            assert (address, status) == ("/longlive/ack", "accepted") and planned >= 0
            address, (final_id, frame, status) = peer.final()
            assert (address, final_id, status) == ("/longlive/ack", event_id, "applied") and frame >= planned
            seen = frames_until(view, frame + pipe.frames_per_block)
            assert seen[frame] == event_id and seen[frame - 1] != event_id  # the change starts exactly there
            assert all(seen[f] == event_id for f in seen if f >= frame)

            # malformed input: answered, and the bridge goes on
            peer.sock.sendto(b"not osc at all", bridge)
            address, (no_id, code, name, message) = peer.recv()
            assert (address, no_id, code, name) == ("/longlive/error", "", 100, "MALFORMED")
            assert "not an OSC packet" in message
            peer.send(bridge, "/longlive/prompt", 3)
            assert peer.recv() == ("/longlive/error", ["", 104, "BAD_FIELD",
                                                       "/longlive/prompt: text must be an OSC string, got int 3"])
            peer.send(bridge, "/longlive/nope")
            assert peer.recv()[1][:3] == ["", 102, "UNKNOWN_TYPE"]

            # the daemon's own refusals come back with the event id
            peer.send(bridge, "/longlive/prompt", "a red ball", "nosuch")
            address, (refused_id, code, name, message) = peer.recv()
            assert (address, code, name) == ("/longlive/error", ErrorCode.UNKNOWN_SESSION, "UNKNOWN_SESSION")
            assert refused_id.startswith(osc.bridge.client) and "nosuch" in message

            # a transition set by OSC is used by the next prompt; a game event reaches the rules plugin
            peer.send(bridge, "/longlive/transition", "cut")
            assert peer.recv() == ("/longlive/transition", ["cut", 0])
            peer.send(bridge, "/longlive/prompt", "a blue cube")
            cut_id, cut_frame, _ = peer.final()[1]
            peer.send(bridge, "/longlive/event", "jump", "h", 3)
            jump_id, jump_frame, jump_status = peer.final()[1]
            assert jump_status == "applied" and jump_frame > cut_frame >= frame
            seen = frames_until(view, jump_frame)
            assert seen[jump_frame] == jump_id
    finally:
        peer.close()
    finals = {a.event_id: a for a in rules.acks}
    assert finals[event_id].text == "a red ball rolls to the left" and finals[event_id].transition == "recache"
    assert (finals[cut_id].text, finals[cut_id].transition, finals[cut_id].frame) == ("a blue cube", "cut", cut_frame)
    assert (finals[jump_id].text, finals[jump_id].source) == ("the hero jumps 3 times", "event")
    assert osc.bridge is None  # the daemon stopped: the plugin stopped its bridge



def test_acks_carry_the_words_the_toy_model_set_aside():
    from runtime.daemon.daemon import DaemonConfig
    from runtime.daemon.inprocess import serve_in_thread
    from runtime.pipeline import load_pipeline

    osc = OscPlugin()
    host = PluginHost({"osc": {"port": 0}}, builtin_models=False)
    assert host.register(osc, "osc"), host.disabled
    peer = OscPeer()
    try:
        with serve_in_thread(load_pipeline("toy", max_streams=1), DaemonConfig(control=TCP, stream=TCP), host):
            deadline = time.monotonic() + 10
            while osc.bridge is None:
                assert time.monotonic() < deadline, host.disabled
                time.sleep(0.01)
            peer.send(osc.bridge.address, "/longlive/prompt", "a red ball in the enchanted forest at night")
            address, accepted = peer.recv()
            _, applied = peer.final()
            peer.send(osc.bridge.address, "/longlive/prompt", "a blue cube at night")
            _, clean = peer.final()
    finally:
        peer.close()
    assert address == "/longlive/ack" and accepted[2] == "accepted" and applied[2] == "applied"
    for params in (accepted, applied):
        assert len(params) == 4 and "'enchanted'" in params[3] and "'forest'" in params[3]
    assert len(clean) == 3 and clean[2] == "applied"


def test_standalone_bridge_replies_to_the_configured_port(pipe):
    from runtime.daemon.daemon import DaemonConfig
    from runtime.daemon.inprocess import serve_in_thread

    sender, listener = OscPeer(), OscPeer()  # a tool that sends from one port and listens on another
    try:
        with serve_in_thread(pipe, DaemonConfig(control=TCP, stream=TCP)) as daemon, \
                OscBridge(daemon.endpoints[0], OscSettings(port=0, reply_port=listener.sock.getsockname()[1],
                                                     no_answer_s=1.0)) as bridge:
            replies = []
            for address, *args in (("/longlive/seed", 5), ("/longlive/pause",)):
                sender.send(bridge.address, address, *args)
                replies.append(listener.final())  # one at a time: a paused session applies no seed
            # a prompt to the paused session is accepted and waits, past no_answer_s, costing no CPU
            sender.send(bridge.address, "/longlive/prompt", "a blue cube")
            waiting_id, _, status = listener.recv()[1]
            assert status == "accepted"
            cpu = thread_cpu_s(bridge)
            time.sleep(2.0)  # no_answer_s passes after 1 s: an accepted event must not make the bridge spin
            assert thread_cpu_s(bridge) - cpu < 0.2  # woken only by resends (every 2 s once accepted)
            sender.send(bridge.address, "/longlive/resume")
            finals = [listener.final(), listener.final()]  # the resume's and the waiting prompt's, either order
            waited = next(r for r in finals if r[1][0] == waiting_id)
            replies.append(next(r for r in finals if r[1][0] != waiting_id))
            sender.sock.settimeout(0.2)
            with pytest.raises(TimeoutError):  # nothing went back to the sending port
                sender.sock.recvfrom(65535)
    finally:
        sender.close()
        listener.close()
    assert [(address, params[2]) for address, params in replies] == [("/longlive/ack", "applied")] * 3
    seeded, paused, resumed = (params[1] for _, params in replies)
    assert 0 < seeded <= paused <= resumed  # pause names the next frame, which waits for the resume
    assert waited == ("/longlive/ack", [waiting_id, resumed, "applied"])  # not given up while accepted


def thread_cpu_s(bridge: OscBridge) -> float:
    """CPU seconds the bridge's thread has used (Linux: /proc/self/task/<tid>/stat)."""
    fields = Path(f"/proc/self/task/{bridge._thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_an_event_no_daemon_answers_is_given_up_with_an_error(tmp_path):
    peer = OscPeer()
    settings = OscSettings(port=0, no_answer_s=0.5)
    try:
        with OscBridge(f"ipc://{tmp_path}/control", settings) as bridge:
            started = time.monotonic()
            peer.send(bridge.address, "/longlive/prompt", "a red ball")
            address, (event_id, code, name, message) = peer.recv()
            waited = time.monotonic() - started
    finally:
        peer.close()
    assert (address, code, name) == ("/longlive/error", 0, "NO_ANSWER") and event_id.startswith(bridge.client)
    assert "no answer from the daemon" in message and 0.5 <= waited < 5


def test_a_bundle_is_handled_message_by_message(tmp_path):
    from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder

    bundle = OscBundleBuilder(IMMEDIATELY)
    for address, *args in (("/longlive/transition", "blend", 3), ("/longlive/bogus", 1), ("/longlive/transition", "cut")):
        bundle.add_content(OscPacket(osc_message(address, *args)).messages[0].message)
    peer = OscPeer()
    try:
        with OscBridge(f"ipc://{tmp_path}/control", OscSettings(port=0)) as bridge:
            peer.sock.sendto(bundle.build().dgram, bridge.address)
            replies = [peer.recv() for _ in range(3)]
    finally:
        peer.close()
    assert replies[0] == ("/longlive/transition", ["blend", 3])
    assert replies[1][0] == "/longlive/error" and replies[1][1][:3] == ["", 102, "UNKNOWN_TYPE"]
    assert replies[2] == ("/longlive/transition", ["cut", 0])
    assert (bridge.translator.transition, bridge.translator.blend_blocks) == ("cut", None)


def test_stop_closes_the_sockets_and_frees_the_port(tmp_path):
    bridge = OscBridge(f"ipc://{tmp_path}/control", OscSettings(port=0)).start()
    port = bridge.address[1]
    with pytest.raises(OSError, match=f"cannot listen on udp 127.0.0.1:{port}"):  # taken while it runs
        OscBridge(f"ipc://{tmp_path}/c", OscSettings(port=port)).start()
    bridge.stop()
    again = OscBridge(f"ipc://{tmp_path}/control", OscSettings(port=port)).start()
    assert again.address[1] == port
    again.stop()


def test_longlive_serve_with_the_osc_plugin(tmp_path):
    proc = serve_with_plugin(tmp_path, "osc", "[osc]\nport = 0\n")
    peer = OscPeer()
    try:
        port = None
        while port is None:
            line = proc.stdout.readline()
            assert line, "serve stopped before the OSC bridge listened"
            if match := re.search(r"osc: listening on udp 127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
        peer.send(("127.0.0.1", port), "/longlive/prompt", "a red ball rolls to the left")
        address, (event_id, frame, status) = peer.final(timeout=30)
        assert (address, status) == ("/longlive/ack", "applied") and frame >= 0  # -1 would be "no frame"
    finally:
        peer.close()
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out


def test_longlive_osc_bridges_a_running_daemon_until_sigterm(pipe):
    """The standalone command: a show tool's prompt reaches a daemon started elsewhere."""
    import signal

    from runtime.daemon.daemon import DaemonConfig
    from runtime.daemon.inprocess import serve_in_thread

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    peer = OscPeer()
    try:
        with serve_in_thread(pipe, DaemonConfig(control=TCP, stream=TCP)) as daemon:
            bridge = subprocess.Popen([sys.executable, "-m", "runtime.cli", "osc", "--control", daemon.endpoints[0],
                                       "--port", str(port)],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                assert f"listening on udp 127.0.0.1:{port}" in bridge.stdout.readline()
                peer.send(("127.0.0.1", port), "/longlive/prompt", "a blue cube")
                address, (event_id, frame, status) = peer.final()
            finally:
                bridge.send_signal(signal.SIGTERM)
                assert bridge.wait(timeout=20) == 0
            assert (address, status) == ("/longlive/ack", "applied") and frame >= 0
    finally:
        peer.close()
    refused = subprocess.run([sys.executable, "-m", "runtime.cli", "osc", "--host", "0.0.0.0"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "allow_remote" in refused.stderr
