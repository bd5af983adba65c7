"""``longlive bench``: steady-state throughput of a pipeline, per stage, against a naive baseline.

The baseline runs the same model and schedule with the cache handled as the official code
does: one linear buffer per layer, cloned and rolled on every forward, sink and window
gathered with a concatenation. Both run in the same process, one after the other, so the
ratio is meaningful even on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone

import torch
from torch import Tensor

from runtime.attention import attention, backend_name
from runtime.pipeline import Pipeline, load_pipeline
from runtime.profiling import StageClock
from runtime.rope import Rope3D, apply_rope


class RollingKVCache:
    """The official cache discipline (spec §2.2), for generation only.

    Absolute positions as LongLive v1.0; relative positions as its "infinity" variant (§7):
    keys stored un-rotated and the whole valid window re-rotated at slot positions on every
    forward.
    """

    def __init__(self, engine):
        cfg, mc = engine.cfg.cache, engine.model.cfg
        self.grid = engine.cache.grid
        self.T = self.grid[0] * self.grid[1]
        self.S, self.Z = cfg.window_frames * self.T, cfg.sink_frames * self.T
        self.relative = cfg.positions == "relative"
        shape = (1, mc.num_heads, self.S, mc.head_dim)
        self.k = [torch.zeros(shape, device=engine.device, dtype=engine.dtype) for _ in range(mc.num_layers)]
        self.v = [torch.zeros_like(b) for b in self.k]
        self.G = self.P = 0
        self.rope = Rope3D(mc.head_dim)
        self.device = engine.device

    def _table(self, first: int, frames: int) -> Tensor:
        return self.rope.table(torch.arange(first, first + frames)[None], *self.grid, self.device)

    def begin(self, start_frame: int, n_frames: int) -> None:
        self.cs, self.n = start_frame * self.T, n_frames * self.T
        ce = self.cs + self.n
        P2 = self.P + ce - self.G
        if ce > self.G and self.n + self.P > self.S:
            P2 -= self.n + self.P - self.S
        self.P2 = P2
        first = (P2 - self.n) // self.T if self.relative else start_frame  # slot or absolute position
        self.q_table = self._table(first, n_frames)
        self.key_table = self._table(0, P2 // self.T) if self.relative else None

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        S, Z, G, P, n, cs, P2 = self.S, self.Z, self.G, self.P, self.n, self.cs, self.P2
        ce = cs + n
        q = apply_rope(q, self.q_table)
        if not self.relative:
            k = apply_rope(k, self.q_table)
        buf_k, buf_v = self.k[layer].clone(), self.v[layer].clone()  # the per-forward full copy
        if ce > G and n + P > S:
            evict = n + P - S
            rolled = P - evict - Z
            for buf in (buf_k, buf_v):
                buf[:, :, Z:Z + rolled] = buf[:, :, Z + evict:Z + evict + rolled].clone()
        buf_k[:, :, P2 - n:P2], buf_v[:, :, P2 - n:P2] = k, v
        self.k[layer], self.v[layer] = buf_k, buf_v
        self.next = (ce, P2) if ce > G else (G, P)
        keys = apply_rope(buf_k[:, :, :P2], self.key_table) if self.relative else buf_k
        lo = max(Z, P2 - (S - Z))
        sel = lambda b: torch.cat([b[:, :, :Z], b[:, :, lo:P2]], dim=2)  # noqa: E731
        return attention(q, sel(keys), sel(buf_v))

    def commit(self) -> None:
        self.G, self.P = self.next


@torch.no_grad()
def naive_blocks(pipe: Pipeline, cond: Tensor, n_blocks: int, seed: int = 0) -> tuple[float, Tensor]:
    """Generate n_blocks with the rolling cache: (seconds, latents [C, frames, H, W]).

    Draws the same noise as an engine stream opened with ``seed``, so the latents must match.
    """
    engine = pipe.engine
    cache = RollingKVCache(engine)
    text_kv = engine.model.text_kv(cond[None].to(engine.device, engine.dtype))
    C, H, W = engine.cfg.latent_shape
    F = engine.cfg.frames_per_block
    sigmas = engine.schedule.step_sigmas
    gen = torch.Generator().manual_seed(seed)
    out = []

    def forward(x, t, s):
        cache.begin(s, F)
        out = engine.model(x, torch.full((1, F), t, device=engine.device), text_kv, cache)
        cache.commit()
        return out

    t0 = time.perf_counter()
    for b in range(n_blocks):
        x = torch.randn((1, C, F, H, W), generator=gen).to(engine.device, engine.dtype)
        for k, t in enumerate(engine.schedule.step_timesteps):
            x0 = (x.float() - sigmas[k] * forward(x, t, b * F).float()).to(engine.dtype)
            if k + 1 < len(sigmas):
                x = engine.schedule.renoise(x, x0, sigmas[k], sigmas[k + 1], gen)
        forward(x0, 0.0, b * F)
        out.append(x0[0])
    _sync(engine.device)
    return time.perf_counter() - t0, torch.cat(out, dim=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


@torch.no_grad()
def run(pipe: Pipeline, blocks: int, warmup: int, streams: int, baseline: bool) -> dict:
    engine = pipe.engine
    cond = pipe.encode_prompt(BENCH_PROMPTS[0])
    video = [pipe.open_stream(cond, seed=i) for i in range(streams)]
    for _ in range(warmup):
        pipe.step(video)
    engine.clock = clock = StageClock(engine.device)
    t0 = time.perf_counter()
    frames = 0
    for _ in range(blocks):
        frames += sum(len(f) for f in pipe.step(video))
    _sync(engine.device)
    elapsed = time.perf_counter() - t0
    steady = dict(clock.seconds)
    clock.reset()
    # one recache at steady state (window full)
    video[0].switch_prompt(pipe.encode_prompt(BENCH_PROMPTS[1]))
    pipe.step(video[:1])
    recache_s = clock.seconds["transitions"]
    engine.clock = None
    latent_frames = blocks * engine.cfg.frames_per_block * streams
    result = {
        "model": pipe.name, "device": str(engine.device), "dtype": str(engine.dtype).removeprefix("torch."),
        "attention": backend_name(engine.device, engine.dtype), "streams": streams, "blocks": blocks,
        "frame_shape": list(pipe.frame_shape),
        "latent_fps": latent_frames / elapsed, "output_fps": frames / elapsed,
        "block_ms": 1000 * elapsed / blocks,
        "stage_ms_per_block": {k: 1000 * v / blocks for k, v in steady.items()},
        "recache_ms": 1000 * recache_s,
        "machine": machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for v in video:
        pipe.close_stream(v)
    if baseline:
        naive_blocks(pipe, cond, warmup)
        naive_s, _ = naive_blocks(pipe, cond, blocks)
        result["baseline_naive_rolling_cache"] = {
            "latent_fps": blocks * engine.cfg.frames_per_block / naive_s,
            "block_ms": 1000 * naive_s / blocks,
        }
        if streams == 1:
            result["speedup_vs_baseline"] = result["latent_fps"] / result["baseline_naive_rolling_cache"]["latent_fps"]
    return result


# Sentences of the toy world's vocabulary, so every registered model can encode them.
BENCH_PROMPTS = ("A yellow ball rolls rightward over a sandy desert in clear weather",
                 "Grey thunderclouds over the desert sand; a magenta ball heads left, snow falling")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure steady-state frames/s per stage against a naive baseline")
    p.add_argument("--model", default="random-small")
    p.add_argument("--weights", default=None, help="weights folder (models that load weights)")
    p.add_argument("--random-weights", action="store_true", help="full-size model with random weights")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None)
    p.add_argument("--blocks", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--streams", type=int, default=1, help="streams advanced in one batched forward")
    p.add_argument("--positions", choices=["relative", "absolute"], default=None,
                   help="RoPE position mode (default: the model's)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-baseline", dest="baseline", action="store_false")
    p.add_argument("--json", default=None, help="write the result here")
    p.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {"random_weights": True} if args.random_weights else {}
    if args.positions:
        options["positions"] = args.positions
    pipe = load_pipeline(args.model, device=args.device, dtype=DTYPES.get(args.dtype), weights=args.weights,
                         max_streams=args.streams, **options)
    result = run(pipe, args.blocks, args.warmup, args.streams, args.baseline)
    result["command"] = "longlive " + " ".join(args.argv)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0
