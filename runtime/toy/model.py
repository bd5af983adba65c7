"""``toy``: the embedded default model, trained in this repo on the procedural toy world.

The video model is the same ``CausalWanModel`` as the 1.3B model at a tiny size, in pixel space
(64x64 RGB in [-1, 1], 8x8 patches -> 64 tokens per frame, 3-D RoPE). The text encoder is
trained with it: word embeddings + slot positions + a pre-norm transformer layer over
``vocab.tokenize`` ids, padded slots zeroed; typed prompts reach it as the canonical sentence of
their meaning (``runtime/toy/meaning.py``). Weights ship as bf16 safetensors beside a JSON
config (``runtime/toy/weights/``) and load with no network. Training: toylab/train.py,
results: docs/TOY_MODEL.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runtime.dit import CausalWanModel, DiTConfig
from runtime.kv_cache import CacheConfig
from runtime.pipeline import Pipeline, PromptError
from runtime.random_model import PixelDecoder
from runtime.schedule import FlowSchedule, ScheduleConfig
from runtime.stream import Engine, EngineConfig
from runtime.toy import meaning, vocab

FRAME = (64, 64)
WEIGHTS_DIR = Path(__file__).with_name("weights")
DEFAULT_WEIGHTS = WEIGHTS_DIR / "toy.safetensors"


@dataclass(frozen=True)
class ToyConfig:
    """Everything that defines the toy model: network sizes, cache geometry and sampler."""

    dit: DiTConfig = field(default_factory=lambda: DiTConfig(
        dim=128, ffn_dim=512, num_heads=4, num_layers=4, in_dim=3, out_dim=3, text_dim=128,
        text_len=vocab.MAX_TOKENS, freq_dim=64, patch_size=(1, 8, 8)))
    text_layers: int = 1
    text_heads: int = 4
    frames_per_block: int = 3
    cache: CacheConfig = field(default_factory=lambda: CacheConfig(sink_frames=3, window_frames=9))
    # undistilled model: deterministic (DDIM-like) steps; the next block is nearly determined by
    # context and prompt, so high-sigma x0 predictions suffice (docs/TOY_MODEL.md, "Sampler")
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(
        steps=(1000, 900, 800), warp=False, renoise="deterministic"))
    fps: float = 16.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "ToyConfig":
        dit = dict(d["dit"])
        dit["patch_size"] = tuple(dit["patch_size"])
        sched = dict(d["schedule"])
        sched["steps"] = tuple(sched["steps"])
        return cls(dit=DiTConfig(**dit), text_layers=d["text_layers"], text_heads=d["text_heads"],
                   frames_per_block=d["frames_per_block"], cache=CacheConfig(**d["cache"]),
                   schedule=ScheduleConfig(**sched), fps=d["fps"])


class TextLayer(nn.Module):
    """Pre-norm transformer encoder layer; padded slots are masked out as keys."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.o = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        # x: [B, L, dim]; keep: [B, L] bool, False on padding
        q, k, v = self.qkv(self.norm1(x)).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)  # 3 x [B, H, L, d]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        x = x + self.o(a.transpose(1, 2).flatten(2))
        return x + self.ffn(self.norm2(x))


class ToyTextEncoder(nn.Module):
    """Token ids [B, MAX_TOKENS] -> conditioning [B, MAX_TOKENS, text_dim], padding zeroed."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        d = cfg.dit.text_dim
        self.embed = nn.Embedding(vocab.VOCAB_SIZE, d)
        self.pos = nn.Parameter(torch.randn(cfg.dit.text_len, d) * 0.02)
        self.layers = nn.ModuleList(TextLayer(d, cfg.text_heads) for _ in range(cfg.text_layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, ids: Tensor) -> Tensor:
        keep = ids != vocab.PAD_ID
        x = self.embed(ids) + self.pos
        for layer in self.layers:
            x = layer(x, keep)
        return self.norm(x) * keep[..., None]


SIGMA_DATA = 0.5  # std of toy-world pixels in [-1, 1]


class ToyDiT(CausalWanModel):
    """CausalWanModel that predicts the clean frame, returned to the engine as a flow.

    In pixel space a patch (192 values) is wider than the model (128), so the network cannot
    carry the input noise through to its output: a flow (v = noise - x0) or residual
    prediction leaves noise in every low-sigma step (the first runs failed this way; see
    docs/TOY_MODEL.md). Predicting x0 itself keeps the output on the data and makes low-sigma
    steps usable, so the sampler can actually resolve what is uncertain (where the object is)
    instead of averaging it. The network output F is x0 / SIGMA_DATA; the flow is
    v = (x - x0) / sigma, which the engine's x0 = x - sigma * v undoes exactly.
    """

    def forward(self, x: Tensor, t: Tensor, text_kv, cache) -> Tensor:
        f = super().forward(x, t, text_kv, cache)
        sigma = (t.float() / 1000.0).clamp(min=1e-3)[:, None, :, None, None]  # [B, 1, F, 1, 1]
        x0 = SIGMA_DATA * f.float()
        return ((x.float() - x0) / sigma).to(f.dtype)


def loss_weight(sigma: Tensor, floor: float = 0.2) -> Tensor:
    """Weight of the x0 error at noise level sigma: 1 / c_out(sigma)^2 of EDM (x = (1 - sigma) x0 +
    sigma n, data std SIGMA_DATA), i.e. the flow loss at low sigma, with sigma floored at `floor` so
    that near-clean items, whose x0 is nearly given, do not dominate (4 at sigma = 1, 20 at 0.2)."""
    s = sigma.clamp(min=floor)
    a, d2 = 1 - s, SIGMA_DATA ** 2
    return (a * a * d2 + s * s) / (s * s * d2)


class ToyModel(nn.Module):
    """The trained pair; state-dict keys are ``text.*`` and ``dit.*`` (official DiT names below)."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.text = ToyTextEncoder(cfg)
        self.dit = ToyDiT(cfg.dit)


