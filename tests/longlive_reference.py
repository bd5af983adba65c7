"""A plain re-statement of LongLive's cache and loop (spec §2.2, §3.3, §3.5, §7), for tests.

It keeps one linear buffer per layer, clones it on every forward and rolls it as the official
code does, in frames instead of tokens. One documented deviation is switchable: when the sink
is larger than a block, the official code attends to still-zero sink slots during the first
blocks, and its sink guard keeps the noisy first-step K/V of sink frames generated after block
0. The engine masks unwritten slots and lets a block refine its own sink frames;
``fill_sink_by_blocks=True`` makes the reference do the same. With LongLive's numbers
(sink 3, blocks of 3) the two agree exactly. It shares only the model and the RoPE table builder
with the engine under test, so disagreement means the engine's ring buffer, its planning or
its transitions are wrong.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runtime.rope import Rope3D, apply_rope


class ReferenceCache:
    """LongLive's KV buffer: ``window`` frames, the first ``sink`` of them protected."""

    def __init__(self, layers: int, window: int, sink: int, grid: tuple[int, int], heads: int,
                 head_dim: int, relative: bool = False, fill_sink_by_blocks: bool = False):
        self.T = grid[0] * grid[1]
        self.grid = grid
        self.S, self.Z = window * self.T, sink * self.T
        self.k = [torch.zeros(1, heads, self.S, head_dim) for _ in range(layers)]
        self.v = [torch.zeros(1, heads, self.S, head_dim) for _ in range(layers)]
        self.G = self.P = 0  # global / local end, in tokens
        self.rope = Rope3D(head_dim)
        self.relative = relative
        self.fill_sink_by_blocks = fill_sink_by_blocks
        self.sink_written = 0  # sink tokens written before the current block

    def begin(self, start_frame: int, n_frames: int, sink_recache: bool = False) -> None:
        self.cs, self.n, self.sink_recache = start_frame * self.T, n_frames * self.T, sink_recache
        if self.cs >= self.G:  # first forward of a new block
            self.sink_written = min(self.Z, self.P)

    def _table(self, positions: list[int]) -> torch.Tensor:
        return self.rope.table(torch.tensor([positions]), *self.grid, torch.device("cpu"))

    def attend(self, layer: int, q, k, v):
        T, S, Z, G, P, n, cs = self.T, self.S, self.Z, self.G, self.P, self.n, self.cs
        ce = cs + n
        recompute = ce <= G and cs > 0
        guard = self.sink_written if self.fill_sink_by_blocks else Z
        buf_k, buf_v = self.k[layer].clone(), self.v[layer].clone()
        if ce > G and n + P > S:  # roll: evict the oldest non-sink frames
            evict = n + P - S
            rolled = P - evict - Z
            P2 = P + (ce - G) - evict
            for buf in (buf_k, buf_v):
                buf[:, :, Z:Z + rolled] = buf[:, :, Z + evict:Z + evict + rolled].clone()
            start = P2 - n
            w = max(start, guard) if recompute else start
        else:
            P2 = P + ce - G
            start = P2 - n
            w = max(start, guard) if recompute else start
            if self.sink_recache:
                w = start
        frames = n // T
        if self.relative:  # infinity: queries at their slot positions, keys stored un-rotated
            q = apply_rope(q, self._table([start // T + f for f in range(frames)]))
        else:
            table = self._table([cs // T + f for f in range(frames)])
            q, k = apply_rope(q, table), apply_rope(k, table)
        buf_k[:, :, w:P2] = k[:, :, w - start:]
        buf_v[:, :, w:P2] = v[:, :, w - start:]
        self.k[layer], self.v[layer] = buf_k, buf_v
        self._next = (recompute, ce, P2)
        keys = buf_k
        if self.relative:
            keys = buf_k.clone()
            keys[:, :, :P2] = apply_rope(buf_k[:, :, :P2], self._table(list(range(P2 // T))))
        if Z > 0:
            Zr = min(Z, P2) if self.fill_sink_by_blocks else Z
            sel = lambda b: torch.cat([b[:, :, :Zr], b[:, :, max(Z, P2 - (S - Z)):P2]], dim=2)  # noqa: E731
        else:
            sel = lambda b: b[:, :, max(0, P2 - S):P2]  # noqa: E731
        return F.scaled_dot_product_attention(q, sel(keys), sel(buf_v))

    def commit(self) -> None:
        recompute, ce, P2 = self._next
        if not recompute:
            self.G, self.P = ce, P2


@torch.no_grad()
def reference_stream(model, schedule, latent_shape, block: int, n_blocks: int, window: int, sink: int,
                     conds: dict[int, torch.Tensor], seed: int, global_sink: bool = True,
                     relative: bool = False) -> torch.Tensor:
    """Generate ``n_blocks`` blocks; ``conds[b]`` is the prompt switched to before block b
    (``conds[0]`` is the first prompt). Returns latents [C, n_blocks*block, H, W]."""
    C, H, W = latent_shape
    cfg = model.cfg
    grid = model.token_grid((H, W))
    cache = ReferenceCache(cfg.num_layers, window, sink, grid, cfg.num_heads, cfg.head_dim, relative,
                           fill_sink_by_blocks=sink > block)
    gen = torch.Generator().manual_seed(seed)
    text_kv = model.text_kv(conds[0][None])
    out: list[torch.Tensor] = []
    sigmas = schedule.step_sigmas

    def forward(x, t, start):
        cache.begin(start, x.shape[2])
        y = model(x, torch.full((1, x.shape[2]), t), text_kv, cache)
        cache.commit()
        return y

    for b in range(n_blocks):
        s = b * block
        if b > 0 and b in conds:  # prompt switch + KV-recache (§3.5)
            text_kv = model.text_kv(conds[b][None])
            if not global_sink:
                for i in range(cfg.num_layers):
                    cache.k[i].zero_()
                    cache.v[i].zero_()
            n = min(window, s)
            r = s - n
            frames = torch.cat(out, dim=1)[:, r:s][None]
            cache.begin(r, n, sink_recache=not global_sink)
            model(frames, torch.zeros(1, n), text_kv, cache)
            cache.commit()
        x = torch.randn((1, C, block, H, W), generator=gen)
        for k, t in enumerate(schedule.step_timesteps):
            v = forward(x, t, s)
            x0 = x - sigmas[k] * v
            if k + 1 < len(sigmas):
                noise = torch.randn(x0.shape, generator=gen)
                x = (1 - sigmas[k + 1]) * x0 + sigmas[k + 1] * noise
        forward(x0, 0.0, s)
        out.append(x0[0])
    return torch.cat(out, dim=1)
