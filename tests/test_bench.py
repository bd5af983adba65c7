"""`longlive bench` end to end, and its naive baseline against the engine."""

from __future__ import annotations

import json

import pytest
import torch

from runtime.bench import naive_blocks
from runtime.cli import main
from runtime.pipeline import load_pipeline


@pytest.mark.parametrize("positions", ["absolute", "relative"])
def test_naive_baseline_generates_what_the_engine_generates(positions):
    """The baseline is only a fair comparison if it computes the same video."""
    pipe = load_pipeline("random-small", positions=positions)
    cond = pipe.encode_prompt("a red ball rolls")
    _, naive = naive_blocks(pipe, cond, 6, seed=3)
    stream = pipe.engine.open(cond, seed=3)
    engine = torch.cat([stream.next_block() for _ in range(6)], dim=1)
    torch.testing.assert_close(naive, engine, atol=2e-4, rtol=0)


@pytest.mark.parametrize("model", ["random-small", "toy"])
def test_bench_command_writes_its_json(tmp_path, capsys, model):
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", model, "--blocks", "2", "--warmup", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == model and result["blocks"] == 2
    assert result["latent_fps"] > 0 and result["baseline_naive_rolling_cache"]["latent_fps"] > 0
    assert set(result["stage_ms_per_block"]) >= {"denoise", "context", "decode"}
    assert result["recache_ms"] > 0
    assert result["command"].startswith("longlive bench")
