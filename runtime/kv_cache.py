"""Self-attention KV cache: a fixed frame sink plus a ring buffer for the recent window.

Layout of one cache row (one stream), per layer, in frame slots of T tokens each::

    [ sink 0 .. Z-1 | ring Z .. Z+R-1 ]      Z = sink_frames, R = window_frames - sink_frames

Frame f of a stream goes to sink slot ``f - sink_origin`` while it belongs to the sink, else to
ring slot ``Z + f mod R``. Writes are in place; nothing is cloned or rolled. A forward over
frames [a, e) attends to the valid sink frames plus ring frames [max(ring_origin, e - R), e)
— the block's own frames included — which is LongLive's "sink + window" (spec §2.2). Softmax
is order-free, so the ring's rotation order needs no bookkeeping.

Positions:
- ``absolute``: keys are stored rotated at ``f - origin`` (LongLive v1.0; limited by the RoPE
  table, 1024 latent frames by default).
- ``relative``: attention sees the window as if it started at time 0 (spec §7, Infinity-RoPE).
  Only position *differences* enter q·k, so ring keys can stay rotated at absolute positions
  and only the sink — whose distance to the window changes each block — is kept un-rotated
  and rotated at read time to sit just before the window. Angles are float64, so positions
  never run out; the cost is rotating Z frames per layer instead of the whole window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from runtime.attention import attention
from runtime.rope import Rope3D, apply_rope

PositionMode = Literal["relative", "absolute"]


@dataclass(frozen=True)
class CacheConfig:
    sink_frames: int = 3
    window_frames: int = 12  # attention window in latent frames, sink included (LongLive: 12)
    positions: PositionMode = "relative"
    rope_max_frames: int = 1024  # absolute mode only: the RoPE table's length

    @property
    def ring_frames(self) -> int:
        return self.window_frames - self.sink_frames

    def validate(self, frames_per_block: int) -> None:
        if self.sink_frames < 0:
            raise ValueError(f"sink_frames must be >= 0, got {self.sink_frames}")
        if self.ring_frames < frames_per_block:
            raise ValueError(
                f"window_frames ({self.window_frames}) minus sink_frames ({self.sink_frames}) "
                f"must hold at least one block of {frames_per_block} frames")
        if self.positions not in ("relative", "absolute"):
            raise ValueError(f"positions must be 'relative' or 'absolute', got {self.positions!r}")


@dataclass
class RowLayout:
    """Where a stream's frames live in its cache row."""

    origin: int = 0  # frame at position 0: the stream start, or the frame of the last cut
    sink_origin: int = 0  # first frame of the sink (moves on a global_sink=false recache)


def row_slice(rows: list[int]) -> slice | None:
    """``rows`` as a slice when they are consecutive (so buffers can be read as views), else None."""
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return slice(rows[0], rows[0] + len(rows))
    return None


@dataclass
class ForwardPlan:
    """Everything a forward over frames [start, start+F) of some rows needs; shared by all layers."""

    rows: list[int]
    row_slice: slice | None  # the rows as a slice when contiguous (reads become views)
    write_tokens: list[Tensor]  # per row: token indices of the new frames in the row
    rope: Tensor  # [B, 1, F*T, d/2, 2] for the new queries and keys
    mask: Tensor | None  # [B, 1, 1, S*T] bool, None when every slot of every row is valid
    sink_writes: list[tuple[Tensor, Tensor] | None]  # relative mode: (new-token idx, sink-token idx)
    sink_rope: Tensor | None  # relative mode: [B, 1, Z*T, d/2, 2]
    sink_current: set[int] = field(default_factory=set)  # layers whose buffer holds this plan's rotated sink


