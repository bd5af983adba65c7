"""``longlive-1.3b``: the paper's model as a Pipeline (DiT + UMT5 text encoder + streaming VAE).

``--weights DIR`` loads the official files (docs/REAL_MODEL.md). ``random_weights=True``
builds the same shapes with random values instead, for throughput measurements without the
download; it then encodes prompts with a hashed embedding instead of the 5.7 B-parameter
UMT5 (text encoding runs once per prompt, outside the per-block loop being measured).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from runtime.dit import CausalWanModel
from runtime.kv_cache import CacheConfig
from runtime.pipeline import Pipeline, PromptError
from runtime.random_model import HashTextEncoder
from runtime.schedule import FlowSchedule, ScheduleConfig
from runtime.stream import Engine, EngineConfig
from runtime.wan.components import LongLiveConfig, load_longlive_components
from runtime.wan.t5 import WanTextEncoder
from runtime.wan.vae import StreamingDecoder, WanVAE, to_uint8

LATENT = (16, 60, 104)  # channels, height, width: 480x832 pixels
FPS = 16.0


class UMT5Prompts:
    """Prompt -> [512, 4096] conditioning; refuses prompts the tokenizer would truncate."""

    def __init__(self, encoder: WanTextEncoder):
        self.encoder = encoder

    def __call__(self, text: str) -> Tensor:
        _, mask = self.encoder.tokenizer([text])
        if bool(mask[0, -1]):
            raise PromptError(f"the prompt is too long: at most {mask.shape[1] - 1} tokens fit")
        return self.encoder([text])[0]


class VAEFrames:
    """One stream's streaming VAE decode: latents [16, F, h, w] -> uint8 [n, 8h, 8w, 3]."""

    def __init__(self, vae: WanVAE):
        self.decoder = StreamingDecoder(vae)

    def decode(self, latents: Tensor) -> np.ndarray:
        return to_uint8(self.decoder.decode(latents[None]))[0].cpu().numpy()


def build(device: torch.device, dtype: torch.dtype | None, weights: str | None, max_streams: int,
          random_weights: bool = False, lora: str = "merged", positions: str = "relative",
          preset: str = "longlive-1.3b", latent_size: tuple[int, int] = LATENT[1:]) -> Pipeline:
    """``preset``/``latent_size`` exist so tests can run this exact path with tiny checkpoints."""
    dtype = dtype or torch.bfloat16
    cfg = LongLiveConfig.preset(preset)
    latent = (cfg.dit.in_dim, *latent_size)
    if random_weights:
        if weights is not None:
            raise ValueError("give either --weights DIR or --random-weights, not both")
        with torch.device(device):
            dit = CausalWanModel(cfg.dit).to(dtype).eval()
            vae = WanVAE(cfg.vae, with_encoder=False).to(dtype).eval()
        text = HashTextEncoder(cfg.dit.text_len, cfg.dit.text_dim)
    elif weights is None:
        raise ValueError("longlive-1.3b needs --weights DIR (the official files, docs/REAL_MODEL.md) "
                         "or --random-weights for benchmarks")
    else:
        parts = load_longlive_components(weights, device, dtype, lora=lora, config=cfg)
        dit, vae, text = parts.dit.eval(), parts.vae.eval(), UMT5Prompts(parts.text_encoder)
    engine = Engine(dit, FlowSchedule(ScheduleConfig()),
                    EngineConfig(latent_shape=latent, frames_per_block=3,
                                 cache=CacheConfig(sink_frames=3, window_frames=12, positions=positions)),
                    max_streams=max_streams)
    return Pipeline("longlive-1.3b", engine, text, lambda: VAEFrames(vae), fps=FPS,
                    frame_shape=(8 * latent[1], 8 * latent[2]), frames_per_block=12)
