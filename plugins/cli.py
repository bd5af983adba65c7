"""`longlive plugins`: which plugins a `longlive serve` with the same flags would load, the
hooks each implements, the models they register, and why any failed.

`longlive osc`: the OSC bridge on its own, for a daemon started elsewhere."""

from __future__ import annotations

import argparse
import logging
import sys

from plugins.host import OBSERVER_HOOKS, PluginError, PluginHost, read_config
from protocol import constants as C


class _ModelNames:
    """Stands in for the model registry: collects names without building anything."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def add(self, name: str, builder: object) -> None:
        self.names.append(name)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser("plugins", help="list the plugins `serve` would load, their hooks and models")
    cmd.add_argument("--plugin", action="append", default=[], metavar="NAME|MODULE|FILE.py")
    cmd.add_argument("--plugin-config", metavar="FILE.toml")
    cmd.add_argument("--no-entry-points", action="store_true")
    cmd.set_defaults(run=cmd_plugins)

    osc = subparsers.add_parser("osc", help="bridge OSC messages (UDP) to a running daemon")
    osc.add_argument("--control", default=C.DEFAULT_CONTROL_ENDPOINT, help="the daemon's control endpoint")
    osc.add_argument("--host", default="127.0.0.1", help="address to listen on for OSC")
    osc.add_argument("--port", type=int, default=9000, help="UDP port to listen on (0: any free one)")
    osc.add_argument("--session", default=C.DEFAULT_SESSION, help="session of messages that name none")
    osc.add_argument("--reply-host", default=None, help="send replies here instead of to the sender")
    osc.add_argument("--reply-port", type=int, default=None, help="send replies to this port instead of the sender's")
    osc.add_argument("--allow-remote", action="store_true", help="listen beyond loopback (OSC has no authentication)")
    osc.set_defaults(run=cmd_osc)


def cmd_plugins(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.CRITICAL)  # failures are listed below, once, without tracebacks
    try:
        host = PluginHost(read_config(args.plugin_config))
    except PluginError as exc:
        print(f"longlive plugins: {exc}", file=sys.stderr)
        return 2
    if not args.no_entry_points:
        host.load_entry_points()
    try:
        host.enable_from_config()
    except PluginError as exc:
        print(f"longlive plugins: {exc}", file=sys.stderr)
        return 2
    for spec in args.plugin:
        host.load(spec)
    models = _ModelNames()
    host.register_models(models)
    for name in host.names:
        hooks = sorted(h.name.removeprefix("longlive_") for h in host.pm.get_hookcallers(host.pm.get_plugin(name)))
        kinds = ["observer" if h in OBSERVER_HOOKS else "decision" for h in hooks]
        print(f"{name}: " + ", ".join(f"{h} ({k})" for h, k in zip(hooks, kinds)))
    for name, why in host.disabled.items():
        print(f"{name}: DISABLED, {why}")
    print(f"models: {', '.join(sorted(models.names))}")
    host.close()
    return 1 if host.disabled else 0


def cmd_osc(args: argparse.Namespace) -> int:
    import signal
    import threading

    from plugins.osc import OscBridge, OscSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        settings = OscSettings(host=args.host, port=args.port, session=args.session, reply_host=args.reply_host,
                               reply_port=args.reply_port, allow_remote=args.allow_remote)
    except ValueError as exc:
        print(f"longlive osc: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    try:
        bridge = OscBridge(args.control, settings).start()
    except OSError as exc:
        print(f"longlive osc: {exc.strerror}", file=sys.stderr)
        return 2
    host, port = bridge.address
    print(f"longlive osc: listening on udp {host}:{port}, steering {args.control}", flush=True)
    stop.wait()
    bridge.stop()
    return 0
