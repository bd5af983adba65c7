"""The UMT5-XXL text encoder that conditions Wan2.1, at any size.

Written from longlive_spec.md §5.2 (reference: Wan2.1 ``wan/modules/t5.py``, encoder only).
Attribute names equal the keys of ``models_t5_umt5-xxl-enc-bf16.pth`` (``token_embedding``,
``blocks.i.attn.q``, ``blocks.i.ffn.gate.0``, ``blocks.i.pos_embedding.embedding``, ``norm``).

T5 particulars kept on purpose: RMS-only layer norm without bias, no 1/sqrt(d) attention
scaling, a learned relative-position bias per layer (32 log-spaced buckets, bidirectional),
and a gated GELU-tanh FFN. The op-by-op rounding follows the reference in bf16 (§0.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from runtime.wan.tokenizer import UMT5Tokenizer


@dataclass(frozen=True)
class T5Config:
    vocab: int = 256384
    dim: int = 4096  # model width (the DiT's text_dim)
    dim_attn: int = 4096  # num_heads * head_dim
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32  # relative-position buckets, half per direction
    max_dist: int = 128  # distance at which the log-spaced buckets saturate
    eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.dim_attn // self.num_heads

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "T5Config":
        try:
            base = T5_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown T5 preset {name!r}; known: {sorted(T5_PRESETS)}") from None
        return replace(base, **overrides)

    def __post_init__(self) -> None:
        if self.dim_attn % self.num_heads:
            raise ValueError(f"dim_attn {self.dim_attn} is not divisible by num_heads {self.num_heads}")


T5_PRESETS: dict[str, T5Config] = {
    "umt5-xxl": T5Config(),
    "tiny": T5Config(vocab=64, dim=32, dim_attn=32, dim_ffn=48, num_heads=4, num_layers=2),
}


class GELUTanh(nn.Module):
    """The reference's explicit tanh-GELU, evaluated op by op in the input dtype.

    ``F.gelu(approximate='tanh')`` rounds once at the end instead; in bf16 that differs.
    """

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class T5LayerNorm(nn.Module):
    """x * rsqrt(mean(x^2)) with the statistic in float32; no mean subtraction, no bias."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.type_as(self.weight)
        return self.weight * x


def relative_position_buckets(length: int, num_buckets: int, max_dist: int,
                              device: torch.device | str | None = None) -> Tensor:
    """[L, L] bucket index of (key - query) for bidirectional T5 attention.

    Half the buckets per direction; within a direction, distances < half/2 get exact
    buckets and larger ones log-spaced buckets up to ``max_dist``.
    """
    rel = torch.arange(length, device=device)[None, :] - torch.arange(length, device=device)[:, None]
    half = num_buckets // 2
    buckets = (rel > 0).long() * half
    rel = rel.abs()
    exact = half // 2
    # log(0) never reaches the result (torch.where picks the exact branch), but keep it finite
    large = exact + (torch.log(rel.clamp(min=1).float() / exact) / math.log(max_dist / exact)
                     * (half - exact)).long()
    large = large.clamp(max=half - 1)
    return buckets + torch.where(rel < exact, rel, large)


class T5RelativeEmbedding(nn.Module):
    def __init__(self, num_buckets: int, num_heads: int, max_dist: int):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_dist = max_dist
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, buckets: Tensor) -> Tensor:
        # buckets [L, L] -> bias [1, heads, L, L]
        return self.embedding(buckets).permute(2, 0, 1).unsqueeze(0)


class T5Attention(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.q = nn.Linear(cfg.dim, cfg.dim_attn, bias=False)
        self.k = nn.Linear(cfg.dim, cfg.dim_attn, bias=False)
        self.v = nn.Linear(cfg.dim, cfg.dim_attn, bias=False)
        self.o = nn.Linear(cfg.dim_attn, cfg.dim, bias=False)

    def forward(self, x: Tensor, mask: Tensor | None, pos_bias: Tensor) -> Tensor:
        # x [B, L, dim]; mask [B, L] (1 = token, 0 = padding); pos_bias [1, H, L, L]
        b, n = x.shape[0], self.num_heads
        heads = lambda t: t.unflatten(-1, (n, -1)).transpose(1, 2)  # noqa: E731  [B, H, L, d]
        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        bias = x.new_zeros(b, n, q.shape[2], k.shape[2]) + pos_bias
        if mask is not None:
            bias = bias.masked_fill(mask.view(b, 1, 1, -1) == 0, torch.finfo(x.dtype).min)
        logits = q @ k.transpose(-1, -2) + bias  # T5 does not scale by 1/sqrt(d)
        attn = F.softmax(logits.float(), dim=-1).type_as(logits)
        return self.o((attn @ v).transpose(1, 2).flatten(2))


class T5FeedForward(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(cfg.dim, cfg.dim_ffn, bias=False), GELUTanh())
        self.fc1 = nn.Linear(cfg.dim, cfg.dim_ffn, bias=False)
        self.fc2 = nn.Linear(cfg.dim_ffn, cfg.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.fc1(x) * self.gate(x))


class T5Block(nn.Module):
    """One encoder layer with its own relative-position table (UMT5: ``shared_pos=False``)."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.norm1 = T5LayerNorm(cfg.dim, cfg.eps)
        self.attn = T5Attention(cfg)
        self.norm2 = T5LayerNorm(cfg.dim, cfg.eps)
        self.ffn = T5FeedForward(cfg)
        self.pos_embedding = T5RelativeEmbedding(cfg.num_buckets, cfg.num_heads, cfg.max_dist)

    def forward(self, x: Tensor, mask: Tensor | None, buckets: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), mask, self.pos_embedding(buckets))
        return x + self.ffn(self.norm2(x))  # the reference's fp16 clamp is a no-op in bf16/fp32


class T5Encoder(nn.Module):
    """Token ids [B, L] (+ mask [B, L]) -> hidden states [B, L, dim]."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab, cfg.dim)
        self.blocks = nn.ModuleList(T5Block(cfg) for _ in range(cfg.num_layers))
        self.norm = T5LayerNorm(cfg.dim, cfg.eps)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.token_embedding(ids)
        buckets = relative_position_buckets(ids.shape[1], self.cfg.num_buckets, self.cfg.max_dist,
                                            ids.device)
        for block in self.blocks:
            x = block(x, mask, buckets)
        return self.norm(x)


class WanTextEncoder:
    """Prompts -> DiT conditioning [B, seq_len, dim]: tokenizer + T5, padding rows zeroed.

    The reference zeroes the rows past each prompt's length (EOS included) after the
    encoder; the DiT's text embedding then sees exact zeros there (spec §5.2, §10.7).
    """

    def __init__(self, tokenizer: "UMT5Tokenizer", model: T5Encoder):
        self.tokenizer = tokenizer
        self.model = model

    @property
    def device(self) -> torch.device:
        return self.model.token_embedding.weight.device

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> Tensor:
        if isinstance(prompts, str):
            prompts = [prompts]
        ids, mask = self.tokenizer(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        x = self.model(ids, mask)  # [B, L, dim]
        lengths = mask.sum(dim=1)  # real tokens, EOS included
        pad = torch.arange(x.shape[1], device=x.device)[None, :] >= lengths[:, None]  # [B, L]
        return x.masked_fill(pad[..., None], 0.0)

    __call__ = encode

