"""The exposure diagnostic: teacher-forced vs free-running generation, scored against the world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.pipeline import load_pipeline
from runtime.toy.model import ToyConfig, ToyModel, save_weights
from toylab import exposure, world


@pytest.fixture(scope="module")
def pairs():
    return exposure.streams_for(4, seed=0)


def test_streams_take_the_motions_in_turn(pairs):
    assert [a.motion for _, a in pairs] == list(world.MOTIONS)


def test_ground_truth_scores_everything_right(pairs):
    attrs = [a for _, a in pairs]
    truth = np.stack([world.simulate(world.spawn_state(a), 36)[0] for a in attrs])
    for checks in exposure.score(truth, attrs, 3).values():
        assert all(np.mean(v) >= 0.98 for v in checks.values())  # the probe reads >= 99 % of ground truth


def test_the_shipped_model_continues_true_context_and_an_untrained_one_fails_both(pairs, tmp_path: Path):
    """Teacher forcing must reach the cache: given the true blocks, the shipped model keeps the object
    intact where it should be (rest/left/right), which it does not do as well from its own frames;
    a model that cannot draw fails in both modes."""
    prompts, attrs = [p for p, _ in pairs], [a for _, a in pairs]
    truth = np.stack([world.simulate(world.spawn_state(a), 36)[0] for a in attrs])
    pipe = load_pipeline("toy", max_streams=4)
    teacher = exposure.score(exposure.run_streams(pipe, prompts, truth, True, 0), attrs, 3)
    for motion in ("rest", "left", "right"):
        assert np.mean(teacher[f"motion {motion}"]["intact"]) >= 0.9
        assert np.mean(teacher[f"motion {motion}"]["near"]) >= 0.9
    save_weights(ToyModel(ToyConfig()), tmp_path / "toy.safetensors")
    untrained = load_pipeline("toy", weights=tmp_path / "toy.safetensors", max_streams=4)
    for teacher_forced in (True, False):
        scores = exposure.score(exposure.run_streams(untrained, prompts, truth, teacher_forced, 0), attrs, 3)
        assert all(np.mean(c["intact"]) == 0 for g, c in scores.items() if g.startswith("motion"))


def test_a_negative_stream_count_is_a_clear_error():
    from runtime.cli import main

    with pytest.raises(SystemExit, match="number of streams"):
        main(["eval", "toy", "--exposure", "-2"])
