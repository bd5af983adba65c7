"""The ring-buffer engine against a plain restatement of LongLive's cache and loop."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from runtime.dit import CausalWanModel, DiTConfig
from runtime.kv_cache import CacheConfig
from runtime.schedule import FlowSchedule, ScheduleConfig
from runtime.stream import Engine, EngineConfig
from tests.longlive_reference import reference_stream

LATENT = (3, 16, 16)  # 2x2 tokens per frame with the tiny preset's 8x8 patches: fast on 2 cores
ATOL = 2e-4


@pytest.fixture(scope="module")
def model() -> CausalWanModel:
    torch.manual_seed(0)
    return CausalWanModel(DiTConfig.preset("tiny")).eval()


@pytest.fixture(scope="module")
def schedule() -> FlowSchedule:
    return FlowSchedule(ScheduleConfig())


def make_engine(model, schedule, block, window, sink, positions="absolute", global_sink=True, streams=1):
    cfg = EngineConfig(latent_shape=LATENT, frames_per_block=block, global_sink=global_sink,
                       cache=CacheConfig(sink_frames=sink, window_frames=window, positions=positions))
    return Engine(model, schedule, cfg, max_streams=streams)


def prompts(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 32, generator=g) for _ in range(n)]


def run_engine(engine, n_blocks, conds: dict[int, torch.Tensor], seed, transition="recache"):
    stream = engine.open(conds[0], seed=seed)
    out = []
    for b in range(n_blocks):
        if b > 0 and b in conds:
            stream.switch_prompt(conds[b], transition)
        out.append(stream.next_block())
    return torch.cat(out, dim=1)


configs = st.tuples(
    st.integers(0, 3),  # sink frames
    st.integers(1, 3),  # frames per block
    st.integers(0, 4),  # ring frames beyond one block
).map(lambda t: dict(sink=t[0], block=t[1], window=t[0] + t[1] + t[2]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=configs, extra_blocks=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_ring_buffer_matches_reference(model, schedule, cfg, extra_blocks, seed):
    n_blocks = cfg["window"] // cfg["block"] + extra_blocks  # well past the window
    conds = {0: prompts(1, seed)[0]}
    engine = make_engine(model, schedule, cfg["block"], cfg["window"], cfg["sink"])
    got = run_engine(engine, n_blocks, conds, seed)
    want = reference_stream(model, schedule, LATENT, cfg["block"], n_blocks, cfg["window"], cfg["sink"],
                            conds, seed)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=configs, switches=st.sets(st.integers(1, 9), min_size=1, max_size=3),
       global_sink=st.booleans(), relative=st.booleans(), seed=st.integers(0, 2**16))
def test_recache_matches_reference(model, schedule, cfg, switches, global_sink, relative, seed):
    n_blocks = 10
    ps = prompts(len(switches) + 1, seed)
    conds = {0: ps[0], **{b: ps[i + 1] for i, b in enumerate(sorted(switches))}}
    engine = make_engine(model, schedule, cfg["block"], cfg["window"], cfg["sink"],
                         "relative" if relative else "absolute", global_sink)
    got = run_engine(engine, n_blocks, conds, seed)
    want = reference_stream(model, schedule, LATENT, cfg["block"], n_blocks, cfg["window"], cfg["sink"],
                            conds, seed, global_sink=global_sink, relative=relative)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_longlive_geometry_matches_reference_in_both_modes(model, schedule):
    """LongLive's own numbers: blocks of 3, window 12 with a 3-frame sink, switches at 42 and 81."""
    ps = prompts(3, 7)
    conds = {0: ps[0], 14: ps[1], 27: ps[2]}
    for relative in (False, True):
        for global_sink in (True, False):
            engine = make_engine(model, schedule, 3, 12, 3, "relative" if relative else "absolute", global_sink)
            got = run_engine(engine, 32, conds, seed=1)
            want = reference_stream(model, schedule, LATENT, 3, 32, 12, 3, conds, 1,
                                    global_sink=global_sink, relative=relative)
            torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_relative_mode_does_not_depend_on_absolute_time(model, schedule):
    """Shift every frame index by 5000: a relative-position stream must not notice."""
    cond = prompts(1, 3)[0]
    outs = []
    for shift in (0, 5000):
        engine = make_engine(model, schedule, 3, 12, 3, "relative")
        stream = engine.open(cond, seed=11)
        stream.frame = stream.layout.sink_origin = shift  # positions are f - origin, origin stays 0
        outs.append(torch.cat([stream.next_block() for _ in range(8)], dim=1))
    torch.testing.assert_close(outs[0], outs[1], atol=ATOL, rtol=0)


