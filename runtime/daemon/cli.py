"""Command-line front ends: `serve` runs a daemon, `send` and `watch` are the smallest useful
controller and viewer. Registered on the main `longlive` parser by `add_parser`, and
runnable alone as `python -m runtime.daemon <command>`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from plugins.host import PluginError, PluginHost, read_config
from protocol import constants as C
from protocol.client import Controller, Picture, RemoteError, Viewer
from protocol.messages import Ack, Error, Heartbeat, Status
from protocol.security import CurveClient

if TYPE_CHECKING:
    from runtime.pipeline import Pipeline


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add serve, send, watch and bench-protocol; each sets `run(args) -> exit code`."""
    serve = subparsers.add_parser("serve", help="run the daemon (loopback by default)")
    serve.add_argument("--model", default="toy", help="model to serve (default: the embedded toy model)")
    serve.add_argument("--weights", default=None, help="weights file or folder, for models that load them")
    serve.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    serve.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    _endpoints(serve)
    serve.add_argument("--session", default=C.DEFAULT_SESSION, help="session opened at start ('' for none)")
    serve.add_argument("--prompt", default=None, help="prompt of the start-up session")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--lookahead", type=float, default=1.0, help="blocks generated ahead of the playback clock")
    serve.add_argument("--max-sessions", type=int, default=C.MAX_SESSIONS, help=f"open sessions, at most {C.MAX_SESSIONS}")
    serve.add_argument("--hwm", type=int, default=64, help="stream messages queued per viewer before dropping")
    serve.add_argument("--jpeg-quality", type=int, default=85)
    serve.add_argument("--curve-secret", type=Path, help="daemon certificate (.key_secret); enables CURVE")
    serve.add_argument("--curve-clients", type=Path, help="directory of allowed client public keys (*.key)")
    serve.add_argument("--curve-allow-any-client", action="store_true",
                       help="with --curve-secret and no --curve-clients: accept any client key (no authentication)")
    serve.add_argument("--plugin", action="append", default=[], metavar="NAME|MODULE|FILE.py",
                       help="load a plugin: a built-in (recorder, composer, osc, metrics), a module or a file "
                            "(repeatable; installed `longlive.plugins` entry points load by themselves)")
    serve.add_argument("--plugin-config", type=Path, metavar="FILE.toml",
                       help="plugin settings; its [plugins] enable = [...] list loads plugins too")
    serve.add_argument("--no-entry-points", action="store_true", help="do not load installed plugins")
    serve.add_argument("-v", "--verbose", action="store_true")
    serve.set_defaults(run=cmd_serve)

    send = subparsers.add_parser("send", help="send a prompt and print the frame it took effect at")
    send.add_argument("text")
    send.add_argument("--session", default=C.DEFAULT_SESSION)
    send.add_argument("--transition", choices=C.TRANSITIONS, default="recache")
    send.add_argument("--blend-blocks", type=int, default=None)
    send.add_argument("--at-frame", type=int, default=None)
    send.add_argument("--timeout", type=float, default=10.0)
    _endpoints(send)
    _curve_client(send)
    send.set_defaults(run=cmd_send)

    watch = subparsers.add_parser("watch", help="print frames, acks, errors and status as they arrive")
    watch.add_argument("--session", action="append", help="session to watch (repeatable; default: all)")
    watch.add_argument("--encoding", choices=C.ENCODINGS, default="raw")
    watch.add_argument("--save", type=Path, help="write every frame as DIR/<session>_<frame>.png")
    watch.add_argument("--count", type=int, default=None, help="stop after this many frames")
    watch.add_argument("--timeout", type=float, default=None, help="stop after this many seconds without a message")
    watch.add_argument("--heartbeats", action="store_true")
    _endpoints(watch)
    _curve_client(watch)
    watch.set_defaults(run=cmd_watch)

    bench = subparsers.add_parser("bench-protocol", help="measure protocol overhead and event-to-frame latency")
    bench.add_argument("--model", default="random-small")
    bench.add_argument("--blocks", type=int, default=40, help="blocks per throughput measurement")
    bench.add_argument("--prompts", type=int, default=20, help="prompts for the latency measurement")
    bench.add_argument("--threads", type=int, default=None, help="torch CPU threads, here and in the daemon")
    bench.set_defaults(run=cmd_bench)


