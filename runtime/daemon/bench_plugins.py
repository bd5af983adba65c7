"""`longlive bench-plugins`: what each built-in plugin costs a daemon, against a baseline
measured in the same run.

One invocation starts `python -m runtime.daemon serve` (generating flat out: a huge
lookahead) with no plugin, then with each plugin in turn, then with no plugin again; the
baseline is the mean of the two plugin-less runs, because the machine's load drifts during
the run. For each configuration: frames/s a Viewer receives over `--frames` frames after a
warm-up, the ratio to the baseline, the daemon's peak resident memory over that window
(sampled from /proc), and the observer notes the plugin host dropped (a plugin too slow for
the frame rate loses notes rather than slowing generation, so a ratio near 1 means little
if notes were dropped). The daemon's status must list the plugin, so a plugin that failed
to load (and was disabled) cannot pass for a cheap one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

from plugins.host import BUILTINS
from protocol.client import Controller, Viewer
from runtime.daemon.bench import DaemonProcess
from runtime.daemon.soak import rss_mib

RSS_EVERY_S = 0.2  # how often the daemon's resident memory is sampled while frames flow


def plugin_config(name: str, workdir: Path) -> str:
    """The `--plugin-config` TOML that runs `name` headless: free ports, files in `workdir`."""
    if name == "recorder":
        return f"[recorder]\ndir = {json.dumps(str(workdir / 'recordings'))}\n"
    if name in ("metrics", "osc"):
        return f"[{name}]\nport = 0\n"
    return ""  # composer: the default scene


@dataclass
class Run:
    """One configuration's figures."""

    name: str  # "baseline" or the plugin
    fps: float
    rss_peak_mib: float
    observations_dropped: int
    plugins: list[str]  # what the daemon's status said was active


def measure(name: str, model: str, threads: int | None, warmup: int, frames: int, workdir: Path) -> Run:
    """Start a daemon (with plugin `name`, or none for "baseline"), skip `warmup` frames, time
    the next `frames`, then ask its status."""
    extra = ["--no-entry-points"]  # installed plugins would load in every configuration
    if name != "baseline":
        config = workdir / f"{name}.toml"
        config.write_text(plugin_config(name, workdir))
        extra += ["--plugin", name, "--plugin-config", str(config)]
    daemon = DaemonProcess(model, lookahead=1e6, threads=threads, extra=extra, log=True)
    with contextlib.ExitStack() as stack:
        stack.callback(daemon.__exit__, None, None, None)  # stop it even if it never answered
        try:
            daemon.__enter__()
            fps, peak = _timed(daemon, warmup, frames)
            with Controller(daemon.control) as ctl:
                status = ctl.status("main", timeout=30)[0]
        except (TimeoutError, RuntimeError) as exc:
            log = daemon.log.read_text(errors="replace")[-2000:] if daemon.log.exists() else ""
            raise RuntimeError(f"{name}: {exc}; the daemon's log ends:\n{log}") from None
    if name != "baseline" and name not in status.plugins:
        raise RuntimeError(f"{name}: the daemon did not load the plugin (active: {', '.join(status.plugins)}); "
                           f"see `longlive plugins --plugin {name}`")
    return Run(name, fps, peak, status.observations_dropped, list(status.plugins))


def _timed(daemon: DaemonProcess, warmup: int, frames: int) -> tuple[float, float]:
    """Frames/s over `frames` frames after skipping `warmup`, and the daemon's peak RSS (MiB) meanwhile."""
    with Viewer(daemon.stream, acks=False, status=False) as view:
        pictures = view.frames(timeout=30)
        for skipped, first in enumerate(pictures):
            if skipped >= warmup:
                break
        else:
            raise RuntimeError("no frames during the warm-up")
        start = sampled = time.perf_counter()
        peak = rss_mib(daemon.proc.pid)
        for picture in pictures:
            if (now := time.perf_counter()) - sampled >= RSS_EVERY_S:
                peak, sampled = max(peak, rss_mib(daemon.proc.pid)), now
            if picture.frame.frame - first.frame.frame >= frames:
                break
        else:
            raise RuntimeError("frames stopped for 30 s")
        elapsed = time.perf_counter() - start
        peak = max(peak, rss_mib(daemon.proc.pid))
        if view.missed:
            raise RuntimeError(f"the viewer missed {view.missed} frames")
    return (picture.frame.frame - first.frame.frame) / elapsed, peak


def _line(run: Run) -> str:
    return (f"{run.name:10} {run.fps:7.1f} frames/s  peak RSS {run.rss_peak_mib:5.0f} MiB  "
            f"notes dropped {run.observations_dropped}")


def run_bench(args: argparse.Namespace) -> dict:
    """Baseline, each plugin, baseline again; prints a line per configuration as it is measured,
    then the ratios; returns the JSON."""
    torch = version("torch")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"torch {torch}; model {args.model}, torch threads {args.threads or 'default'}, "
          f"{args.frames} frames after {args.warmup} per configuration", flush=True)
    with tempfile.TemporaryDirectory(prefix="longlive-bench-plugins-") as tmp:
        runs = []
        for name in ["baseline", *(args.plugin or BUILTINS), "baseline"]:
            runs.append(measure(name, args.model, args.threads, args.warmup, args.frames, Path(tmp)))
            print(_line(runs[-1]), flush=True)
    before, *runs, after = runs
    baseline = (before.fps + after.fps) / 2
    print(f"baseline {baseline:.1f} frames/s (mean of the first and last); plugin/baseline: "
          + ", ".join(f"{run.name} {run.fps / baseline:.1%}" for run in runs))
    return {
        "command": "longlive " + " ".join(args.argv or []),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"arch": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch},
        "model": args.model, "threads": args.threads, "frames": args.frames, "warmup": args.warmup,
        "baseline": {"fps": baseline, "fps_before": before.fps, "fps_after": after.fps,
                     "rss_peak_mib": max(before.rss_peak_mib, after.rss_peak_mib),
                     "rss_peak_mib_before": before.rss_peak_mib, "rss_peak_mib_after": after.rss_peak_mib},
        "plugins": {run.name: {**asdict(run), "ratio": run.fps / baseline} for run in runs},
    }


def cmd_bench_plugins(args: argparse.Namespace) -> int:
    if args.frames < 1 or args.warmup < 0:
        print("longlive bench-plugins: --frames must be at least 1 and --warmup at least 0", file=sys.stderr)
        return 2
    result = run_bench(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench-plugins", help="frames/s and memory of the daemon with each built-in plugin, "
                                                        "against no plugin in the same run")
    bench.add_argument("--model", default="random-small")
    bench.add_argument("--threads", type=int, default=None, help="torch CPU threads in the daemon")
    bench.add_argument("--frames", type=int, default=960, help="frames timed per configuration")
    bench.add_argument("--warmup", type=int, default=24, help="frames skipped before timing")
    bench.add_argument("--plugin", action="append", choices=sorted(BUILTINS),
                       help="plugin to measure (repeatable; default: every built-in)")
    bench.add_argument("--json", type=Path, help="write the figures here")
    bench.set_defaults(run=cmd_bench_plugins)
