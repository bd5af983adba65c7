"""The toy model: training forward == engine generation, shipped weights, prompt errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from runtime.kv_cache import CacheConfig
from runtime.pipeline import PromptError, load_pipeline
from runtime.schedule import FlowSchedule, ScheduleConfig
from runtime.stream import Engine, EngineConfig
from runtime.toy.model import DEFAULT_WEIGHTS, ToyConfig, ToyModel, ToyPromptEncoder, load_model, save_weights
from toylab.probe import probe_frames
from toylab.train import TeacherForcedAttention, teacher_forced_forward


@pytest.mark.parametrize("positions", ["relative", "absolute"])
@pytest.mark.parametrize("sink", [3, 0])
@pytest.mark.parametrize("transition, switch", [("none", 3), ("recache", 3), ("recache", 4)])
def test_teacher_forced_forward_equals_engine_generation(positions, sink, transition, switch):
    """Same weights, same noise: the training forward reproduces incremental generation through
    the real Engine (sink + ring eviction + a prompt switch), so training sees test conditions.
    A recache at block 3 re-encodes the whole first window, at block 4 only the ring."""
    torch.manual_seed(0)
    cache = CacheConfig(sink_frames=sink, window_frames=9, positions=positions)
    cfg = ToyConfig(cache=cache)
    model = ToyModel(cfg).eval()
    enc = ToyPromptEncoder(model.text)
    p1, p2 = enc("A red ball rolls left over the grass"), enc("Under the dark night sky one blue cube rests")
    # one denoising step per block: the block's output is exactly x0 = noise - v(noise, t=1000)
    sched = FlowSchedule(ScheduleConfig(steps=(1000,), warp=False, renoise="deterministic"))
    engine = Engine(model.dit, sched, EngineConfig(latent_shape=(3, 64, 64), frames_per_block=3, cache=cache))
    n_blocks, seed = 6, 5
    stream = engine.open(p1, seed=seed)
    blocks = []
    for b in range(n_blocks):
        if b == switch:
            stream.switch_prompt(p2, transition)  # per-block prompts, as in the training clips
        blocks.append(stream.next_block())
    g = torch.Generator().manual_seed(seed)
    noise = torch.cat([torch.randn((1, 3, 3, 64, 64), generator=g) for _ in range(n_blocks)], 2)
    x0 = torch.cat(blocks, 1)[None]
    attn = TeacherForcedAttention(cache, 3, n_blocks, (8, 8), cfg.dit.head_dim,
                                  recache_block=switch if transition == "recache" else None)
    cond = torch.stack([p1] * switch + [p2] * (n_blocks - switch))[None]
    with torch.no_grad():
        v = teacher_forced_forward(model, attn, x0, noise, torch.ones(1, n_blocks), cond, 3)
    torch.testing.assert_close(noise - v, x0, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("transition", ["none", "recache"])
def test_engine_given_context_generates_what_the_training_forward_predicts_from_it(transition):
    """Teacher forcing through the Engine: with known blocks written to the cache in place of the
    generated ones, each generated block is the training forward's one-block-ahead prediction from
    those blocks (the recache re-encodes the given blocks, not the generated ones)."""
    torch.manual_seed(1)
    cache = CacheConfig(sink_frames=3, window_frames=9)
    model = ToyModel(ToyConfig(cache=cache)).eval()
    enc = ToyPromptEncoder(model.text)
    p1, p2 = enc("A red ball rolls left over the grass"), enc("Under the dark night sky one blue cube rests")
    sched = FlowSchedule(ScheduleConfig(steps=(1000,), warp=False, renoise="deterministic"))
    engine = Engine(model.dit, sched, EngineConfig(latent_shape=(3, 64, 64), frames_per_block=3, cache=cache))
    n_blocks, switch, seed = 5, 3, 2
    known = torch.rand(1, 3, 3 * n_blocks, 64, 64) * 2 - 1
    stream = engine.open(p1, seed=seed)
    generated = []
    for b in range(n_blocks):
        if b == switch:
            stream.switch_prompt(p2, transition)
        generated.append(engine.step([stream], context=[known[0, :, 3 * b:3 * b + 3]])[0])
    g = torch.Generator().manual_seed(seed)
    noise = torch.cat([torch.randn((1, 3, 3, 64, 64), generator=g) for _ in range(n_blocks)], 2)
    attn = TeacherForcedAttention(cache, 3, n_blocks, (8, 8), model.cfg.dit.head_dim,
                                  recache_block=switch if transition == "recache" else None)
    cond = torch.stack([p1] * switch + [p2] * (n_blocks - switch))[None]
    with torch.no_grad():
        v = teacher_forced_forward(model, attn, known, noise, torch.ones(1, n_blocks), cond, 3)
    torch.testing.assert_close(torch.cat(generated, 1)[None], noise - v, atol=2e-5, rtol=1e-5)
    assert not torch.allclose(torch.cat(generated, 1)[None], known, atol=0.1)  # generated, not copied
    with pytest.raises(ValueError, match="context block must have shape"):
        engine.step([stream], context=[known[0, :, :2]])


def test_teacher_forced_attention_rejects_unaligned_cache():
    with pytest.raises(ValueError, match="multiples of the block"):
        TeacherForcedAttention(CacheConfig(sink_frames=2, window_frames=9), 3, 4, (8, 8), 32)


def test_shipped_weights_generate_the_prompted_scene():
    """A short stream from the shipped model, read back by the probe: the prompted sky, ground and
    object colour, the object at the spawn point first, and a recache switch obeyed within a block."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    pipe = load_pipeline("toy", max_streams=1)
    prompt = "A sandy beach beneath the dark night sky. The red ball keeps bouncing"
    stream = pipe.open_stream(pipe.encode_prompt(prompt), seed=1)
    frames = np.concatenate([pipe.step([stream])[0] for _ in range(4)])
    assert frames.shape == (12, 64, 64, 3) and frames.dtype == np.uint8
    res = probe_frames(frames)
    assert np.mean([r.sky == "night" and r.ground == "sand" for r in res]) >= 0.9
    assert np.mean([r.present and r.colour == "red" for r in res]) >= 0.8
    assert res[0].present and abs(res[0].x - 32) < 4  # the spawn point
    stream.switch_prompt(pipe.encode_prompt("A blue cube rests on the snowy field under a stormy sky"))
    after = probe_frames(np.concatenate([pipe.step([stream])[0] for _ in range(3)]))
    assert np.mean([r.sky == "storm" and r.ground == "snow" for r in after]) >= 0.9
    assert np.mean([r.present and r.colour == "blue" for r in after]) >= 0.6


