"""CUDA paths: skipped cleanly on machines without a GPU."""

from __future__ import annotations

import pytest
import torch

from runtime.attention import attention, flash_attn_func
from runtime.dit import CausalWanModel, DiTConfig
from runtime.kv_cache import CacheConfig
from runtime.schedule import FlowSchedule, ScheduleConfig
from runtime.stream import Engine, EngineConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def run(model, blocks: int = 6) -> torch.Tensor:
    engine = Engine(model, FlowSchedule(ScheduleConfig()),
                    EngineConfig(latent_shape=(3, 32, 32), cache=CacheConfig(positions="relative")))
    stream = engine.open(torch.randn(8, 32, generator=torch.Generator().manual_seed(0)), seed=0)
    return torch.cat([stream.next_block().float().cpu() for _ in range(blocks)], dim=1)


def test_cuda_bfloat16_engine_tracks_cpu_float32():
    torch.manual_seed(0)
    cpu = CausalWanModel(DiTConfig.preset("tiny")).eval()
    gpu = CausalWanModel(DiTConfig.preset("tiny")).eval()
    gpu.load_state_dict(cpu.state_dict())
    want = run(cpu)
    got = run(gpu.to("cuda", torch.bfloat16))
    assert (got - want).abs().mean() < 0.05


@pytest.mark.skipif(flash_attn_func is None, reason="flash-attn not installed")
def test_flash_attn_equals_sdpa():
    q, k, v = (torch.randn(2, 4, 96, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(attention(q, k, v), want, atol=2e-2, rtol=2e-2)
