"""Attention backend: PyTorch SDPA everywhere; flash-attn on CUDA when it is installed.

flash-attn takes [B, L, H, d] half-precision tensors and no arbitrary mask, so it is used only
for unmasked bf16/fp16 CUDA calls; everything else goes to SDPA, which picks its own fused
kernel on CPU and CUDA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

try:  # optional GPU extra
    from flash_attn import flash_attn_func
except ImportError:  # pragma: no cover - depends on the machine
    flash_attn_func = None


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """q [B, H, Lq, d], k/v [B, H, Lk, d], mask broadcastable to [B, H, Lq, Lk] (True = attend)."""
    if (flash_attn_func is not None and mask is None and q.is_cuda
            and q.dtype in (torch.bfloat16, torch.float16)):
        out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def backend_name(device: torch.device, dtype: torch.dtype) -> str:
    if flash_attn_func is not None and device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        return "flash-attn"
    return "sdpa"
