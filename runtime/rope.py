"""3-D rotary position embedding over (time, row, column), Wan2.1 layout.

A head of dimension d is split into d/2 complex pairs: the first ``d - 4*(d//6)`` channels
rotate with the frame position, the next ``2*(d//6)`` with the row, the last ``2*(d//6)`` with
the column. Pairs are interleaved: channels (2j, 2j+1) are the real and imaginary parts of
pair j (not the rotate-half layout).

Angles are computed in float64 (as the reference does) and the rotation is applied in
float32, then cast back. The reference applies it in float64; the difference is below bf16
resolution (docs/ARCHITECTURE.md, "Numerics").
"""

from __future__ import annotations

import torch
from torch import Tensor

THETA = 10000.0


def axis_channels(head_dim: int) -> tuple[int, int, int]:
    """Channels given to (time, height, width): 44/42/42 for head_dim 128."""
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def _inv_freq(n_channels: int) -> Tensor:
    """theta^(-2i/n) for i in [0, n/2), float64."""
    return THETA ** (-torch.arange(0, n_channels, 2, dtype=torch.float64) / n_channels)


class Rope3D:
    """Builds per-token rotation tables for a (frames, rows, cols) token grid."""

    def __init__(self, head_dim: int):
        t, h, w = axis_channels(head_dim)
        self.inv_freq = (_inv_freq(t), _inv_freq(h), _inv_freq(w))

    def table(self, frame_pos: Tensor, rows: int, cols: int, device: torch.device) -> Tensor:
        """Rotation table for tokens of frames at ``frame_pos`` ([B, F] integer positions).

        Returns [B, 1, F*rows*cols, d/2, 2] float32 holding (cos, sin); token order is
        frame-major, then row, then column, matching the patch embedding's flatten.
        """
        ft, fh, fw = (f.to(device) for f in self.inv_freq)
        B, F = frame_pos.shape
        at = frame_pos.to(device, torch.float64)[..., None] * ft  # [B, F, ct]
        ah = torch.arange(rows, device=device, dtype=torch.float64)[:, None] * fh  # [rows, ch]
        aw = torch.arange(cols, device=device, dtype=torch.float64)[:, None] * fw  # [cols, cw]
        angles = torch.cat(
            [
                at[:, :, None, None, :].expand(B, F, rows, cols, -1),
                ah[None, None, :, None, :].expand(B, F, rows, cols, -1),
                aw[None, None, None, :, :].expand(B, F, rows, cols, -1),
            ],
            dim=-1,
        ).reshape(B, 1, F * rows * cols, -1)
        return torch.stack([angles.cos(), angles.sin()], dim=-1).float()


def apply_rope(x: Tensor, table: Tensor) -> Tensor:
    """Rotate interleaved pairs of ``x`` [B, H, L, d] by ``table`` [B, 1, L, d/2, 2]."""
    pairs = x.float().unflatten(-1, (-1, 2))
    re, im = pairs[..., 0], pairs[..., 1]
    cos, sin = table[..., 0], table[..., 1]
    out = torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1)
    return out.flatten(-2).type_as(x)