def test_relative_stream_runs_past_the_rope_table(model, schedule):
    engine = make_engine(model, schedule, 3, 6, 1, "relative")
    stream = engine.open(prompts(1)[0], seed=0)
    while stream.frame <= 1030:
        block = stream.next_block()
    assert stream.frame > 1024 and torch.isfinite(block).all()


def test_absolute_mode_stops_at_the_rope_table_with_a_clear_error(model, schedule):
    cfg = EngineConfig(latent_shape=LATENT, cache=CacheConfig(positions="absolute", rope_max_frames=12))
    stream = Engine(model, schedule, cfg).open(prompts(1)[0])
    for _ in range(4):
        stream.next_block()
    with pytest.raises(ValueError, match="positions='relative'"):
        stream.next_block()


def test_cut_starts_a_new_shot(model, schedule):
    """After a cut the stream continues exactly like a fresh stream with the new prompt."""
    a, b = prompts(2, 5)
    engine = make_engine(model, schedule, 3, 12, 3, "absolute", streams=2)
    stream = engine.open(a, seed=4)
    for _ in range(6):
        stream.next_block()
    fresh = engine.open(b, seed=99)
    fresh.generator.set_state(stream.generator.get_state())
    stream.switch_prompt(b, "cut")
    for _ in range(5):
        torch.testing.assert_close(stream.next_block(), fresh.next_block(), atol=ATOL, rtol=0)


def test_none_swaps_conditioning_only(model, schedule):
    a, b = prompts(2, 6)
    base = make_engine(model, schedule, 3, 12, 3)
    s1 = base.open(a, seed=2)
    for _ in range(6):
        s1.next_block()
    cache_before = base.cache.k.clone()
    s1.switch_prompt(b, "none")
    s1._apply_pending()
    assert torch.equal(base.cache.k, cache_before)
    assert torch.equal(s1.cond, b)


def test_batched_streams_equal_separate_streams(model, schedule):
    """Two streams at different positions, with a recache, advance in one batched forward."""
    a, b, c = prompts(3, 8)
    batched = make_engine(model, schedule, 3, 9, 2, "relative", streams=3)
    singles = [make_engine(model, schedule, 3, 9, 2, "relative") for _ in range(2)]
    sb = [batched.open(a, seed=1), batched.open(b, seed=2)]
    ss = [singles[0].open(a, seed=1), singles[1].open(b, seed=2)]
    for _ in range(2):  # desynchronise: stream 0 is two blocks ahead
        sb[0].next_block()
        ss[0].next_block()
    for step in range(8):
        if step == 4:
            sb[1].switch_prompt(c)
            ss[1].switch_prompt(c)
        got = batched.step(sb[::-1])[::-1]  # order of the call does not matter
        for g, s in zip(got, ss):
            torch.testing.assert_close(g, s.next_block(), atol=ATOL, rtol=0)


def test_noncontiguous_rows_batch(model, schedule):
    a, b, c = prompts(3, 9)
    engine = make_engine(model, schedule, 3, 9, 2, streams=3)
    s0, _row1, s2 = engine.open(a, seed=1), engine.open(b, seed=2), engine.open(c, seed=3)  # rows 0 and 2 step
    single = make_engine(model, schedule, 3, 9, 2).open(c, seed=3)
    for _ in range(5):
        got = engine.step([s0, s2])[1]
        torch.testing.assert_close(got, single.next_block(), atol=ATOL, rtol=0)


def test_impossible_settings_are_rejected(model, schedule):
    with pytest.raises(ValueError, match="must hold at least one block"):
        make_engine(model, schedule, block=3, window=4, sink=2)
    engine = make_engine(model, schedule, 3, 12, 3)
    with pytest.raises(ValueError, match="conditioning must have shape"):
        engine.open(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="unknown transition"):
        engine.open(prompts(1)[0]).switch_prompt(prompts(1)[0], "fade")
    with pytest.raises(RuntimeError, match="slots are in use"):
        engine.open(prompts(1)[0])


def test_bfloat16_matches_float32_on_cpu(model, schedule):
    cond = prompts(1, 2)[0]
    want = run_engine(make_engine(model, schedule, 3, 12, 3), 6, {0: cond}, 3)
    bf = CausalWanModel(model.cfg).eval()
    bf.load_state_dict(model.state_dict())
    bf = bf.to(torch.bfloat16)
    got = run_engine(make_engine(bf, schedule, 3, 12, 3), 6, {0: cond}, 3).float()
    assert got.dtype == torch.float32 and (got - want).abs().mean() < 0.05