def tokenize_or_raise(text: str) -> Tensor:
    """Prompt -> ids [MAX_TOKENS]; unknown words become a PromptError naming them."""
    try:
        ids = vocab.tokenize(text)
    except vocab.UnknownWordsError as e:
        raise PromptError(str(e)) from e
    if all(i == vocab.PAD_ID for i in ids):
        raise PromptError(f"the prompt {text!r} has no words")
    return torch.tensor(ids)


def canonical_prompt(text: str) -> str:
    """What the learned encoder reads for a typed prompt: its meaning (``meaning.reading``, unread
    words set aside, defaults for what it leaves open) as one sentence of the encoder's training
    phrases; errors are PromptErrors."""
    try:
        return meaning.canonical(meaning.complete(meaning.reading(text).mentioned))
    except meaning.MeaningError as e:
        raise PromptError(str(e)) from e


def unread_words(text: str) -> str | None:
    """The pipeline's lint: the words of `text` the toy ignores (with suggestions) or read as a typing
    slip of a known word; None if none (or if the prompt is refused outright: `encode_prompt` says so)."""
    try:
        return meaning.reading(text).warning()
    except meaning.MeaningError:
        return None


class ToyPromptEncoder:
    """The pipeline's TextEncoder: text -> [MAX_TOKENS, text_dim] float32, cached per prompt.

    Typed text is first read into the world's attributes and rewritten as the canonical sentence
    (``canonical_prompt``): the learned encoder only ever generalised over its template sentences."""

    def __init__(self, text: ToyTextEncoder):
        self.text = text
        self.cache: dict[str, Tensor] = {}

    @torch.no_grad()
    def __call__(self, text: str) -> Tensor:
        if text not in self.cache:
            if len(self.cache) > 1024:
                self.cache.clear()
            ids = tokenize_or_raise(canonical_prompt(text))
            p = next(self.text.parameters())
            self.cache[text] = self.text(ids[None].to(p.device))[0].float().cpu()
        return self.cache[text]


# -- weights file ------------------------------------------------------------------------------

def config_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def save_weights(model: ToyModel, path: str | Path, dtype: torch.dtype = torch.bfloat16) -> None:
    """Write ``path`` (safetensors, ``dtype``) and its config ``path.with_suffix('.json')``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    config_path(path).write_text(json.dumps(model.cfg.to_json(), indent=1) + "\n")


def load_model(path: str | Path | None = None, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> ToyModel:
    """Load the toy model; a missing or corrupt file is a clear error naming it."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if path.is_dir():
        path = path / DEFAULT_WEIGHTS.name
    cfg_file = config_path(path)
    for f in (path, cfg_file):
        if not f.is_file():
            raise FileNotFoundError(f"toy model file not found: {f} (train one with `longlive train toy`)")
    try:
        cfg = ToyConfig.from_json(json.loads(cfg_file.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"toy model config {cfg_file} is corrupt: {e}") from e
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"toy model weights {path} are corrupt or unreadable: {e}") from e
    model = ToyModel(cfg)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        raise ValueError(f"toy model weights {path} do not match its config {cfg_file}: {e}") from e
    return model.eval().to(device, dtype)


def build(device: torch.device, dtype: torch.dtype | None, weights: str | None, max_streams: int,
          positions: str | None = None, sink_frames: int | None = None, window_frames: int | None = None,
          steps: tuple[float, ...] | None = None, renoise: str | None = None) -> Pipeline:
    """The ``toy`` pipeline. Keyword options override the shipped cache/sampler config (ablations)."""
    model = load_model(weights, device, dtype or torch.float32)
    cfg = model.cfg
    cache = replace(cfg.cache, **{k: v for k, v in dict(positions=positions, sink_frames=sink_frames,
                                                         window_frames=window_frames).items() if v is not None})
    sched = replace(cfg.schedule, **{k: v for k, v in dict(steps=tuple(steps) if steps else None,
                                                         renoise=renoise).items() if v is not None})
    engine = Engine(model.dit, FlowSchedule(sched),
                    EngineConfig(latent_shape=(cfg.dit.in_dim, *FRAME), frames_per_block=cfg.frames_per_block,
                                 cache=cache),
                    max_streams=max_streams)
    return Pipeline("toy", engine, ToyPromptEncoder(model.text), PixelDecoder, fps=cfg.fps,
                    frame_shape=FRAME, frames_per_block=cfg.frames_per_block, lint=unread_words)


def parameter_count(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
