"""Per-stage wall-clock totals for benchmarks; off (a no-op) unless a clock is attached."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from typing import ContextManager, Iterator

import torch


class StageClock:
    """Accumulates seconds per named stage. On CUDA it synchronises around each stage, which
    costs overlap, so attach one only to measure."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        yield
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds[name] += time.perf_counter() - t0
        self.calls[name] += 1

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def stage(clock: StageClock | None, name: str) -> ContextManager[None]:
    return clock.stage(name) if clock is not None else nullcontext()
