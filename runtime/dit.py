"""The causal Wan2.1 DiT used by LongLive, at any size.

Reads like the architecture: patch embedding -> text / time embeddings -> N blocks of
(adaLN-modulated self-attention with RMS qk-norm and 3-D RoPE, cross-attention to text,
adaLN-modulated GELU-tanh FFN) -> modulated head -> unpatchify. Module names equal the
official checkpoint keys (longlive_spec.md §1.2), so official state dicts load key for key.

Self-attention does not own its keys: each forward receives a ``SelfAttentionCache`` that
rotates, stores and gathers K/V (runtime/kv_cache.py). That is what lets one model serve
the ring-buffer engine, the naive baseline in the benchmark, and the reference in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import Tensor, nn

from runtime.attention import attention


@dataclass(frozen=True)
class DiTConfig:
    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 16  # latent channels in
    out_dim: int = 16  # latent channels out
    text_dim: int = 4096  # width of the text encoder's tokens
    text_len: int = 512  # text tokens per prompt (padded)
    freq_dim: int = 256  # sinusoidal timestep embedding width
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (frames, rows, cols)
    eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @classmethod
    def preset(cls, name: str, **overrides) -> "DiTConfig":
        try:
            base = PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown DiT preset {name!r}; known: {sorted(PRESETS)}") from None
        return replace(base, **overrides)

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")


PRESETS: dict[str, DiTConfig] = {
    "wan-1.3b": DiTConfig(),
    # Pixel-space test model: 3 channels, 8x8 patches -> 64 tokens per 64x64 frame.
    "tiny": DiTConfig(dim=64, ffn_dim=128, num_heads=4, num_layers=2, in_dim=3, out_dim=3,
                      text_dim=32, text_len=8, freq_dim=32, patch_size=(1, 8, 8)),
}


class SelfAttentionCache(Protocol):
    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """q, k, v: [B, H, L, d] for the frames of this forward -> attention output [B, H, L, d]."""


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """[N] timesteps -> [N, dim]: cosines first, then sines, computed in float64."""
    half = dim // 2
    omega = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = t.to(torch.float64)[:, None] * omega
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class RMSNorm(nn.Module):
    """Normalises in float32, casts back, then scales (WanRMSNorm)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class Attention(nn.Module):
    """q/k/v/o projections with RMS qk-norm over all channels, before the split into heads."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(cfg.dim, cfg.dim) for _ in range(4))
        self.norm_q = RMSNorm(cfg.dim, cfg.eps)
        self.norm_k = RMSNorm(cfg.dim, cfg.eps)

    def heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # [B, L, dim] -> [B, H, L, d]

    def merge(self, x: Tensor) -> Tensor:
        return self.o(x.transpose(1, 2).flatten(2))  # [B, H, L, d] -> [B, L, dim]


class SelfAttention(Attention):
    def forward(self, x: Tensor, layer: int, cache: SelfAttentionCache) -> Tensor:
        q = self.heads(self.norm_q(self.q(x)))
        k = self.heads(self.norm_k(self.k(x)))
        return self.merge(cache.attend(layer, q, k, self.heads(self.v(x))))


class CrossAttention(Attention):
    """Attention from video tokens to the prompt's text tokens; K/V are computed once per prompt."""

    def text_kv(self, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """ctx [B, Lt, dim] (already text-embedded) -> K, V [B, H, Lt, d]."""
        return self.heads(self.norm_k(self.k(ctx))), self.heads(self.v(ctx))

    def forward(self, x: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return self.merge(attention(self.heads(self.norm_q(self.q(x))), k, v))


class Block(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(cfg)
        self.norm3 = nn.LayerNorm(cfg.dim, cfg.eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.ffn_dim, cfg.dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: Tensor, e0: Tensor, text_kv: tuple[Tensor, Tensor], layer: int,
                cache: SelfAttentionCache) -> Tensor:
        # x: [B, F, T, dim] (T tokens per frame); e0: [B, F, 6, dim], one modulation per frame
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation + e0).unsqueeze(2).unbind(3)
        flat = lambda t: t.flatten(1, 2)  # noqa: E731  [B, F*T, dim]
        a = self.norm1(x) * (1 + scale1) + shift1
        x = x + self.self_attn(flat(a), layer, cache).view_as(x) * gate1
        x = x + self.cross_attn(flat(self.norm3(x)), *text_kv).view_as(x)
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + self.ffn(h) * gate2


class Head(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, math.prod(cfg.patch_size) * cfg.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        # x: [B, F, T, dim]; e: [B, F, dim] -- the head uses the time embedding, not e0
        shift, scale = (self.modulation + e.unsqueeze(2)).unsqueeze(2).unbind(3)
        return self.head(self.norm(x) * (1 + scale) + shift)


class CausalWanModel(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embedding = nn.Conv3d(cfg.in_dim, cfg.dim, kernel_size=cfg.patch_size,
                                         stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, cfg.dim),
                                            nn.GELU(approximate="tanh"), nn.Linear(cfg.dim, cfg.dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(),
                                            nn.Linear(cfg.dim, cfg.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, 6 * cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)

    def token_grid(self, frame_shape: tuple[int, int]) -> tuple[int, int]:
        """(rows, cols) of tokens for a latent frame of (height, width)."""
        _, ph, pw = self.cfg.patch_size
        h, w = frame_shape
        if h % ph or w % pw:
            raise ValueError(f"latent frame {h}x{w} is not divisible by the patch {ph}x{pw}")
        return h // ph, w // pw

    def text_kv(self, context: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per-layer cross-attention K/V for a prompt: context [B, text_len, text_dim]."""
        ctx = self.text_embedding(context)
        return [blk.cross_attn.text_kv(ctx) for blk in self.blocks]

    def forward(self, x: Tensor, t: Tensor, text_kv: list[tuple[Tensor, Tensor]],
                cache: SelfAttentionCache) -> Tensor:
        """x [B, C, F, H, W] noisy latents, t [B, F] timesteps -> flow prediction, same shape as x."""
        cfg = self.cfg
        B, _, n_frames, H, W = x.shape
        pt, ph, pw = cfg.patch_size
        x = self.patch_embedding(x)  # [B, dim, F/pt, H/ph, W/pw]
        Fp, rows, cols = x.shape[2:]
        x = x.flatten(3).transpose(1, 2).transpose(2, 3)  # [B, F, T, dim]
        e = self.time_embedding(sinusoidal_embedding(t.flatten(), cfg.freq_dim).to(x.dtype))
        e0 = self.time_projection(e).view(B, Fp, 6, cfg.dim)
        for i, block in enumerate(self.blocks):
            x = block(x, e0, text_kv[i], i, cache)
        x = self.head(x, e.view(B, Fp, cfg.dim))  # [B, F, T, pt*ph*pw*C]
        return unpatchify(x, (rows, cols), cfg.patch_size, cfg.out_dim)


def unpatchify(x: Tensor, grid: tuple[int, int], patch: tuple[int, int, int], channels: int) -> Tensor:
    """[B, F, rows*cols, pt*ph*pw*C] -> [B, C, F*pt, rows*ph, cols*pw].

    Channel (p*ph*pw + q*pw + r)*C + c of token (f, h, w) goes to (c, f*pt+p, h*ph+q, w*pw+r).
    """
    B, Fp = x.shape[:2]
    (rows, cols), (pt, ph, pw) = grid, patch
    x = x.reshape(B, Fp, rows, cols, pt, ph, pw, channels)
    x = torch.einsum("bfhwpqrc->bcfphqwr", x)
    return x.reshape(B, channels, Fp * pt, rows * ph, cols * pw)
