"""``random-small``: a small pixel-space model with random weights.

It exercises every real component (text encoding, batched engine, decoding) at a size that runs
fast on a laptop CPU, so the daemon, protocol and benchmarks can be tested before trained
weights exist. Its pictures are noise-like, not meaningful.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import torch
from torch import Tensor

from runtime.dit import CausalWanModel, DiTConfig
from runtime.kv_cache import CacheConfig
from runtime.pipeline import Pipeline, PromptError
from runtime.schedule import FlowSchedule, ScheduleConfig
from runtime.stream import Engine, EngineConfig

SMALL = DiTConfig(dim=192, ffn_dim=768, num_heads=6, num_layers=4, in_dim=3, out_dim=3,
                  text_dim=64, text_len=24, freq_dim=64, patch_size=(1, 8, 8))
FRAME = (64, 64)


class HashTextEncoder:
    """Each word maps to a fixed pseudo-random vector seeded by its CRC32; unused slots are zero."""

    def __init__(self, text_len: int, text_dim: int):
        self.text_len, self.text_dim = text_len, text_dim

    def __call__(self, text: str) -> Tensor:
        words = re.findall(r"[\w']+", text.lower())
        if not words:
            raise PromptError(f"the prompt {text!r} has no words")
        if len(words) > self.text_len:
            raise PromptError(f"the prompt has {len(words)} words; this model reads at most {self.text_len}")
        out = torch.zeros(self.text_len, self.text_dim)
        for i, w in enumerate(words):
            g = torch.Generator().manual_seed(zlib.crc32(w.encode()))
            out[i] = torch.randn(self.text_dim, generator=g)
        return out


class PixelDecoder:
    """Pixel-space latents in [-1, 1] -> uint8 RGB frames. Stateless."""

    def decode(self, latents: Tensor) -> np.ndarray:
        # [3, F, H, W] -> [F, H, W, 3]
        rgb = ((latents.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return rgb.permute(1, 2, 3, 0).contiguous().cpu().numpy()


def build(device: torch.device, dtype: torch.dtype | None, weights: str | None, max_streams: int,
          seed: int = 0, positions: str = "relative") -> Pipeline:
    if weights is not None:
        raise ValueError("random-small has no weights to load; it is built from a seed")
    torch.manual_seed(seed)
    model = CausalWanModel(SMALL).eval().to(device, dtype or torch.float32)
    engine = Engine(model, FlowSchedule(ScheduleConfig()),
                    EngineConfig(latent_shape=(3, *FRAME), cache=CacheConfig(positions=positions)),
                    max_streams=max_streams)
    return Pipeline("random-small", engine, HashTextEncoder(SMALL.text_len, SMALL.text_dim),
                    PixelDecoder, fps=16.0, frame_shape=FRAME, frames_per_block=3)
