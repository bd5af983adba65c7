"""``longlive train toy``: train the embedded toy model on the procedural world.

Teacher forcing with a clean-context KV cache, as LongLive trains: one forward runs a clip as
items of one block each, ``[clean blocks 0..n-2 ; noisy blocks 0..n-1]``. Clean blocks are at
t = 0 (the engine's context pass), noisy blocks at their own sigma. ``TeacherForcedAttention``
lets every item attend to exactly what the engine's cache holds when that block is generated:
the clean sink, the clean ring frames of the window, and the item's own frames, at the
positions the engine uses (relative mode: ring at absolute positions, the sink re-placed just
before the window's first ring frame). tests/test_toy_model.py checks this forward against
incremental generation through ``runtime.stream.Engine``.

Clips are longer than the window and switch prompts on block boundaries, so the sink, the
eviction of old frames and per-block prompts are all exercised. Loss: x0 MSE weighted by noise level (see
model.loss_weight) with extra weight on the object's neighbourhood; sigma per block from a logit-normal (or
U(--sigma-low, 1)) mixed with sigma = 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from runtime.attention import attention
from runtime.kv_cache import CacheConfig
from runtime.rope import Rope3D, apply_rope
from runtime.toy import vocab
from runtime.toy.model import (DEFAULT_WEIGHTS, ToyConfig, ToyModel, load_model, loss_weight, parameter_count,
                               save_weights)
from toylab import world


class TeacherForcedAttention:
    """SelfAttentionCache for a teacher-forced clip laid out as items of one block each.

    Items: clean blocks ``0..n_clean-1``, noisy blocks ``0..n_blocks-1``, then (with
    ``recache_block``) the recached blocks; the model's batch dimension is ``B * n_items``,
    item-major within each clip. Query item of block b (frames [a, e)) attends to: the sink blocks
    (frames < min(Z, a)), the ring blocks with frames in [max(Z, e - R), a), and its own block.
    Positions reproduce ``KVCache`` in either mode.

    ``recache_block`` = s trains LongLive's recache switch at block s as ``Engine`` does it with a
    global sink: the window's frames are re-encoded under the new prompt in one chunk (the ring
    only once the stream is past its first window, else everything), the chunk attending to
    itself and the kept sink; every block from s on then sees the recached context.
    """

    def __init__(self, cache: CacheConfig, frames_per_block: int, n_blocks: int, grid: tuple[int, int],
                 head_dim: int, n_clean: int | None = None, recache_block: int | None = None,
                 device: torch.device | str = "cpu"):
        Fb, Z, R = frames_per_block, cache.sink_frames, cache.ring_frames
        if Z % Fb or R % Fb:
            raise ValueError(f"sink ({Z}) and ring ({R}) frames must be multiples of the block ({Fb})")
        self.n_blocks = n_blocks
        self.n_clean = n_blocks - 1 if n_clean is None else n_clean
        self.recache_block = recache_block
        self.recached: list[int] = []  # blocks re-encoded at the switch
        if recache_block is not None:
            switch = recache_block * Fb
            first = 0 if switch <= cache.window_frames else max(Z, switch - R)
            self.recached = list(range(first // Fb, recache_block))
        recached_item = {b: self.n_clean + n_blocks + i for i, b in enumerate(self.recached)}
        self.n_items = self.n_clean + n_blocks + len(self.recached)
        rope = Rope3D(head_dim)
        table = lambda first: rope.table(torch.arange(first, first + Fb)[None], *grid, device)  # noqa: E731
        blocks = list(range(self.n_clean)) + list(range(n_blocks)) + self.recached
        self.items_table = torch.cat([table(b * Fb) for b in blocks])  # [n_items, 1, L, d/2, 2]

        def sink_keys(query_end: int, before: int, item) -> list[tuple[int, Tensor | None]]:
            # relative mode: the sink sits just before the window's first ring frame
            shift = max(Z, query_end - R) - Z if cache.positions == "relative" else 0
            return [(item(b), table(b * Fb + shift) if shift else None) for b in range(min(Z, before) // Fb)]

        # per query item: list of (key item, rope table for it or None = its own absolute rotation)
        self.plan: list[list[tuple[int, Tensor | None]]] = []
        for j, b in enumerate(blocks):
            a, e = b * Fb, (b + 1) * Fb
            if j >= self.n_clean + n_blocks:  # a recached block: one chunk ending at the switch
                chunk = [(recached_item[c], None) for c in self.recached]
                first = self.recached[0] * Fb
                self.plan.append(sink_keys(recache_block * Fb, first, lambda c: c) + chunk)
                continue
            after = recache_block is not None and b >= recache_block
            item = (lambda c: recached_item.get(c, c)) if after else (lambda c: c)
            ring = [(item(c), None) for c in range(max(Z, e - R) // Fb, b) if c * Fb >= Z]
            self.plan.append(sink_keys(e, a, item) + ring + [(j, None)])

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        # q, k, v: [B * n_items, H, L, d]
        N = self.n_items
        B = q.shape[0] // N
        tab = self.items_table.repeat(B, 1, 1, 1, 1)
        qr = apply_rope(q, tab).unflatten(0, (B, N))  # [B, N, H, L, d]
        kr = apply_rope(k, tab).unflatten(0, (B, N))
        k_raw, v = k.unflatten(0, (B, N)), v.unflatten(0, (B, N))
        outs = []
        for j, keys in enumerate(self.plan):
            K = torch.cat([kr[:, i] if t is None else apply_rope(k_raw[:, i], t) for i, t in keys], dim=2)
            V = torch.cat([v[:, i] for i, _ in keys], dim=2)
            outs.append(attention(qr[:, j], K, V))
        return torch.stack(outs, 1).flatten(0, 1)


def teacher_forced_forward(model: ToyModel, attn: TeacherForcedAttention, x0: Tensor, xt: Tensor,
                           sigma: Tensor, cond: Tensor, frames_per_block: int) -> Tensor:
    """Flow prediction for every noisy block of a clip.

    x0, xt: [B, C, T, H, W] clean (context) and noisy clips (T = n_blocks * F); sigma: [B, n_blocks];
    cond: [B, n_blocks, text_len, text_dim], the prompt of each block (recached blocks are encoded
    under the prompt of the switch block). Returns v [B, C, T, H, W].
    """
    B, C, T, H, W = x0.shape
    Fb, nb, nc, rc = frames_per_block, attn.n_blocks, attn.n_clean, attn.recached
    blocks = lambda x: x.unflatten(2, (T // Fb, Fb)).transpose(1, 2)  # noqa: E731  [B, n, C, F, H, W]
    clean = blocks(x0)
    items = torch.cat([clean[:, :nc], blocks(xt)[:, :nb], clean[:, rc]], 1).flatten(0, 1)  # [B*N, C, F, H, W]
    zeros = torch.zeros(B, device=x0.device)
    t = torch.cat([zeros[:, None].expand(-1, nc), sigma * 1000.0, zeros[:, None].expand(-1, len(rc))], 1)  # [B, N]
    t = t[..., None].expand(-1, -1, Fb).flatten(0, 1)  # [B*N, F]
    new_prompt = cond[:, attn.recache_block or 0, None].expand(-1, len(rc), -1, -1)
    item_cond = torch.cat([cond[:, :nc], cond, new_prompt], 1).flatten(0, 1)  # [B*N, text_len, text_dim]
    v = model.dit(items, t, model.dit.text_kv(item_cond), attn)  # [B*N, C, F, H, W]
    v = v.unflatten(0, (B, -1))[:, nc:nc + nb]  # [B, nb, C, F, H, W]
    return v.transpose(1, 2).flatten(2, 3)


@torch.no_grad()
def model_made_context(model: ToyModel, attn: TeacherForcedAttention, x0: Tensor, xt: Tensor, sigma: Tensor,
                       s: Tensor, cond: Tensor, frames_per_block: int, use: Tensor, passes: int = 0) -> Tensor:
    """Context blocks for the training forward: ground truth, or for the clips where ``use`` is True,
    the model's own x0 predictions of them (from the noisy blocks ``xt`` at ``sigma``).

    At inference the cache holds generated frames, never ground truth; a model that only ever saw
    clean context amplifies its own errors block after block (a smeared object grows into a band).
    Predictions made from noisy blocks carry the errors the model makes, while the targets stay the
    ground truth, so the model learns to pull its own output back to the data.

    ``passes`` = 0: one prediction of every block from ground-truth context (the original recipe).
    ``passes`` = k >= 1: the first block stays ground truth (a stream's spawn, which the model draws
    near exactly) and each pass predicts every later block from the previous pass's context, so
    after k passes blocks 1..k are the model's own k-block rollout, errors compounded as in a stream
    (issue 13: given ground-truth context the next block is right, free-running it drifts).
    """
    if not bool(use.any()):
        return x0
    keep = use[:, None, None, None, None]
    context = x0
    for _ in range(max(1, passes)):
        v = teacher_forced_forward(model, attn, context, xt, sigma, cond, frames_per_block)
        x0_hat = (xt - s * v.float()).clamp(-1, 1)
        if passes:
            x0_hat[:, :, :frames_per_block] = x0[:, :, :frames_per_block]
        context = torch.where(keep, x0_hat, x0)
    return context


# -- data ----------------------------------------------------------------------------------

def object_weight(positions: np.ndarray, radius: float = 12.0, extra: float = 7.0) -> np.ndarray:
    """[T, 2] centroids -> [T, 64, 64] loss weights: 1 + extra within ``radius`` of the object."""
    yy, xx = np.mgrid[0:world.SIZE, 0:world.SIZE].astype(np.float32)
    dx = (xx[None] - positions[:, 0, None, None] + world.SIZE / 2) % world.SIZE - world.SIZE / 2
    dy = yy[None] - positions[:, 1, None, None]
    return 1.0 + extra * ((dx**2 + dy**2) < radius**2)


def weather_weight(clip: world.Clip, extra: float) -> np.ndarray:
    """[T, 64, 64] extra loss weight on rain/snow particles: pixels of a weather frame brighter
    than their row's median. Particles are ~2 % of a frame, so unweighted their loss is lost in the
    background's and a few-step generator learns to leave them out (issue 13: rain 0 %)."""
    luma = clip.frames.astype(np.float32).mean(-1)
    bright = luma - np.median(luma, axis=2, keepdims=True) > 12.0
    weather = np.array([a.weather != "clear" for a in clip.attrs])
    return extra * (bright & weather[:, None, None])


