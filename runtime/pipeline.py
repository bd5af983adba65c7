"""A model ready to stream frames: text encoder -> engine -> frame decoder.

``load_pipeline(name)`` builds one from the model registry. The daemon, the benchmark and a
game embedding the engine in-process all go through this object::

    pipe = load_pipeline("toy")
    stream = pipe.open_stream(pipe.encode_prompt("a red ball rolls over the grass"), seed=0)
    frames = pipe.step([stream])[0]            # uint8 [n, H, W, 3]
    stream.switch_prompt(pipe.encode_prompt("night falls; snow covers the ground"))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

from plugins.host import PluginHost
from runtime.profiling import stage
from runtime.stream import Engine, Stream, Transition


class PromptError(ValueError):
    """The prompt cannot be encoded (empty, too long, unknown words, ...); the message says why."""


class TextEncoder(Protocol):
    def __call__(self, text: str) -> Tensor:
        """Prompt -> conditioning [text_len, text_dim]; raises PromptError on a bad prompt."""


class FrameDecoder(Protocol):
    def decode(self, latents: Tensor) -> np.ndarray:
        """One block of latents [C, F, H, W] -> RGB uint8 [n, H', W', 3]. May keep state between blocks."""


class VideoStream:
    """A latent ``Stream`` plus its decoder state and its count of emitted RGB frames."""

    def __init__(self, latent: Stream, decoder: FrameDecoder):
        self.latent = latent
        self.decoder = decoder
        self.frame_index = 0  # RGB frames emitted so far: the index of the next frame

    def switch_prompt(self, cond: Tensor, transition: Transition = "recache",
                      global_sink: bool | None = None) -> None:
        self.latent.switch_prompt(cond, transition, global_sink)

    def blend_to(self, cond: Tensor, blocks: int) -> None:
        self.latent.blend_to(cond, blocks)

    def set_seed(self, seed: int) -> None:
        self.latent.set_seed(seed)


@dataclass
class Pipeline:
    name: str
    engine: Engine
    text_encoder: TextEncoder
    make_decoder: Callable[[], FrameDecoder]
    fps: float  # playback rate of the decoded frames
    frame_shape: tuple[int, int]  # (H, W) of the decoded frames
    frames_per_block: int  # decoded frames per block in steady state
    # What the encoder reads past in a prompt it takes (the toy's unknown words), in words for the author
    lint: Callable[[str], str | None] = lambda text: None

    def encode_prompt(self, text: str) -> Tensor:
        """Serving: the conditioning for `text`; PromptError only for a prompt the model cannot take at all."""
        if not isinstance(text, str) or not text.strip():
            raise PromptError("the prompt is empty")
        return self.text_encoder(text)

    def check_prompt(self, text: str) -> None:
        """The author's lint (story checks, plugins): PromptError if `encode_prompt` refuses `text`
        or would read past part of it."""
        self.encode_prompt(text)
        if (warning := self.lint(text)) is not None:
            raise PromptError(warning)

    def open_stream(self, cond: Tensor, seed: int = 0) -> VideoStream:
        return VideoStream(self.engine.open(cond, seed), self.make_decoder())

    def close_stream(self, stream: VideoStream) -> None:
        self.engine.close(stream.latent)

    def step(self, streams: Sequence[VideoStream]) -> list[np.ndarray]:
        """One block for every stream, in one batched forward; decoded RGB frames per stream."""
        latents = self.engine.step([s.latent for s in streams])
        return [self.decode(s, lat) for s, lat in zip(streams, latents)]

    def decode(self, stream: VideoStream, latent: torch.Tensor) -> np.ndarray:
        """The RGB frames of one stream's new block, which advance its frame index. Separate from
        `step` so a server can decode per stream and charge a decoder failure to its stream alone."""
        with stage(self.engine.clock, "decode"):
            frames = stream.decoder.decode(latent)
        stream.frame_index += len(frames)
        return frames


Builder = Callable[..., Pipeline]


class ModelRegistry:
    """Model name -> builder. Filled by the plugins' ``register_models`` hook (the built-in
    models register the same way, from ``runtime/models.py``), so this module names no model."""

    def __init__(self) -> None:
        self._builders: dict[str, Builder] = {}

    def add(self, name: str, builder: Builder) -> None:
        """``builder(device=, dtype=, weights=, max_streams=, **options)`` returns a Pipeline."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a model name must be a non-empty string, not {name!r}")
        self._builders[name] = builder

    @property
    def names(self) -> list[str]:
        return sorted(self._builders)

    def build(self, name: str, **kwargs) -> Pipeline:
        try:
            builder = self._builders[name]
        except KeyError:
            raise ValueError(f"unknown model {name!r}; available: {self.names}") from None
        return builder(**kwargs)


def model_registry(plugins: PluginHost | None = None) -> ModelRegistry:
    """Every model the plugins register (with no host: the built-ins and installed entry points)."""
    if plugins is None:
        plugins = PluginHost()
        plugins.load_entry_points()
    registry = ModelRegistry()
    plugins.register_models(registry)
    return registry


def load_pipeline(name: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                  weights: str | None = None, max_streams: int = 4, *, plugins: PluginHost | None = None,
                  **options) -> Pipeline:
    return model_registry(plugins).build(name, device=torch.device(device), dtype=dtype, weights=weights,
                                         max_streams=max_streams, **options)
