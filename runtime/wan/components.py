"""Loads the LongLive 1.3B model family from a local folder in the official layout (spec §4).

    WEIGHTS_DIR/
      wan_models/Wan2.1-T2V-1.3B/
        config.json                          DiT hyper-parameters (checked against the preset)
        models_t5_umt5-xxl-enc-bf16.pth      UMT5-XXL encoder state dict
        google/umt5-xxl/tokenizer.json       (+ its config files)
        Wan2.1_VAE.pth                       full VAE state dict (encoder verified, not kept)
        diffusion_pytorch_model.safetensors  Wan base DiT: not read, longlive_base.pt replaces it
      longlive_models/models/
        longlive_base.pt                     {"generator": {"model.<key>": tensor, ...}}
        lora.pt                              {"generator_lora": {"base_model.model.<key>.lora_A.weight", ...}}

That is the working-directory layout of the LongLive repository, so a LongLive checkout with
its weights downloaded is a valid ``WEIGHTS_DIR``. Nothing is fetched.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file
from torch import Tensor

from runtime.dit import CausalWanModel, DiTConfig
from runtime.wan.checkpoint import TensorFile, expected_shapes, materialize, read_json
from runtime.wan.errors import CheckpointError
from runtime.wan.lora import (LORA_ALPHA, LORA_RANK, expected_lora_shapes, lora_key, lora_targets,
                              merged_weight, wrap_unmerged)
from runtime.wan.t5 import T5Config, T5Encoder, WanTextEncoder
from runtime.wan.tokenizer import UMT5Tokenizer
from runtime.wan.vae import StreamingDecoder, VAEConfig, WanVAE

LoRAMode = Literal["merged", "unmerged", "none"]


@dataclass(frozen=True)
class LongLiveFiles:
    """Where each file of a weights folder is (the layout in this module's docstring)."""

    root: Path
    wan: Path = field(init=False)
    config: Path = field(init=False)
    t5: Path = field(init=False)
    tokenizer: Path = field(init=False)
    vae: Path = field(init=False)
    base: Path = field(init=False)
    lora: Path = field(init=False)

    def __post_init__(self) -> None:
        wan = self.root / "wan_models" / "Wan2.1-T2V-1.3B"
        ll = self.root / "longlive_models" / "models"
        for name, path in [("wan", wan), ("config", wan / "config.json"),
                           ("t5", wan / "models_t5_umt5-xxl-enc-bf16.pth"),
                           ("tokenizer", wan / "google" / "umt5-xxl"), ("vae", wan / "Wan2.1_VAE.pth"),
                           ("base", ll / "longlive_base.pt"), ("lora", ll / "lora.pt")]:
            object.__setattr__(self, name, path)

    def require(self, *paths: Path) -> None:
        """One error listing every missing file, before anything heavy is read."""
        missing = [p for p in paths if not p.exists()]
        if missing:
            rest = "".join(f"\n  also missing: {p}" for p in missing[1:])
            raise CheckpointError(missing[0], f"missing file (see docs/REAL_MODEL.md for the folder "
                                  f"layout under {self.root}){rest}")


@dataclass(frozen=True)
class LongLiveConfig:
    """Sizes of the three networks and the LoRA: one typed object, passed explicitly."""

    dit: DiTConfig
    t5: T5Config
    vae: VAEConfig
    lora_rank: int = LORA_RANK
    lora_alpha: int = LORA_ALPHA

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "LongLiveConfig":
        try:
            base = LONGLIVE_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown model preset {name!r}; known: {sorted(LONGLIVE_PRESETS)}") from None
        return replace(base, **overrides)


LONGLIVE_PRESETS: dict[str, LongLiveConfig] = {
    "longlive-1.3b": LongLiveConfig(DiTConfig.preset("wan-1.3b"), T5Config.preset("umt5-xxl"),
                                    VAEConfig.preset("wan2.1")),
    # Every file format and name of the real model at toy sizes: loader tests only.
    "tiny": LongLiveConfig(DiTConfig.preset("tiny", in_dim=16, out_dim=16, patch_size=(1, 2, 2)),
                           T5Config.preset("tiny"), VAEConfig.preset("tiny"), lora_rank=4, lora_alpha=8),
}

# config.json field -> DiTConfig field (the HF file of Wan2.1-T2V-1.3B, spec §1.1)
_CONFIG_FIELDS = {"dim": "dim", "ffn_dim": "ffn_dim", "num_heads": "num_heads", "num_layers": "num_layers",
                  "in_dim": "in_dim", "out_dim": "out_dim", "text_len": "text_len", "freq_dim": "freq_dim",
                  "eps": "eps", "text_dim": "text_dim", "patch_size": "patch_size"}


def check_dit_config(path: Path, cfg: DiTConfig) -> None:
    """The folder's config.json must describe the DiT we are about to build."""
    data = read_json(path)
    for key, attr in _CONFIG_FIELDS.items():
        if key not in data:
            if key in ("text_dim", "patch_size"):  # constructor defaults, absent from the HF file
                continue
            raise CheckpointError(path, f"missing; expected {getattr(cfg, attr)!r}", key)
        got, want = data[key], getattr(cfg, attr)
        if (tuple(got) if isinstance(got, list) else got) != want:
            raise CheckpointError(path, f"is {got!r}, this model needs {want!r}", key)
    if data.get("model_type", "t2v") != "t2v":
        raise CheckpointError(path, f"is {data['model_type']!r}, LongLive is a 't2v' model", "model_type")


def _lora_spelling(key: str) -> str:
    # PEFT's in-model names carry the adapter name ('.lora_A.default.weight'); the saved
    # format drops it. Accept both spellings of the same tensor.
    return key.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")


def open_generator(path: Path) -> TensorFile:
    """A generator file: ``{"generator": state}`` or a flat state dict, keys with or without ``model.``."""
    return TensorFile.open(path, section="generator", strip="model.")


def load_dit(cfg: LongLiveConfig, generator: Path, lora: Path | None, mode: LoRAMode,
             device: torch.device | str, dtype: torch.dtype) -> CausalWanModel:
    """The causal DiT from a generator file (+ LoRA file unless ``mode == "none"``)."""
    if mode not in ("merged", "unmerged", "none"):
        raise ValueError(f"lora must be 'merged', 'unmerged' or 'none', got {mode!r}")
    with torch.device("meta"):
        model = CausalWanModel(cfg.dit)
    base = open_generator(generator)
    base.check(expected_shapes(model), "the causal Wan DiT")
    if mode == "none" or lora is None:
        return materialize(model, base, device, dtype)
    adapters = TensorFile.open(lora, section="generator_lora", rename=_lora_spelling)
    adapters.check(expected_lora_shapes(model, cfg.lora_rank), f"LongLive's rank-{cfg.lora_rank} LoRA")
    scaling = cfg.lora_alpha / cfg.lora_rank
    targets = lora_targets(model)
    if mode == "merged":
        weights = {f"{t}.weight": t for t in targets}

        def merge(key: str, w: Tensor) -> Tensor:
            t = weights.get(key)
            if t is None:
                return w
            a, b = (adapters.get(lora_key(t, x)).to(device) for x in "AB")
            return merged_weight(w.to(device), a, b, scaling)

        return materialize(model, base, device, dtype, override=merge)
    model = materialize(model, base, device, dtype)
    wrap_unmerged(model, {t: tuple(adapters.get(lora_key(t, x)).to(device=device, dtype=dtype)
                                   for x in "AB") for t in targets}, scaling)
    return model


def load_t5(cfg: T5Config, path: Path, device: torch.device | str, dtype: torch.dtype) -> T5Encoder:
    with torch.device("meta"):
        model = T5Encoder(cfg)
    f = TensorFile.open(path)
    f.check(expected_shapes(model), "the UMT5 encoder")
    return materialize(model, f, device, dtype)


def load_vae(cfg: VAEConfig, path: Path, device: torch.device | str, dtype: torch.dtype,
             with_encoder: bool = False) -> WanVAE:
    """The VAE; the whole official file is verified even when only the decoder is kept."""
    with torch.device("meta"):
        full = WanVAE(cfg, with_encoder=True)
        model = full if with_encoder else WanVAE(cfg, with_encoder=False)
    f = TensorFile.open(path)
    f.check(expected_shapes(full), "the Wan2.1 VAE")
    return materialize(model, f, device, dtype)


@dataclass
class LongLiveComponents:
    """The three networks of a loaded model. The engine makes one StreamingDecoder per stream."""

    config: LongLiveConfig
    dit: CausalWanModel
    text_encoder: WanTextEncoder  # prompts -> [B, text_len, text_dim] conditioning
    vae: WanVAE  # decoder only

    def streaming_decoder(self, frames_per_call: int | None = 1) -> StreamingDecoder:
        return StreamingDecoder(self.vae, frames_per_call)


def load_longlive_components(weights_dir: str | Path, device: torch.device | str = "cuda",
                             dtype: torch.dtype = torch.bfloat16, lora: LoRAMode = "merged",
                             merged_generator: str | Path | None = None,
                             text_device: torch.device | str | None = None,
                             config: LongLiveConfig | None = None) -> LongLiveComponents:
    """Loads DiT (+LoRA), tokenizer + UMT5 encoder and VAE decoder from ``weights_dir``.

    lora: "merged" folds lora.pt into the weights (fast), "unmerged" keeps LoRALinear
        wrappers (bit-faithful to the reference), "none" runs longlive_base.pt alone.
    merged_generator: a generator file with the LoRA already folded in (e.g. written by
        ``save_merged_generator``); then lora.pt and longlive_base.pt are not read.
    text_device: where the 11 GB text encoder lives (default: ``device``).
    """
    if lora not in ("merged", "unmerged", "none"):
        raise ValueError(f"lora must be 'merged', 'unmerged' or 'none', got {lora!r}")
    if merged_generator is not None and lora == "unmerged":
        raise ValueError("lora='unmerged' needs lora.pt, but merged_generator is already merged")
    cfg = config or LongLiveConfig.preset("longlive-1.3b")
    files = LongLiveFiles(Path(weights_dir))
    generator = Path(merged_generator) if merged_generator is not None else files.base
    lora_file = files.lora if merged_generator is None and lora != "none" else None
    needed = [files.config, files.t5, files.tokenizer / "tokenizer.json", files.vae, generator]
    files.require(*needed, *([lora_file] if lora_file else []))
    check_dit_config(files.config, cfg.dit)
    dit = load_dit(cfg, generator, lora_file, "none" if lora_file is None else lora, device, dtype)
    tokenizer = UMT5Tokenizer(files.tokenizer, seq_len=cfg.dit.text_len)
    if tokenizer.vocab_size > cfg.t5.vocab:
        raise CheckpointError(files.tokenizer / "tokenizer.json", f"has {tokenizer.vocab_size} tokens, "
                              f"more than the encoder's {cfg.t5.vocab} embeddings")
    t5 = load_t5(cfg.t5, files.t5, text_device or device, dtype)
    vae = load_vae(cfg.vae, files.vae, device, dtype)
    return LongLiveComponents(cfg, dit, WanTextEncoder(tokenizer, t5), vae)


def save_merged_generator(weights_dir: str | Path, out: str | Path, dtype: torch.dtype = torch.bfloat16,
                          config: LongLiveConfig | None = None) -> Path:
    """Writes longlive_base.pt + lora.pt merged (float32 math, one rounding) as safetensors.

    Plain DiT key names, no prefix; load it back with ``merged_generator=out``.
    """
    cfg = config or LongLiveConfig.preset("longlive-1.3b")
    files = LongLiveFiles(Path(weights_dir))
    files.require(files.base, files.lora)
    dit = load_dit(cfg, files.base, files.lora, "merged", "cpu", dtype)
    out = Path(out)
    save_file({k: v.contiguous() for k, v in dit.state_dict().items()}, str(out),
              metadata={"format": "pt", "content": "LongLive generator, LoRA merged"})
    return out