def make_batch(rng: np.random.Generator, batch: int, n_blocks: int, fb: int, split: str = "train",
               spawn_fraction: float = 0.5, object_extra: float = 7.0, switch_block: int | None = None,
               weather_extra: float = 0.0, change_prob: dict[str, float] | None = None):
    """-> x0 [B, 3, T, 64, 64], ids [B, n_blocks, MAX_TOKENS], weight [B, 1, T, 64, 64].

    A ``spawn_fraction`` of the clips start a stream (``world.spawn_state``), the rest are pieces
    of streams from a random state. Their first block has no context, and at inference only a
    stream's start lacks context, so it gets no loss: the model learns that a block without
    context is a spawn, and from the other clips that context anywhere is continued.
    ``switch_block`` puts every clip's prompt switch on that block (recache steps); otherwise half
    the clips switch on a random block boundary.
    """
    spawn = rng.random(batch) < spawn_fraction
    switch_at = None if switch_block is None else switch_block * fb
    clips = [world.sample_clip(rng, n_blocks * fb, switch_prob=0.5, switch_align=fb, split=split, spawn=bool(sp),
                               switch_at=switch_at, change_prob=change_prob) for sp in spawn]
    x0 = torch.from_numpy(np.stack([world.to_float(c.frames) for c in clips])).permute(0, 4, 1, 2, 3)
    ids = torch.tensor([[vocab.tokenize(c.prompts[b * fb]) for b in range(n_blocks)] for c in clips])
    w = np.stack([object_weight(c.positions, extra=object_extra) for c in clips])
    if weather_extra:
        w += np.stack([weather_weight(c, weather_extra) for c in clips])
    w[~spawn, :fb] = 0.0
    return x0.contiguous(), ids, torch.from_numpy(w)[:, None]


