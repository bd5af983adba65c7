"""Attribute probe: >= 99 % per attribute on ground-truth renders, with and without the
noise and blur a generator adds; motion from centroid tracks."""

import dataclasses

import numpy as np
import pytest

from toylab import world
from toylab.probe import motion_from_track, probe_frame, probe_frames, track
from toylab.world import Attributes, SceneState

N_CLIPS, CLIP_LEN = 50, 6  # 300 frames, half of them held-out combinations


def degrade(frames: np.ndarray, rng: np.random.Generator, sigma: float = 8.0) -> np.ndarray:
    """Generator-like damage: a [1, 2, 1]/4 blur in x and y, then Gaussian pixel noise."""
    x = frames.astype(np.float32)
    x = (np.roll(x, 1, -2) + 2 * x + np.roll(x, -1, -2)) / 4
    p = np.concatenate([x[..., :1, :, :], x, x[..., -1:, :, :]], axis=-3)
    x = (p[..., :-2, :, :] + 2 * p[..., 1:-1, :, :] + p[..., 2:, :, :]) / 4
    return np.clip(x + rng.normal(0, sigma, x.shape) + 0.5, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def ground_truth():
    rng = np.random.default_rng(2024)
    clips = [world.sample_clip(rng, CLIP_LEN, split="held_out" if i % 2 else "train") for i in range(N_CLIPS)]
    frames = np.concatenate([c.frames for c in clips])
    attrs = [a for c in clips for a in c.attrs]
    positions = np.concatenate([c.positions for c in clips])
    assert {a.weather for a in attrs} == set(world.WEATHERS)
    return frames, attrs, positions


def accuracy(frames, attrs, positions):
    results = probe_frames(frames)
    acc = {name: np.mean([getattr(r, name) == getattr(a, name) for r, a in zip(results, attrs)])
           for name in ("sky", "ground", "colour", "shape")}
    acc["present"] = np.mean([r.present for r in results])
    got = track(results)
    dx = (got[:, 0] - positions[:, 0] + 32) % 64 - 32
    return acc, np.hypot(dx, got[:, 1] - positions[:, 1])


def test_probe_reads_ground_truth(ground_truth):
    acc, error = accuracy(*ground_truth)
    assert min(acc.values()) >= 0.99, acc
    assert np.nanpercentile(error, 99) < 1.0 and np.nanmean(error) < 0.4


def test_probe_survives_blur_and_noise(ground_truth):
    frames, attrs, positions = ground_truth
    acc, error = accuracy(degrade(frames, np.random.default_rng(0)), attrs, positions)
    assert min(acc.values()) >= 0.99, acc
    assert np.nanpercentile(error, 99) < 1.5


def test_probe_accepts_a_float_round_trip(ground_truth):
    frames, attrs, _ = ground_truth
    result = probe_frame(world.to_uint8(world.to_float(frames[0])))
    assert (result.sky, result.colour, result.shape) == (attrs[0].sky, attrs[0].colour, attrs[0].shape)


@pytest.mark.parametrize("weather", world.WEATHERS)
def test_empty_scene_has_no_object(weather):
    # Objects at three spread-out x positions: every pixel is background in two of the three
    # frames, so the per-pixel median is the scene without its object, particles included.
    a = Attributes("night", "snow", "yellow", "ball", "rest", weather)
    frames = world.render([SceneState(a, x, 40.0, 0, 0, 5, 3) for x in (5.0, 26.0, 47.0)])
    empty = np.median(frames, axis=0).astype(np.uint8)
    result = probe_frame(empty)
    assert not result.present and result.colour is None and (result.sky, result.ground) == ("night", "snow")
    assert not probe_frame(degrade(empty, np.random.default_rng(1))).present
    assert probe_frame(frames[0]).present


def test_object_across_the_wrap_is_measured_whole():
    a = Attributes("day", "grass", "purple", "triangle", "rest", "clear")
    result = probe_frame(world.render([SceneState(a, 0.4, 40.0, 0, 0, 0, 1)])[0])
    assert result.shape == "triangle" and result.colour == "purple"
    assert abs((result.x - 0.4 + 32) % 64 - 32) < 0.5 and abs(result.y - 40.0) < 0.5


# ----------------------------------------------------------------------------- motion

def test_motion_from_probed_tracks():
    rng = np.random.default_rng(5)
    correct, total = 0, 0
    for motion in world.MOTIONS:
        for _ in range(25):
            a = world.sample_attributes(rng)
            state = world.initial_state(rng, Attributes(a.sky, a.ground, a.colour, a.shape, motion, a.weather))
            frames, _ = world.simulate(state, 12)
            correct += motion_from_track(track(probe_frames(degrade(frames, rng)))) == motion
            total += 1
    assert correct / total >= 0.99


def test_motion_from_track_unwraps_and_skips_missing_frames():
    x = (62.0 + 1.5 * np.arange(10)) % 64
    positions = np.stack([x, np.full(10, 47.5)], axis=1)
    assert motion_from_track(positions) == "right"
    assert motion_from_track(positions[::-1]) == "left"
    positions[[2, 3, 7]] = np.nan
    assert motion_from_track(positions) == "right"
    assert motion_from_track(np.stack([np.full(10, 20.0), 47.5 - np.abs(np.sin(np.arange(10) / 3)) * 10], 1)) == "bounce"
    assert motion_from_track(np.stack([np.full(10, 20.0), np.full(10, 47.5)], 1)) == "rest"
    positions[3:] = np.nan
    assert motion_from_track(positions) is None


# ----------------------------------------------------------------------------- objects and weather

def test_probe_reads_weather_and_one_intact_object(ground_truth):
    frames, attrs, _ = ground_truth
    results = probe_frames(frames)
    assert np.mean([r.weather == a.weather for r, a in zip(results, attrs)]) >= 0.99
    assert all(r.intact and r.objects == 1 for r in results)


def test_weather_survives_blur_and_noise_except_faint_rain(ground_truth):
    """Generator-like damage keeps clear skies clear (a blurred star is not a flake) and snow snow;
    the [1, 2, 1] blur halves a 1-px rain streak, below the particle threshold on pale skies."""
    frames, attrs, _ = ground_truth
    results = probe_frames(degrade(frames, np.random.default_rng(0)))
    rate = {w: np.mean([r.weather == w for r, a in zip(results, attrs) if a.weather == w]) for w in world.WEATHERS}
    assert rate["clear"] >= 0.95 and rate["snow"] >= 0.9, rate


def test_noise_and_smeared_particles_are_not_weather(ground_truth):
    """Negative controls: an untrained generator's colour noise is not snow, and particles smeared
    into 8-row bands (what a patch model that cannot place them draws) are not rain."""
    frames, _, _ = ground_truth
    noisy = np.clip(frames + np.random.default_rng(1).normal(0, 60, frames.shape), 0, 255).astype(np.uint8)
    assert np.mean([r.weather != "clear" for r in probe_frames(noisy)]) <= 0.1
    kinds = [Attributes(sky, "grass", "red", "cube", "rest", w) for sky in world.SKIES for w in ("rain", "snow")]
    states = [SceneState(a, 32.0, 47.5, 0, 0, t, 0) for t, a in enumerate(kinds * 5)]
    wet = world.render(states).astype(np.float32)
    dry = world.render([dataclasses.replace(s, attrs=dataclasses.replace(s.attrs, weather="clear"))
                        for s in states]).astype(np.float32)
    assert [r.weather for r in probe_frames(wet.astype(np.uint8))] == [s.attrs.weather for s in states]
    bands = (wet - dry).reshape(len(states), 8, 8, 64, 3).mean(2, keepdims=True).repeat(8, 2).reshape(wet.shape)
    smeared = np.clip(dry + bands + 0.5, 0, 255).astype(np.uint8)
    assert np.mean([r.weather != "clear" for r in probe_frames(smeared)]) <= 0.2


def test_a_doubled_or_bar_shaped_object_is_not_intact():
    a = Attributes("day", "grass", "red", "ball", "rest", "clear")
    one, other = world.render([SceneState(a, x, 47.5, 0, 0, 0, 1) for x in (16.0, 46.0)])
    scene = world.render([SceneState(a, 16.0, 47.5, 0, 0, 0, 1)], objects=False)[0]
    drawn = (other != scene).any(-1, keepdims=True)
    r = probe_frame(np.where(drawn, other, one))  # the same ball twice, as at a badly drawn wrap
    assert r.objects >= 2 and not r.intact
    bar = world.render([SceneState(a, 16.0, 47.5, 0, 0, 0, 1)], objects=False)[0]
    bar[47:55, 17:47] = world.COLOUR_RGB["red"]
    r = probe_frame(bar)
    assert r.present and r.colour == "red" and not r.intact
