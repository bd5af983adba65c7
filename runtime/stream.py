"""The block loop: streams of latent blocks on one model, batched, with prompt transitions.

An ``Engine`` owns a model, its schedule and one static KV cache with a row per stream. A
``Stream`` is a handle to one endless video: ``next_block()`` denoises the next block of
latent frames; ``switch_prompt()`` queues a transition applied at the next block boundary.
``Engine.step(streams)`` advances several streams in one batched forward.

Per block (spec §3.3): for each step t_k the model predicts the flow, x0 = x - sigma_k * v,
and the sample is re-noised to sigma_{k+1}; then a context forward at t = 0 over the clean
x0 overwrites the block's K/V with clean ones.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
from torch import Tensor

from runtime.dit import CausalWanModel
from runtime.kv_cache import CacheConfig, KVCache, RowLayout, row_slice
from runtime.profiling import StageClock, stage
from runtime.schedule import FlowSchedule

Transition = Literal["recache", "cut", "none"]
TRANSITIONS: tuple[str, ...] = ("recache", "cut", "none")


@dataclass(frozen=True)
class EngineConfig:
    latent_shape: tuple[int, int, int]  # (channels, height, width) of one latent frame
    frames_per_block: int = 3
    cache: CacheConfig = field(default_factory=CacheConfig)
    global_sink: bool = True  # recache keeps the first prompt's sink (LongLive's interactive default)


@dataclass
class _Pending:
    cond: Tensor
    transition: Transition
    global_sink: bool


class Stream:
    """One endless latent video. Create with ``Engine.open``."""

    def __init__(self, engine: "Engine", row: int, cond: Tensor, seed: int):
        self.engine = engine
        self.row = row
        self.frame = 0  # latent frames generated so far
        self.layout = RowLayout()
        self.cond = cond
        self.history: deque[Tensor] = deque(maxlen=engine.cfg.cache.window_frames)  # clean latents
        self.generator = torch.Generator("cpu")
        self.set_seed(seed)
        self._pending: _Pending | None = None
        self._blend: list[Tensor] = []  # conditionings for the coming blocks of a blend
        self.closed = False

    def set_seed(self, seed: int) -> None:
        """Noise for every later block comes from this seed."""
        self.seed = seed
        self.generator.manual_seed(seed)

    def next_block(self) -> Tensor:
        """Denoise the next block: latents [C, frames_per_block, H, W]."""
        return self.engine.step([self])[0]

    def switch_prompt(self, cond: Tensor, transition: Transition = "recache",
                      global_sink: bool | None = None) -> None:
        """Switch to ``cond`` at the next block boundary.

        recache: re-encode the last window of latents under the new prompt (LongLive);
        cut: reset the cache, a new shot; none: swap the conditioning only.
        """
        if transition not in TRANSITIONS:
            raise ValueError(f"unknown transition {transition!r}; expected one of {TRANSITIONS}")
        self.engine.check_cond(cond)
        self._blend = []
        gs = self.engine.cfg.global_sink if global_sink is None else global_sink
        self._pending = _Pending(cond, transition, gs)

    def blend_to(self, cond: Tensor, blocks: int) -> None:
        """Interpolate the conditioning from the current prompt to ``cond`` over ``blocks`` blocks."""
        if blocks < 1:
            raise ValueError(f"a blend needs at least 1 block, got {blocks}")
        self.engine.check_cond(cond)
        start = self.cond
        self._pending = None
        self._blend = [torch.lerp(start, cond, (i + 1) / blocks) for i in range(blocks)]

    def _apply_pending(self) -> None:
        if self._blend:
            self.engine._set_cond(self, self._blend.pop(0))
        if self._pending is None:
            return
        p, self._pending = self._pending, None
        self.engine._set_cond(self, p.cond)
        if p.transition == "cut":
            self.layout = RowLayout(origin=self.frame, sink_origin=self.frame)
            self.history.clear()
        elif p.transition == "recache":
            self.engine._recache(self, p.global_sink)


class Engine:
    def __init__(self, model: CausalWanModel, schedule: FlowSchedule, cfg: EngineConfig,
                 max_streams: int = 1):
        cfg.cache.validate(cfg.frames_per_block)
        self.model = model
        self.schedule = schedule
        self.cfg = cfg
        self.max_streams = max_streams
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        mc = model.cfg
        if cfg.latent_shape[0] != mc.in_dim:
            raise ValueError(f"latent has {cfg.latent_shape[0]} channels but the model takes {mc.in_dim}")
        grid = model.token_grid(cfg.latent_shape[1:])
        self.cache = KVCache(cfg.cache, mc.num_layers, max_streams, grid, mc.num_heads, mc.head_dim,
                             self.device, self.dtype)
        kv_shape = (mc.num_layers, max_streams, mc.text_len, mc.num_heads, mc.head_dim)  # token-major, as the cache
        self.text_k = torch.zeros(kv_shape, device=self.device, dtype=self.dtype)
        self.text_v = torch.zeros(kv_shape, device=self.device, dtype=self.dtype)
        self.streams: dict[int, Stream] = {}
        self.clock: StageClock | None = None  # attach one to time the stages (benchmarks)

    # -- stream lifecycle ------------------------------------------------------------------

    def open(self, cond: Tensor, seed: int = 0) -> Stream:
        """Start a stream conditioned on ``cond`` [text_len, text_dim]."""
        free = [r for r in range(self.max_streams) if r not in self.streams]
        if not free:
            raise RuntimeError(f"all {self.max_streams} stream slots are in use; close one first")
        self.check_cond(cond)
        stream = Stream(self, free[0], cond, seed)
        self.streams[stream.row] = stream
        self._set_cond(stream, cond)
        return stream

    def close(self, stream: Stream) -> None:
        self.streams.pop(stream.row, None)
        stream.closed = True

    def check_cond(self, cond: Tensor) -> None:
        want = (self.model.cfg.text_len, self.model.cfg.text_dim)
        if tuple(cond.shape) != want:
            raise ValueError(f"conditioning must have shape {want}, got {tuple(cond.shape)}")

    # -- generation ------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, streams: Sequence[Stream], context: Sequence[Tensor | None] | None = None) -> list[Tensor]:
        """Advance each stream by one block in one batched pass; returns latents per stream.

        ``context[i]``, where given, is the clean block [C, F, H, W] the cache keeps for stream i
        instead of the one just generated (teacher forcing: measure how the model continues known
        frames, separately from how it continues its own).
        """
        if not streams:
            return []
        if any(s.closed or self.streams.get(s.row) is not s for s in streams):
            raise ValueError("step() got a closed stream or one from another engine")
        if context is not None and len(context) != len(streams):
            raise ValueError(f"step() got {len(context)} context blocks for {len(streams)} streams")
        order = sorted(range(len(streams)), key=lambda i: streams[i].row)
        batch = [streams[i] for i in order]
        with stage(self.clock, "transitions"):
            for s in batch:
                s._apply_pending()
        F = self.cfg.frames_per_block
        rows = [s.row for s in batch]
        self.cache.prepare(rows, [s.layout for s in batch], [s.frame for s in batch], F)
        text_kv = self._text_kv(rows)
        with stage(self.clock, "denoise"):
            x = self._noise(batch)
            sigmas = self.schedule.step_sigmas
            for k, t in enumerate(self.schedule.step_timesteps):
                v = self.model(x, self._timesteps(len(batch), t), text_kv, self.cache)
                x0 = (x.float() - sigmas[k] * v.float()).to(self.dtype)
                if k + 1 < len(sigmas):
                    x = torch.cat([self.schedule.renoise(x[i:i + 1], x0[i:i + 1], sigmas[k], sigmas[k + 1],
                                                         s.generator) for i, s in enumerate(batch)])
        clean = x0 if context is None else torch.stack(
            [x0[j] if context[i] is None else self._given_block(context[i]) for j, i in enumerate(order)])
        with stage(self.clock, "context"):
            self.model(clean, self._timesteps(len(batch), 0.0), text_kv, self.cache)  # clean K/V for the cache
        for i, s in enumerate(batch):
            s.frame += F
            s.history.extend(clean[i].unbind(1))
        out = [None] * len(streams)
        for j, i in enumerate(order):
            out[i] = x0[j]
        return out

    def _given_block(self, block: Tensor) -> Tensor:
        want = (self.cfg.latent_shape[0], self.cfg.frames_per_block, *self.cfg.latent_shape[1:])
        if tuple(block.shape) != want:
            raise ValueError(f"a context block must have shape {want}, got {tuple(block.shape)}")
        return block.to(self.device, self.dtype)

    def _noise(self, batch: list[Stream]) -> Tensor:
        C, H, W = self.cfg.latent_shape
        shape = (1, C, self.cfg.frames_per_block, H, W)
        return torch.cat([torch.randn(shape, generator=s.generator) for s in batch]).to(self.device, self.dtype)

    def _timesteps(self, batch: int, t: float) -> Tensor:
        return torch.full((batch, self.cfg.frames_per_block), t, device=self.device, dtype=torch.float32)

    def _text_kv(self, rows: list[int]) -> list[tuple[Tensor, Tensor]]:
        """Per-layer cross-attention K/V of these rows as [B, H, Lt, d] views (copies if scattered)."""
        sl = row_slice(rows)
        if sl is not None:
            k, v = self.text_k[:, sl], self.text_v[:, sl]
        else:
            idx = torch.tensor(rows, device=self.device)
            k, v = self.text_k.index_select(1, idx), self.text_v.index_select(1, idx)
        return list(zip(k.transpose(2, 3).unbind(0), v.transpose(2, 3).unbind(0)))

    @torch.no_grad()
    def _set_cond(self, stream: Stream, cond: Tensor) -> None:
        """Compute the prompt's cross-attention K/V once; every step and block reuses them."""
        stream.cond = cond
        for i, (k, v) in enumerate(self.model.text_kv(cond[None].to(self.device, self.dtype))):
            self.text_k[i, stream.row] = k[0].transpose(0, 1)
            self.text_v[i, stream.row] = v[0].transpose(0, 1)

    @torch.no_grad()
    def _recache(self, stream: Stream, global_sink: bool) -> None:
        """Re-encode the recent window under the new prompt (spec §3.5).

        With global_sink the sink keeps its old K/V once the stream is past the first window;
        the recached frames that would land in the sink are discarded, so they are not run.
        Without it, the oldest recached frames become the new sink.
        """
        cache_cfg = self.cfg.cache
        s = stream.frame
        n = min(cache_cfg.window_frames, s - stream.layout.origin, len(stream.history))
        if n == 0:
            return
        r = s - n
        if global_sink and r > stream.layout.origin:
            first = max(stream.layout.sink_origin + cache_cfg.sink_frames, s - cache_cfg.ring_frames)
        else:
            if not global_sink:
                stream.layout.sink_origin = r
            first = max(r, stream.layout.sink_origin)
        frames = torch.stack(list(stream.history)[len(stream.history) - (s - first):], dim=1)
        self.cache.prepare([stream.row], [stream.layout], [first], s - first)
        t = torch.zeros(1, s - first, device=self.device)
        self.model(frames[None], t, self._text_kv([stream.row]), self.cache)