def _endpoints(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--control", default=C.DEFAULT_CONTROL_ENDPOINT, help="control endpoint")
    parser.add_argument("--stream", default=C.DEFAULT_STREAM_ENDPOINT, help="stream endpoint")


def _curve_client(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--curve-server-key", type=Path, help="the daemon's public key file (.key)")
    parser.add_argument("--curve-secret", type=Path, help="this client's certificate (.key_secret)")


def _curve(args: argparse.Namespace) -> CurveClient | None:
    if args.curve_server_key is None:
        return None
    if args.curve_secret is None:
        raise SystemExit("--curve-server-key needs --curve-secret (this client's .key_secret file)")
    return CurveClient.from_files(args.curve_server_key, args.curve_secret)


def cmd_serve(args: argparse.Namespace) -> int:
    from runtime.daemon.daemon import Daemon, DaemonConfig
    from runtime.daemon.sockets import CurveServer, check_endpoints

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    curve = CurveServer(args.curve_secret, args.curve_clients, args.curve_allow_any_client) if args.curve_secret else None
    try:
        check_endpoints(args.control, args.stream, curve)  # before the slow model load
    except ValueError as exc:
        print(f"longlive serve: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        plugins = load_plugins(args.plugin, args.plugin_config, entry_points=not args.no_entry_points)
    except PluginError as exc:
        print(f"longlive serve: {exc}", file=sys.stderr)
        return 2
    try:
        pipe = load_model(args.model, args.weights, args.device, args.max_sessions, plugins)
    except (ValueError, OSError) as exc:  # unknown model, bad option, missing or corrupt weights
        print(f"longlive serve: cannot load model {args.model!r}: {exc}", file=sys.stderr)
        plugins.close()
        return 2
    defaults = DaemonConfig()
    config = DaemonConfig(
        control=args.control, stream=args.stream, default_session=args.session or None,
        default_prompt=args.prompt or defaults.default_prompt, seed=args.seed, lookahead_blocks=args.lookahead,
        max_sessions=args.max_sessions, hwm=args.hwm, jpeg_quality=args.jpeg_quality, curve=curve)
    daemon = Daemon(pipe, config, plugins=plugins)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _signum, _frame: daemon.stop())
    control, stream = daemon.endpoints
    print(f"longlive: serving {pipe.name} ({pipe.frame_shape[1]}x{pipe.frame_shape[0]} @ {pipe.fps:g} fps); "
          f"control {control}, stream {stream}", flush=True)
    print(f"longlive: plugins {', '.join(plugins.names)}"
          + "".join(f"; {name} DISABLED ({why})" for name, why in plugins.disabled.items()), flush=True)
    daemon.run()
    print("longlive: stopped", flush=True)
    return 0


def load_plugins(specs: list[str], config: Path | None, entry_points: bool = True) -> PluginHost:
    """The built-in models, installed entry points, the config's `enable` list, then ``specs``.
    A plugin that fails to load is logged and listed as disabled; a bad config file raises PluginError."""
    host = PluginHost(read_config(config))
    if entry_points:
        host.load_entry_points()
    host.enable_from_config()
    for spec in specs:
        host.load(spec)
    return host


def load_model(name: str, weights: str | None, device: str | None, max_sessions: int,
               plugins: PluginHost | None = None) -> Pipeline:
    """The named model (built-in or from a plugin) on ``device`` (default: cuda when available)."""
    import torch

    from runtime.pipeline import load_pipeline

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return load_pipeline(name, device=device, weights=weights, max_streams=max_sessions, plugins=plugins)


def cmd_send(args: argparse.Namespace) -> int:
    with Controller(args.control, curve=_curve(args)) as ctl:
        try:
            ack = ctl.send_prompt(args.text, session=args.session, transition=args.transition,
                                  blend_blocks=args.blend_blocks, at_frame=args.at_frame).result(args.timeout)
        except RemoteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except TimeoutError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if ack.status == "superseded":
        print(f"prompt {ack.event_id} was superseded by {ack.superseded_by} before it took effect")
    else:
        print(f"prompt {ack.event_id} takes effect at frame {ack.frame} of session {ack.session}")
    if ack.warning:  # taken only in part: say which words were set aside
        print(f"warning: {ack.warning}", file=sys.stderr)
    return 0


def describe(msg: object) -> str:
    """One line per received message, for people watching a terminal."""
    if isinstance(msg, Picture):
        f = msg.frame
        return (f"frame  {f.session} #{f.frame} block {f.block} t={f.t:.3f}s due in {f.wall - time.time():+.3f}s "
                f"prompt={f.prompt_id} {f.shape[1]}x{f.shape[0]} {f.encoding}")
    if isinstance(msg, Ack):
        where = f"frame {msg.frame}" if msg.frame is not None else "no frame"
        extra = f" by {msg.superseded_by}" if msg.status == "superseded" else ""
        return f"ack    {msg.event_type} {msg.event_id} {msg.status}{extra} -> {where}"
    if isinstance(msg, Error):
        return f"error  {msg.code} {msg.name} event={msg.event_id}: {msg.message}"
    if isinstance(msg, Status):
        latency = f"{msg.latency_ms:.0f}ms" if msg.latency_ms is not None else "-"
        return (f"status {msg.session} frame {msg.frame} fps {msg.fps_measured:.1f}/{msg.fps_target:g} latency {latency} "
                f"late {msg.frames_late} ahead {msg.lookahead_blocks} cache {msg.cache_fill:.0%} "
                f"{'paused ' if msg.paused else ''}prompt={msg.prompt_id}: {msg.prompt}")
    if isinstance(msg, Heartbeat):
        return f"beat   sessions={','.join(msg.sessions)}"
    return repr(msg)


def cmd_watch(args: argparse.Namespace) -> int:
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    frames = 0
    with Viewer(args.stream, sessions=args.session, encoding=args.encoding, heartbeats=args.heartbeats,
                curve=_curve(args)) as view:
        try:
            while (msg := view.recv(args.timeout)) is not None:
                print(describe(msg), flush=True)
                if isinstance(msg, Picture):
                    frames += 1
                    if args.save:
                        from PIL import Image

                        Image.fromarray(msg.image).save(args.save / f"{msg.frame.session}_{msg.frame.frame:06d}.png")
                    if args.count is not None and frames >= args.count:
                        break
        except KeyboardInterrupt:
            pass
        if view.missed:
            print(f"missed {view.missed} frames (gaps in frame indices)", flush=True)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from runtime.daemon.bench import run_benchmarks

    run_benchmarks(args.model, args.blocks, args.prompts, args.threads)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.daemon")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)