def sample_sigma(g: torch.Generator, shape: tuple[int, ...], p_one: float = 0.3,
                 lowest: float | None = None) -> Tensor:
    """Per-block sigma: 1.0 with probability p_one (every sample starts there), else logit-normal, or
    uniform on [lowest, 1] to train only the noise levels the sampler visits (its steps are 1, 0.9, 0.8)."""
    if lowest is None:
        u = torch.sigmoid(torch.randn(shape, generator=g))
    else:
        u = lowest + (1 - lowest) * torch.rand(shape, generator=g)
    one = torch.rand(shape, generator=g) < p_one
    return torch.where(one, torch.ones(shape), u.clamp(1e-3, 1.0))


def noisy_blocks(x0: Tensor, sigma: Tensor, noise: Tensor, fb: int) -> tuple[Tensor, Tensor]:
    """x_t = (1 - s) x0 + s noise with one sigma per block: (x_t, s broadcastable over [B, C, T, H, W])."""
    s = sigma.repeat_interleave(fb, 1)[:, None, :, None, None]
    return (1 - s) * x0 + s * noise, s


def context_noise(x0: Tensor, g: torch.Generator, lowest: float, fb: int) -> tuple[Tensor, Tensor, Tensor]:
    """Noisy blocks (x_t, per-block sigma, per-frame sigma) for ``model_made_context`` at sigma ~ U(lowest, 1):
    the noise levels the sampler's x0 predictions are made at, so the model learns to pull back exactly
    the blur its generated context carries at inference."""
    B, _, T = x0.shape[:3]
    sigma = (lowest + (1 - lowest) * torch.rand((B, T // fb), generator=g)).to(x0.device)
    xt, s = noisy_blocks(x0, sigma, torch.randn(x0.shape, generator=g).to(x0.device), fb)
    return xt, sigma, s


# -- training loop -------------------------------------------------------------------------

@dataclass
class TrainConfig:
    steps: int = 5600
    batch: int = 4
    blocks: int = 5  # blocks per clip: 15 frames; the last two blocks evict frames from the 9-frame window
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup: int = 50
    weight_decay: float = 0.01
    ema: float = 0.999
    seed: int = 0
    object_extra_weight: float = 7.0
    weather_extra_weight: float = 0.0  # extra loss weight on rain/snow particle pixels (weather_weight)
    model_context: float = 0.5  # fraction of clips whose context blocks are the model's own predictions
    # lowest sigma the model-made context is predicted from (None: this step's noisy blocks, at their
    # own logit-normal sigma). The sampler's last step is sigma 0.8, so generated context is a
    # high-sigma x0 prediction, blurrier than most of the training ones (see context_noise).
    context_sigma: float | None = None
    context_passes: int = 0  # model_made_context's rollout passes (0: the original one-shot prediction)
    # lowest sigma of the noisy (trained) blocks (None: logit-normal over (0, 1), mostly far below the
    # sampler's 0.8, so most of the model's capacity went to noise levels it never meets when serving)
    sigma_low: float | None = None
    # per-attribute change probabilities at a switch, over world.SWITCH_CHANGE_PROB (which changes the
    # object's colour in 1 switch of 4 and its shape in 1 of 10)
    switch_change: dict[str, float] | None = None
    spawn_fraction: float = 0.5  # fraction of clips that start a stream (see make_batch)
    recache_fraction: float = 0.5  # fraction of steps whose clips all switch with LongLive's recache
    # Long clips (issue 13): a bounce period is 18 frames, so a 15-frame clip from the spawn never
    # shows a landing and relaunch; every `long_every`th step (0: never) trains `long_batch` clips of
    # `long_blocks` blocks instead (about the same cost as a normal step).
    long_every: int = 0
    long_blocks: int = 12
    long_batch: int = 2

    def __post_init__(self) -> None:
        if self.context_sigma is not None and not 0 <= self.context_sigma < 1:
            raise ValueError(f"context_sigma is the lowest noise level of the model-made context, in [0, 1); "
                             f"got {self.context_sigma}")
        if self.sigma_low is not None and not 0 <= self.sigma_low < 1:
            raise ValueError(f"sigma_low is the lowest noise level of the trained blocks, in [0, 1); "
                             f"got {self.sigma_low}")
        if self.context_passes < 0:
            raise ValueError(f"context_passes counts rollout passes (0: one-shot); got {self.context_passes}")


def clip_shape(step: int, tc: TrainConfig) -> tuple[int, int]:
    """(clips, blocks per clip) of a training step."""
    if tc.long_every and step % tc.long_every == tc.long_every - 1:
        return tc.long_batch, tc.long_blocks
    return tc.batch, tc.blocks


def lr_at(step: int, tc: TrainConfig) -> float:
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    p = min(1.0, (step - tc.warmup) / max(1, tc.steps - tc.warmup))
    return tc.min_lr + 0.5 * (tc.lr - tc.min_lr) * (1 + math.cos(math.pi * p))


def _compact_optimiser(state: dict) -> dict:
    """AdamW state with its moments in bf16: the checkpoint is committed for the next session and
    must stay under 20 MB (fp32 moments alone are 12 MB); resuming upcasts them (<0.4 % error)."""
    moments = {k: {n: (v.to(torch.bfloat16) if n in ("exp_avg", "exp_avg_sq") else v) for n, v in st.items()}
               for k, st in state["state"].items()}
    return {**state, "state": moments}


def _full_optimiser(state: dict) -> dict:
    moments = {k: {n: (v.float() if n in ("exp_avg", "exp_avg_sq") else v) for n, v in st.items()}
               for k, st in state["state"].items()}
    return {**state, "state": moments}


def train(tc: TrainConfig, cfg: ToyConfig, out_dir: Path, weights: Path, device: str, resume: bool,
          ckpt_every: int = 100, log_every: int = 10, bf16: bool = False, init: Path | None = None,
          max_minutes: float | None = None) -> None:
    """Train from scratch, from ``init`` weights (fine-tuning: model and EMA start there, fresh
    optimiser, step 0), or, with ``resume`` and OUT/ckpt.pt present, from that checkpoint.
    ``max_minutes`` ends this run early with a checkpoint to resume from (a time-boxed GPU lease)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "ckpt.pt"
    torch.manual_seed(tc.seed)
    model = ToyModel(cfg).to(device)
    ema = ToyModel(cfg).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=(0.9, 0.99), weight_decay=tc.weight_decay)
    start, history = 0, []
    if resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(_full_optimiser(ck["opt"]))
        start, history = ck["step"], ck["history"]
        print(f"resumed from {ckpt_path} at step {start}", flush=True)
    elif init is not None:
        start_from = load_model(init, device).state_dict()
        model.load_state_dict(start_from)
        ema.load_state_dict(start_from)
        print(f"fine-tuning from {init}", flush=True)
    fb = cfg.frames_per_block
    layouts: dict[tuple[int, int | None], TeacherForcedAttention] = {}

    def layout(n_blocks: int, recache_block: int | None) -> TeacherForcedAttention:
        # recache_block None: a switch, if any, swaps the prompt only ("none")
        key = (n_blocks, recache_block)
        if key not in layouts:
            layouts[key] = TeacherForcedAttention(cfg.cache, fb, n_blocks, model.dit.token_grid(world_frame()),
                                                  cfg.dit.head_dim, recache_block=recache_block, device=device)
        return layouts[key]

    long = f"; 1 step in {tc.long_every}: {tc.long_batch} clips x {tc.long_blocks * fb} frames" \
        if tc.long_every else ""
    print(f"toy model: {parameter_count(model) / 1e6:.2f} M parameters; {tc.steps} steps of {tc.batch} clips x "
          f"{tc.blocks * fb} frames{long}; device {device}, {torch.get_num_threads()} threads", flush=True)
    # bf16 autocast only where bf16 matmuls are native: this CPU (no avx512_bf16) runs them ~200x
    # slower than fp32, so CPU training stays in fp32 (docs/TOY_MODEL.md, "What failed")
    dev_type = torch.device(device).type
    amp = torch.autocast(device_type=dev_type, dtype=torch.bfloat16, enabled=bf16)
    t_start, ema_loss, ema_obj = time.time(), None, None

    def save(step: int) -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": _compact_optimiser(opt.state_dict()),
                    "step": step, "init": None if init is None else str(init),
                    "history": history, "train_config": asdict(tc), "config": cfg.to_json()}, tmp)
        os.replace(tmp, ckpt_path)
        save_weights(ema, out_dir / "toy.safetensors")

    model.train()
    for step in range(start, tc.steps):
        rng = np.random.default_rng([tc.seed, step])  # data depends on (seed, step): resumable
        g = torch.Generator().manual_seed(tc.seed * 1_000_003 + step)
        batch, n_blocks = clip_shape(step, tc)
        recache_block = int(rng.integers(1, n_blocks)) if rng.random() < tc.recache_fraction else None
        attn = layout(n_blocks, recache_block)
        x0, ids, w = make_batch(rng, batch, n_blocks, fb, spawn_fraction=tc.spawn_fraction,
                                object_extra=tc.object_extra_weight, switch_block=recache_block,
                                weather_extra=tc.weather_extra_weight, change_prob=tc.switch_change)
        sigma = sample_sigma(g, (batch, n_blocks), lowest=tc.sigma_low)
        xt, s = noisy_blocks(x0, sigma, torch.randn(x0.shape, generator=g), fb)
        x0, xt, ids, w, sigma, s = (a.to(device) for a in (x0, xt, ids, w, sigma, s))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc)
        with amp:
            cond = model.text(ids.flatten(0, 1)).unflatten(0, (batch, n_blocks))
            noisy = (xt, sigma, s) if tc.context_sigma is None else context_noise(x0, g, tc.context_sigma, fb)
            context = model_made_context(model, attn, x0, *noisy, cond, fb,
                                         torch.rand(batch, generator=g).to(device) < tc.model_context,
                                         passes=tc.context_passes)
            v = teacher_forced_forward(model, attn, context, xt, sigma, cond, fb)
        err = ((xt - s * v.float()) - x0).pow(2) * loss_weight(s)
        loss = (err * w).mean() / w.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(tc.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - d)
            obj = float((err.mean(1, keepdim=True) * (w > 1)).sum() / (w > 1).sum().clamp(min=1) / 3)
        lv = float(loss.detach())
        ema_loss = lv if ema_loss is None else 0.95 * ema_loss + 0.05 * lv
        ema_obj = obj if ema_obj is None else 0.95 * ema_obj + 0.05 * obj
        done = step + 1
        if done % log_every == 0 or done == tc.steps:
            rate = (done - start) / (time.time() - t_start)
            eta = (tc.steps - done) / max(rate, 1e-9)
            history.append({"step": done, "loss": round(ema_loss, 5), "object_loss": round(ema_obj, 5),
                            "lr": lr_at(step, tc), "elapsed_s": round(time.time() - t_start, 1)})
            print(f"step {done}/{tc.steps}  loss {ema_loss:.4f}  object {ema_obj:.4f}  lr {lr_at(step, tc):.2e}  "
                  f"{rate:.2f} steps/s  ETA {eta / 60:.1f} min", flush=True)
        if done % ckpt_every == 0 or done == tc.steps:
            save(done)
        if max_minutes is not None and time.time() - t_start > 60 * max_minutes and done < tc.steps:
            save(done)
            print(f"stopped after {max_minutes:g} min at step {done}; --resume continues", flush=True)
            return
    save_weights(ema, weights)
    (out_dir / "history.json").write_text(json.dumps(history))
    print(f"wrote {weights} and {weights.with_suffix('.json')}", flush=True)


def _change_prob(text: str) -> dict[str, float]:
    out = {}
    for item in text.split(","):
        name, _, prob = item.partition("=")
        if name not in world.SWITCH_CHANGE_PROB or not prob:
            legal = ", ".join(world.SWITCH_CHANGE_PROB)
            raise argparse.ArgumentTypeError(f"{item!r}: want ATTR=P with ATTR one of {legal}")
        out[name] = float(prob)
        if not 0 <= out[name] <= 1:
            raise argparse.ArgumentTypeError(f"{item!r}: a probability lies in [0, 1]")
    return out


def world_frame() -> tuple[int, int]:
    return (world.SIZE, world.SIZE)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the embedded toy model (reproducible, resumable)")
    p.add_argument("model", choices=["toy"])
    d = TrainConfig()
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--blocks", type=int, default=d.blocks, help="blocks per training clip")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--model-context", type=float, default=d.model_context,
                   help="fraction of clips trained on the model's own predictions as context")
    p.add_argument("--context-sigma", type=float, default=d.context_sigma,
                   help="predict model-made context from sigma ~ U(this, 1) (default: the step's own sigma)")
    p.add_argument("--context-passes", type=int, default=d.context_passes,
                   help="model-made context as the model's own rollout over this many blocks (0: one-shot)")
    p.add_argument("--sigma-low", type=float, default=d.sigma_low,
                   help="train the noisy blocks at sigma ~ U(this, 1) only (default: logit-normal over (0, 1))")
    p.add_argument("--switch-change", type=_change_prob, default=d.switch_change, metavar="ATTR=P,...",
                   help="how often a switch changes each attribute, e.g. colour=0.5,shape=0.35 (else the world's)")
    p.add_argument("--recache-fraction", type=float, default=d.recache_fraction,
                   help="fraction of steps that train a recache prompt switch")
    p.add_argument("--weather-weight", type=float, default=d.weather_extra_weight,
                   help="extra loss weight on rain/snow particle pixels (0: none)")
    p.add_argument("--long-every", type=int, default=d.long_every,
                   help="every Nth step trains long clips (0: never)")
    p.add_argument("--long-blocks", type=int, default=d.long_blocks, help="blocks per long clip")
    p.add_argument("--long-batch", type=int, default=d.long_batch, help="clips per long step")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default="out/toy-train", help="checkpoint folder (ckpt.pt, toy.safetensors)")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="final weights file (+ .json config)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    p.add_argument("--init", default=None,
                   help="fine-tune: start model and EMA from this weights file (ignored when resuming)")
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes with a checkpoint (resume later with --resume)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=torch.cuda.is_available(),
                   help="bf16 autocast (default on CUDA only; CPUs without avx512_bf16 emulate it slowly)")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        tc = TrainConfig(steps=args.steps, batch=args.batch, blocks=args.blocks, lr=args.lr, seed=args.seed,
                         model_context=args.model_context, context_sigma=args.context_sigma,
                         context_passes=args.context_passes, sigma_low=args.sigma_low, switch_change=args.switch_change,
                         recache_fraction=args.recache_fraction, weather_extra_weight=args.weather_weight,
                         long_every=args.long_every, long_blocks=args.long_blocks, long_batch=args.long_batch)
    except ValueError as exc:
        raise SystemExit(f"longlive train toy: {exc}") from None
    train(tc, ToyConfig(), Path(args.out), Path(args.weights), args.device, args.resume, args.ckpt_every,
          bf16=args.bf16, init=Path(args.init) if args.init else None, max_minutes=args.max_minutes)
    return 0
