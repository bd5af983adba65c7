"""`longlive bench-protocol`: what the sockets cost, and how soon a prompt shows.

1. In-process: frames/s of `pipe.step` on one stream, nothing else running.
2. Through the sockets: a daemon subprocess generating flat out (pacing lookahead huge),
   one Viewer in this process counting frames/s, raw and JPEG.
3. Event-to-frame latency with normal pacing: for each prompt, the time from sending it to
   receiving its ack, and to the due (display) time of the first frame showing it.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from protocol.client import Controller, Picture, Viewer

PROMPTS = ("a red ball rolls over green grass", "a blue cube slides on the snowy field")


def in_process_fps(model: str, blocks: int) -> float:
    from runtime.pipeline import load_pipeline

    pipe = load_pipeline(model, device="cpu")
    stream = pipe.open_stream(pipe.encode_prompt(PROMPTS[0]), seed=0)
    for _ in range(2):  # warm-up
        pipe.step([stream])
    start = time.perf_counter()
    frames = sum(len(pipe.step([stream])[0]) for _ in range(blocks))
    return frames / (time.perf_counter() - start)


class DaemonProcess:
    """`python -m runtime.daemon serve` on ipc endpoints in a temporary directory."""

    def __init__(self, model: str, lookahead: float) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="longlive-bench-")
        self.control, self.stream = f"ipc://{self.dir.name}/control", f"ipc://{self.dir.name}/stream"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.daemon", "serve", "--model", model, "--lookahead", str(lookahead),
             "--control", self.control, "--stream", self.stream, "--hwm", "100000"],
            stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2])

    def __enter__(self) -> DaemonProcess:
        with Controller(self.control, self.stream) as ctl:
            ctl.status(timeout=120)  # resends until the daemon is up and answers
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.dir.cleanup()


def socket_fps(model: str, blocks: int, encoding: str) -> float:
    with DaemonProcess(model, lookahead=1e6) as daemon, Viewer(daemon.stream, encoding=encoding, acks=False,
                                                                status=False) as view:
        pictures = view.frames(timeout=30)
        first = next(pictures)  # the daemon is warm once frames flow
        start = time.perf_counter()
        for picture in pictures:
            if picture.frame.block - first.frame.block >= blocks:
                break
        assert view.missed == 0, f"the viewer missed {view.missed} frames"
        return (picture.frame.frame - first.frame.frame) / (time.perf_counter() - start)


def latencies(model: str, prompts: int) -> tuple[list[float], list[float]]:
    """(send -> ack received, send -> due time of the first frame showing it), in ms."""
    to_ack, to_frame = [], []
    with DaemonProcess(model, lookahead=1.0) as daemon, Controller(daemon.control, daemon.stream) as ctl, \
            Viewer(daemon.stream, acks=False, status=False) as view:
        for i in range(prompts):
            sent = time.time()
            ack = ctl.send_prompt(PROMPTS[i % 2])
            to_ack.append((time.time() - sent) * 1000)
            while True:
                msg = view.recv(timeout=10)
                assert isinstance(msg, Picture), "the stream stopped"
                if msg.frame.prompt_id == ack.event_id:
                    assert msg.frame.frame == ack.frame
                    to_frame.append((msg.frame.wall - sent) * 1000)
                    break
    return to_ack, to_frame


def _summary(values: list[float]) -> str:
    return f"mean {statistics.mean(values):.0f} ms, median {statistics.median(values):.0f} ms, max {max(values):.0f} ms"


def run_benchmarks(model: str, blocks: int, prompts: int) -> None:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"model: {model}; {blocks} blocks per throughput run; {prompts} prompts")
    base = in_process_fps(model, blocks)
    print(f"in-process pipe.step:          {base:8.1f} frames/s")
    for encoding in ("raw", "jpeg"):
        fps = socket_fps(model, blocks, encoding)
        print(f"through sockets ({encoding:4}):        {fps:8.1f} frames/s ({fps / base:.0%} of in-process)")
    to_ack, to_frame = latencies(model, prompts)
    print(f"send -> ack received:          {_summary(to_ack)}")
    print(f"send -> first frame due:       {_summary(to_frame)}")