class KVCache:
    """Static per-layer K/V buffers for up to ``max_rows`` streams. Implements SelfAttentionCache."""

    def __init__(self, cfg: CacheConfig, num_layers: int, max_rows: int, grid: tuple[int, int],
                 num_heads: int, head_dim: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.cfg = cfg
        self.grid = grid
        self.tokens_per_frame = grid[0] * grid[1]
        self.rope = Rope3D(head_dim)
        self.device = torch.device(device)
        slots = cfg.window_frames * self.tokens_per_frame
        # [L, B, S*T, H, d]: token-major like the reference. Attention reads [B, H, S*T, d]
        # transposed views, which SDPA's CPU kernel handles faster than head-major storage.
        shape = (num_layers, max_rows, slots, num_heads, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.sink_raw = None
        if cfg.positions == "relative" and cfg.sink_frames:
            sink_shape = (num_layers, max_rows, cfg.sink_frames * self.tokens_per_frame, num_heads, head_dim)
            self.sink_raw = torch.zeros(sink_shape, device=device, dtype=dtype)
        self.plan: ForwardPlan | None = None

    # -- planning: pure index arithmetic, once per forward (or once per block) --------------

    def prepare(self, rows: list[int], layouts: list[RowLayout], starts: list[int], n_frames: int) -> ForwardPlan:
        """Plan a forward over frames [starts[i], starts[i] + n_frames) of each row."""
        cfg, T = self.cfg, self.tokens_per_frame
        Z, R = cfg.sink_frames, cfg.ring_frames
        tok = torch.arange(T)
        write_tokens, q_pos, valid, sink_writes, sink_pos = [], [], [], [], []
        for layout, start in zip(layouts, starts):
            end = start + n_frames
            ring_origin = layout.sink_origin + Z
            first_ring = max(ring_origin, end - R)
            frames = range(start, end)
            if start < layout.sink_origin or end - max(start, ring_origin) > R:
                raise ValueError(f"frames [{start}, {end}) do not fit the cache (sink origin "
                                 f"{layout.sink_origin}, ring of {R} frames)")
            slots = [f - layout.sink_origin if f < ring_origin else Z + f % R for f in frames]
            write_tokens.append((torch.tensor(slots)[:, None] * T + tok).flatten().to(self.device))
            positions = [f - layout.origin for f in frames]
            if cfg.positions == "absolute" and positions[-1] >= cfg.rope_max_frames:
                raise ValueError(
                    f"absolute positions are limited to {cfg.rope_max_frames} latent frames since the "
                    f"last cut (frame {positions[-1]} requested); use positions='relative' for endless streams")
            q_pos.append(positions)
            row_valid = torch.zeros(cfg.window_frames, dtype=torch.bool)
            row_valid[: max(0, min(Z, end - layout.sink_origin))] = True
            for f in range(first_ring, end):
                row_valid[Z + f % R] = True
            valid.append(row_valid)
            if self.sink_raw is not None:
                in_sink = [i for i, f in enumerate(frames) if f < ring_origin]
                sink_writes.append(None if not in_sink else (
                    (torch.tensor(in_sink)[:, None] * T + tok).flatten().to(self.device),
                    (torch.tensor([slots[i] for i in in_sink])[:, None] * T + tok).flatten().to(self.device)))
                # the sink sits immediately before the window's first ring frame
                sink_pos.append([first_ring - Z + i - layout.origin for i in range(Z)])
        H, W = self.grid
        valid_t = torch.stack(valid)
        mask = None
        if not bool(valid_t.all()):
            mask = valid_t.repeat_interleave(T, dim=1)[:, None, None, :].to(self.device)
        plan = ForwardPlan(
            rows=rows,
            row_slice=row_slice(rows),
            write_tokens=write_tokens,
            rope=self.rope.table(torch.tensor(q_pos), H, W, self.device),
            mask=mask,
            sink_writes=sink_writes,
            sink_rope=self.rope.table(torch.tensor(sink_pos), H, W, self.device) if self.sink_raw is not None else None,
        )
        self.plan = plan
        return plan

    # -- the attention step, called by every self-attention layer ---------------------------

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """q, k, v [B, H, F*T, d] of the planned frames -> attention over sink + window."""
        p = self.plan
        q = apply_rope(q, p.rope)
        k_rot = apply_rope(k, p.rope)
        K_all, V_all = self.k[layer], self.v[layer]  # [B_max, S*T, H, d]
        for b, row in enumerate(p.rows):
            K_all[row].index_copy_(0, p.write_tokens[b], k_rot[b].transpose(0, 1))
            V_all[row].index_copy_(0, p.write_tokens[b], v[b].transpose(0, 1))
            if p.sink_writes and p.sink_writes[b] is not None:
                src, dst = p.sink_writes[b]
                self.sink_raw[layer, row].index_copy_(0, dst, k[b].index_select(1, src).transpose(0, 1))
        K, V = self._rows(K_all, p), self._rows(V_all, p)
        if p.sink_rope is not None and layer not in p.sink_current:
            # re-place the sink just before this plan's window (relative positions); the
            # rotation holds for every forward of the plan unless they write sink frames
            sink = self._rows(self.sink_raw[layer], p).transpose(1, 2)
            K[:, : sink.shape[2]] = apply_rope(sink, p.sink_rope).transpose(1, 2)
            if p.row_slice is not None and not any(w is not None for w in p.sink_writes):
                p.sink_current.add(layer)
        return attention(q, K.transpose(1, 2), V.transpose(1, 2), p.mask)

    @staticmethod
    def _rows(buf: Tensor, p: ForwardPlan) -> Tensor:
        """The plan's rows of ``buf``: a view when they are contiguous, else a gathered copy."""
        if p.row_slice is not None:
            return buf[p.row_slice]
        return buf.index_select(0, torch.tensor(p.rows, device=buf.device))
