"""The real LongLive 1.3B components: Wan2.1 VAE, UMT5-XXL text encoder, strict weight loading.

Entry point: ``load_longlive_components(weights_dir, device, dtype, lora="merged")``; the
folder layout is in ``runtime/wan/components.py`` and docs/REAL_MODEL.md.
"""

from runtime.wan.checkpoint import TensorFile
from runtime.wan.components import (LongLiveComponents, LongLiveConfig, LongLiveFiles, load_dit,
                                    load_longlive_components, load_t5, load_vae, save_merged_generator)
from runtime.wan.errors import CheckpointError
from runtime.wan.lora import LoRALinear
from runtime.wan.t5 import T5Config, T5Encoder, WanTextEncoder
from runtime.wan.tokenizer import UMT5Tokenizer
from runtime.wan.vae import StreamingDecoder, VAEConfig, WanVAE, pixel_frames, to_uint8

__all__ = [
    "CheckpointError", "LoRALinear", "LongLiveComponents", "LongLiveConfig", "LongLiveFiles",
    "StreamingDecoder", "T5Config", "T5Encoder", "TensorFile", "UMT5Tokenizer", "VAEConfig",
    "WanTextEncoder", "WanVAE", "load_dit", "load_longlive_components", "load_t5", "load_vae",
    "pixel_frames", "save_merged_generator", "to_uint8",
]
