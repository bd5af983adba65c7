"""Toy training data and the model-made context: what the training forward is fed."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from runtime.pipeline import load_pipeline
from runtime.toy.model import ToyConfig, ToyModel
from toylab import world
from toylab.train import (TeacherForcedAttention, TrainConfig, _change_prob, _compact_optimiser, _full_optimiser,
                          clip_shape, make_batch, model_made_context, sample_sigma, teacher_forced_forward, train)


def test_first_block_of_a_clip_from_a_random_state_has_no_loss():
    x0, ids, w = make_batch(np.random.default_rng(0), 16, 3, 3, spawn_fraction=0.5)
    assert x0.shape == (16, 3, 9, 64, 64) and ids.shape[:2] == (16, 3) and w.shape == (16, 1, 9, 64, 64)
    first_masked = (w[:, :, :3] == 0).flatten(1).all(1)
    assert 0 < int(first_masked.sum()) < 16
    assert bool((w[:, :, 3:] >= 1).all())  # every later block is trained
    # the unmasked clips are stream starts: their object is at the spawn point in frame 0
    for clip in np.flatnonzero(~first_masked.numpy()):
        heavy = np.argwhere(w[clip, 0, 0].numpy() > 1)
        assert abs(heavy[:, 1].mean() - world.SPAWN_X) < 1.0


def test_model_made_context_is_the_models_own_prediction_where_asked():
    torch.manual_seed(0)
    model = ToyModel(ToyConfig()).eval()
    attn = TeacherForcedAttention(model.cfg.cache, 3, 3, (8, 8), model.cfg.dit.head_dim)
    x0, ids, _ = make_batch(np.random.default_rng(1), 2, 3, 3)
    sigma = torch.tensor([[1.0, 0.5, 0.2], [0.7, 0.7, 0.7]])
    s = sigma.repeat_interleave(3, 1)[:, None, :, None, None]
    xt = (1 - s) * x0 + s * torch.randn(x0.shape)
    cond = model.text(ids.flatten(0, 1)).unflatten(0, (2, 3))
    ctx = model_made_context(model, attn, x0, xt, sigma, s, cond, 3, torch.tensor([True, False]))
    with torch.no_grad():
        v = teacher_forced_forward(model, attn, x0, xt, sigma, cond, 3)
    torch.testing.assert_close(ctx[0], (xt - s * v)[0].clamp(-1, 1))
    assert torch.equal(ctx[1], x0[1])
    assert model_made_context(model, attn, x0, xt, sigma, s, cond, 3, torch.tensor([False, False])) is x0


@pytest.mark.parametrize("recache_block", [None, 2])
def test_rollout_context_is_the_models_own_stream_block_by_block(recache_block):
    """k passes of model_made_context equal generating blocks 1..k one at a time, each from the
    blocks generated before it (block 0, the spawn, stays ground truth), as a stream does."""
    torch.manual_seed(0)
    model = ToyModel(ToyConfig()).eval()
    nb = 4
    attn = TeacherForcedAttention(model.cfg.cache, 3, nb, (8, 8), model.cfg.dit.head_dim, recache_block=recache_block)
    x0, ids, _ = make_batch(np.random.default_rng(3), 2, nb, 3, switch_block=recache_block)
    sigma = torch.full((2, nb), 0.9)
    s = sigma.repeat_interleave(3, 1)[:, None, :, None, None]
    xt = (1 - s) * x0 + s * torch.randn(x0.shape)
    cond = model.text(ids.flatten(0, 1)).unflatten(0, (2, nb))
    use = torch.tensor([True, False])
    reference = x0.clone()
    with torch.no_grad():
        for b in range(1, nb):  # straightforward: one block at a time from what came before
            v = teacher_forced_forward(model, attn, reference, xt, sigma, cond, 3)
            reference[0, :, 3 * b:3 * b + 3] = (xt - s * v)[0, :, 3 * b:3 * b + 3].clamp(-1, 1)
    ctx = model_made_context(model, attn, x0, xt, sigma, s, cond, 3, use, passes=nb - 1)
    torch.testing.assert_close(ctx, reference, atol=1e-5, rtol=1e-5)
    assert torch.equal(ctx[1], x0[1])
    short = model_made_context(model, attn, x0, xt, sigma, s, cond, 3, use, passes=1)
    assert (short[0, :, -3:] - reference[0, :, -3:]).abs().max() > 1e-3  # one pass is not yet a rollout


def test_recache_steps_put_every_clips_switch_on_the_chosen_block():
    _, ids, _ = make_batch(np.random.default_rng(2), 6, 5, 3, switch_block=2)
    for clip in ids:
        assert torch.equal(clip[0], clip[1]) and torch.equal(clip[2], clip[3]) and torch.equal(clip[3], clip[4])
        assert not torch.equal(clip[1], clip[2])
    with pytest.raises(ValueError, match="switch_at"):
        world.sample_clip(np.random.default_rng(0), 9, switch_at=9)


def test_long_steps_hold_a_landing_and_relaunch_from_the_spawn():
    """Issue 13: the bounce period (18 frames) does not fit a 15-frame clip from the spawn."""
    tc = TrainConfig(long_every=2, long_blocks=12, long_batch=2)
    assert [clip_shape(k, tc) for k in range(4)] == [(4, 5), (2, 12), (4, 5), (2, 12)]
    assert {clip_shape(k, TrainConfig()) for k in range(4)} == {(4, 5)}
    a = world.Attributes("day", "grass", "red", "ball", "bounce", "clear")
    heights = lambda n: np.array([s.height for s in world.trajectory(world.spawn_state(a), n)])  # noqa: E731
    relaunches = lambda h: int(np.sum((h[1:-1] < h[:-2]) & (h[1:-1] <= h[2:])))  # noqa: E731  lowest points
    assert relaunches(heights(5 * 3)) == 0
    assert relaunches(heights(12 * 3)) >= 1


def test_the_compacted_optimiser_state_resumes_adam_closely():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(64))
    opt = torch.optim.AdamW([p], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        (p ** 2).sum().backward()
        opt.step()
    state = opt.state_dict()
    small = _compact_optimiser(state)
    assert small["state"][0]["exp_avg"].dtype == torch.bfloat16
    again = torch.optim.AdamW([torch.nn.Parameter(p.detach().clone())], lr=1e-2)
    again.load_state_dict(_full_optimiser(small))
    for name in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(again.state_dict()["state"][0][name], state["state"][0][name], rtol=1e-2, atol=1e-6)


def test_a_time_boxed_run_stops_with_a_checkpoint_and_resumes_to_loadable_weights(tmp_path):
    """Two tiny steps: the first run stops after its time box (a GPU lease) at step 1, the resumed
    run finishes step 2 with the rollout context on and writes weights the pipeline serves."""
    tc = TrainConfig(steps=2, batch=1, blocks=2, context_sigma=0.8, context_passes=1, long_every=0)
    out, weights = tmp_path / "run", tmp_path / "toy.safetensors"
    train(tc, ToyConfig(), out, weights, "cpu", resume=False, max_minutes=0.0)
    assert torch.load(out / "ckpt.pt", weights_only=False)["step"] == 1 and not weights.exists()
    train(tc, ToyConfig(), out, weights, "cpu", resume=True)
    assert torch.load(out / "ckpt.pt", weights_only=False)["step"] == 2
    pipe = load_pipeline("toy", weights=weights, max_streams=1)
    frames = pipe.step([pipe.open_stream(pipe.encode_prompt("a red ball rests on the grass"))])[0]
    assert frames.shape == (3, 64, 64, 3)


def test_switch_change_overrides_how_often_a_switch_changes_each_attribute():
    rng = np.random.default_rng(4)
    a = world.Attributes("day", "grass", "red", "ball", "rest", "clear")
    always = [world.switched_attributes(rng, a, change_prob={"shape": 1.0}) for _ in range(50)]
    assert all(b.shape != "ball" for b in always)
    default = [world.switched_attributes(rng, a) for _ in range(200)]
    assert 0 < sum(b.shape != "ball" for b in default) < 60  # 1 in 10 by default
    assert _change_prob("colour=0.5,shape=0.35") == {"colour": 0.5, "shape": 0.35}
    for bad in ("hue=0.5", "shape", "shape=2"):
        with pytest.raises(argparse.ArgumentTypeError):
            _change_prob(bad)


def test_sigma_low_trains_only_the_noise_levels_the_sampler_visits():
    g = torch.Generator().manual_seed(0)
    default, low = sample_sigma(g, (4000,)), sample_sigma(g, (4000,), lowest=0.8)
    assert (default < 0.8).float().mean() > 0.5  # logit-normal: most of it below the sampler's last step
    assert low.min() >= 0.8 and 0.25 < (low == 1).float().mean() < 0.35  # U(0.8, 1) plus the mass at 1
    assert 0.85 < low[low < 1].mean() < 0.95


@pytest.mark.parametrize("argv, message", [(["--context-sigma", "1.5"], "context_sigma"),
                                           (["--context-passes", "-1"], "context_passes"),
                                           (["--sigma-low", "1"], "sigma_low")])
def test_impossible_recipe_settings_are_a_clear_error(argv, message, tmp_path):
    from runtime.cli import main

    with pytest.raises(SystemExit, match=message):
        main(["train", "toy", "--steps", "1", "--out", str(tmp_path), *argv])
    assert not any(tmp_path.iterdir())  # refused before anything was written