def test_prompts_are_read_for_meaning_served_past_unknown_words_and_linted_strictly():
    pipe = load_pipeline("toy", max_streams=1)
    typed = pipe.encode_prompt("a red circle by the pond at night")
    assert torch.equal(typed, pipe.encode_prompt("A red ball rests on the ground across the sea under a starry night sky"))
    assert not torch.equal(typed, pipe.encode_prompt("a red circle by the pond at noon"))
    assert pipe.lint("a red circle by the pond at night") is None
    pipe.check_prompt("a red circle by the pond at night")
    # serving shows what the rest says; the lint and the strict check name what was set aside
    unknown = "a blue unicorn at night by the castle"
    assert torch.equal(pipe.encode_prompt(unknown), pipe.encode_prompt("a blue ball at night"))
    assert not torch.equal(pipe.encode_prompt(unknown), pipe.encode_prompt("a red ball at night"))
    assert re.search("'unicorn'.*'castle'", pipe.lint(unknown))
    with pytest.raises(PromptError, match="'unicorn'.*'castle'"):
        pipe.check_prompt(unknown)
    with pytest.raises(PromptError, match="'unicorn'"):  # nothing left to show: refused, naming the word
        pipe.encode_prompt("the unicorn")
    for refused in ("!!!", "a green ball"):
        with pytest.raises(PromptError):
            pipe.encode_prompt(refused)


def test_missing_or_corrupt_weights_name_the_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_pipeline("toy", weights=str(missing))
    model = ToyModel(ToyConfig())
    path = tmp_path / "toy.safetensors"
    save_weights(model, path)
    assert load_model(path).cfg == model.cfg
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="toy.safetensors"):
        load_model(path)


def test_shipped_weights_are_small_and_bf16():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 20e6
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(str(DEFAULT_WEIGHTS)).values()} == {torch.bfloat16}

