"""The toy evaluation can fail: ground truth passes, every negative control fails what it should."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.toy.model import ToyConfig, ToyModel, save_weights
from toylab import evaluate, scoring, world

PRE, POST, FB = 24, 60, 3


@pytest.fixture(scope="module")
def pairs():
    prompts = evaluate.read_prompts(evaluate.DATA / "validation_prompts.tsv")
    return evaluate.switch_pairs(prompts, 8, seed=3)


def summary(video, pairs, refused=None):
    refused = refused or [False] * len(pairs)
    return evaluate.summarise(evaluate.score_video(video, pairs, refused, PRE, FB), pairs, POST, FB)


def rate(s, row):
    return s[row]["rate"]


@pytest.fixture(scope="module")
def truth(pairs):
    return evaluate.ground_truth(pairs, PRE, POST)


def test_ground_truth_passes_everything(pairs, truth):
    s = summary(truth, pairs)
    for row in evaluate.ROWS:
        assert s[row]["n"] == 0 or rate(s, row) >= 0.99, (row, s[row])
    assert all(v["n"] == 0 or v["rate"] == 1.0 for v in s["time to obey"].values())


def test_a_still_bar_fails_the_object_and_its_motion(pairs):
    s = summary(evaluate.still_bar(pairs, PRE, POST), pairs)
    assert rate(s, "frames sky") == 1.0  # the scene is right ...
    for row in ("frames object", "frames colour", "frames shape", "frames scene (sky+ground+colour)"):
        assert rate(s, row) == 0.0, row  # ... but a bar is no intact ball, cube or triangle
    for m in ("left", "right", "bounce"):
        assert s[f"motion windows {m}"]["n"] == 0 or rate(s, f"motion windows {m}") == 0.0


def test_a_frozen_first_frame_and_ignored_switches_fail_the_switch(pairs, truth):
    frozen = summary(np.repeat(truth[:, :1], PRE + POST, 1), pairs)
    assert rate(frozen, "switch: every changed attribute obeyed in time") == 0.0
    assert rate(frozen, "frames scene (sky+ground+colour)") < 0.5
    for m in ("left", "right", "bounce"):
        assert frozen[f"motion windows {m}"]["n"] == 0 or rate(frozen, f"motion windows {m}") == 0.0
    kept = [(a, a) for a, _ in pairs]  # the world never switched: B's frames show A
    ignored = summary(evaluate.ground_truth(kept, PRE, POST), pairs)
    assert rate(ignored, "switch: every changed attribute obeyed in time") == 0.0


def test_an_untrained_model_fails_the_object(pairs, tmp_path: Path):
    torch.manual_seed(0)
    save_weights(ToyModel(ToyConfig()), tmp_path / "toy.safetensors")
    few = pairs[:3]
    video, refused = evaluate.generate(evaluate._pipe(tmp_path / "toy.safetensors", 3), few, PRE, 36, "recache", 0)
    s = evaluate.summarise(
        evaluate.score_video(video, few, refused, PRE, FB), few, 36, FB)
    for row in ("frames object", "frames colour", "switch: every changed attribute obeyed in time"):
        assert rate(s, row) <= 0.05, row


def test_a_refused_prompt_fails_instead_of_vanishing(pairs, truth):
    s = summary(truth, pairs, refused=[True] + [False] * (len(pairs) - 1))
    assert s["refused prompts"] == 1
    assert s["frames sky"]["n"] == len(pairs) * (POST - FB) and rate(s, "frames sky") < 1.0


def test_motion_bands():
    t = np.arange(24.0)
    floor = world.FLOOR - world.BOTTOM_OFFSET["ball"]
    line = lambda x: np.stack([x % 64, np.full(24, floor)], 1)  # noqa: E731
    assert scoring.motion_ok(line(10 - 1.5 * t), "left", "ball")
    assert not scoring.motion_ok(line(10 - 3.5 * t), "left", "ball")  # too fast
    assert not scoring.motion_ok(line(10 + 0.3 * t), "right", "ball")  # a crawl is not a roll
    assert scoring.motion_ok(line(np.full(24, 20.0)), "rest", "ball")
    jitter = np.stack([np.full(24, 20.0), floor - 3 * (t % 2)], 1)
    assert not scoring.motion_ok(jitter, "bounce", "ball")  # 3-px jitter is no bounce
    hover = np.stack([np.full(24, 20.0), np.full(24, floor - 18)], 1)
    assert not scoring.motion_ok(hover, "bounce", "ball")
    gone = line(10 - 1.5 * t)
    gone[::4] = np.nan
    assert not scoring.motion_ok(gone, "left", "ball")  # untracked frames fail the window


def test_wilson_interval():
    lo, hi = scoring.wilson(64, 64)
    assert 0.94 < lo < 0.95 and hi == 1.0
    lo, hi = scoring.wilson(32, 64)
    assert lo < 0.5 < hi and abs((lo + hi) / 2 - 0.5) < 1e-9
