"""`longlive bench-protocol`: what the sockets cost, and how soon a prompt shows.

1. In-process: frames/s of `pipe.step` on one stream, measured before and after step 2.
2. Through the sockets: a daemon subprocess generating flat out (pacing lookahead huge),
   one Viewer in this process counting frames/s, raw and JPEG.
3. Event-to-frame latency with normal pacing (lookahead 1 block), at the model's frame rate
   and at half of it: for each prompt, the time from sending it to receiving its ack, and to
   the due (display) time of the first frame showing it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.client import Controller, Viewer

if TYPE_CHECKING:
    from runtime.pipeline import Pipeline

PROMPTS = ("a red ball rolls over green grass", "a blue cube slides on the snowy field")


def in_process_fps(pipe: Pipeline, blocks: int) -> float:
    stream = pipe.open_stream(pipe.encode_prompt(PROMPTS[0]), seed=0)
    for _ in range(2):  # warm-up
        pipe.step([stream])
    start = time.perf_counter()
    frames = sum(len(pipe.step([stream])[0]) for _ in range(blocks))
    elapsed = time.perf_counter() - start
    pipe.close_stream(stream)
    return frames / elapsed


class DaemonProcess:
    """`python -m runtime.daemon serve` on ipc endpoints in a temporary directory; `extra`: more
    serve arguments (e.g. `--plugin NAME --plugin-config FILE`); `log`: its stderr to `self.log`."""

    def __init__(self, model: str, lookahead: float, threads: int | None, session: str = "main",
                 extra: Sequence[str] = (), log: bool = False) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="longlive-bench-")
        self.log = Path(self.dir.name) / "serve.log"  # the daemon's stderr, when `log`
        self.control, self.stream = f"ipc://{self.dir.name}/control", f"ipc://{self.dir.name}/stream"
        with open(self.log, "wb") if log else contextlib.nullcontext() as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runtime.daemon", "serve", "--model", model, "--lookahead", str(lookahead),
                 "--control", self.control, "--stream", self.stream, "--hwm", "100000", "--session", session]
                + (["--threads", str(threads)] if threads else []) + list(extra),
                stdout=subprocess.DEVNULL, stderr=stderr, cwd=Path(__file__).resolve().parents[2])

    def __enter__(self) -> DaemonProcess:
        with Controller(self.control) as ctl:
            ctl.status(timeout=120)  # resends until the daemon is up and answers
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.dir.cleanup()


def socket_fps(model: str, blocks: int, encoding: str, threads: int | None) -> float:
    with DaemonProcess(model, lookahead=1e6, threads=threads) as daemon, Viewer(daemon.stream, encoding=encoding, acks=False,
                                                                status=False) as view:
        pictures = view.frames(timeout=30)
        first = next(pictures)  # the daemon is warm once frames flow
        start = time.perf_counter()
        for picture in pictures:
            if picture.frame.block - first.frame.block >= blocks:
                break
        assert view.missed == 0, f"the viewer missed {view.missed} frames"
        return (picture.frame.frame - first.frame.frame) / (time.perf_counter() - start)


def latencies(model: str, prompts: int, threads: int | None, fps: float | None) -> tuple[list[float], list[float], float]:
    """Per prompt: (send -> ack received, send -> due time of the first frame showing it) in
    ms, and the daemon's own mean event-to-frame latency, for a session playing at `fps`."""
    to_ack, to_frame = [], []
    with DaemonProcess(model, lookahead=1.0, threads=threads, session="") as daemon, \
            Controller(daemon.control) as ctl, \
            Viewer(daemon.stream, sessions=["bench"], acks=False, status=False) as view:
        ctl.open("bench", seed=0, prompt=PROMPTS[1], fps=fps).result()
        for i in range(prompts):
            next(view.frames(timeout=10))  # let the send time drift against the block phase
            sent = time.time()
            ack = ctl.send_prompt(PROMPTS[i % 2], session="bench").result()
            to_ack.append((time.time() - sent) * 1000)
            shown = next(p for p in view.frames(timeout=10) if p.frame.prompt_id == ack.event_id)
            assert shown.frame.frame == ack.frame
            to_frame.append((shown.frame.wall - sent) * 1000)
        status, = ctl.status("bench")
    return to_ack, to_frame, status.latency_mean_ms or 0.0


def _summary(values: list[float]) -> str:
    return f"mean {statistics.mean(values):.0f} ms, median {statistics.median(values):.0f} ms, max {max(values):.0f} ms"


def run_benchmarks(model: str, blocks: int, prompts: int, threads: int | None) -> None:
    import torch

    from runtime.pipeline import load_pipeline

    if threads:
        torch.set_num_threads(threads)
    pipe = load_pipeline(model, device="cpu")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}")
    print(f"model: {model} ({pipe.frame_shape[1]}x{pipe.frame_shape[0]}, {pipe.frames_per_block} frames/block, "
          f"{pipe.fps:g} fps); {blocks} blocks per throughput run; torch threads {threads or torch.get_num_threads()}")
    before = in_process_fps(pipe, blocks)
    through = {encoding: socket_fps(model, blocks, encoding, threads) for encoding in ("raw", "jpeg")}
    after = in_process_fps(pipe, blocks)  # measured again: the machine's load drifts
    base = (before + after) / 2
    print(f"in-process pipe.step:      {base:7.1f} frames/s (before {before:.1f}, after {after:.1f})")
    for encoding, fps in through.items():
        print(f"through sockets, {encoding:4}:    {fps:7.1f} frames/s ({fps / base:.0%} of in-process)")
    for fps in (None, pipe.fps / 2):
        to_ack, to_frame, daemon_mean = latencies(model, prompts, threads, fps)
        print(f"latency at {fps or pipe.fps:g} fps, {prompts} prompts (lookahead 1 block = {pipe.frames_per_block / (fps or pipe.fps) * 1000:.0f} ms):")
        print(f"  send -> ack received:      {_summary(to_ack)}")
        print(f"  send -> first frame due:   {_summary(to_frame)} (daemon's own mean: {daemon_mean:.0f} ms)")
