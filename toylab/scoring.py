"""Scoring a prompt switch against what the prompts pin down, from probe readings of the frames.

Every attribute is scored, on post-switch frames only: sky, ground, colour and shape of one
intact object, weather per frame; motion on windows by speed band and sign (left/right), by
stillness (rest), by height and period (bounce). A frame without exactly one object fails every
object attribute, and a motion window with untracked frames fails: nothing is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from toylab import world
from toylab.probe import ProbeResult

FRAME_ATTRS = ("sky", "ground", "colour", "shape", "object", "weather")
MOTION_START = 12  # frames after the switch before motion windows: a bounce's fall lands within 9
MOTION_WINDOW = 24  # frames per motion window: more than one bounce period (17.9 frames)
ROLL_BAND = (0.75, 2.25)  # px/frame of a rolling object (the world rolls at 1.5)
REST_MAX_DRIFT = 2.0  # px an object at rest may move over a window (probe jitter)
BOUNCE_MIN_APEX, BOUNCE_CONTACT = 14.0, 4.0  # px above the floor: apex reached, floor touched (apex 20)
BOUNCE_PERIOD = (13, 23)  # frames between floor contacts (the world: 17.9)
TRACKED_MIN = 0.9  # share of a window's frames with one object, or the window fails


def frame_checks(r: ProbeResult, a: world.Attributes) -> dict[str, bool]:
    """Per-frame agreement; object attributes need one intact object."""
    one = r.intact
    return {"sky": r.sky == a.sky, "ground": r.ground == a.ground, "colour": one and r.colour == a.colour,
            "shape": one and r.shape == a.shape, "object": one, "weather": r.weather == a.weather}


def track(results: list[ProbeResult]) -> np.ndarray:
    """[T, 2] centroids of frames showing exactly one object (intact or not), NaN elsewhere."""
    return np.array([(r.x, r.y) if r.present and r.objects == 1 else (np.nan, np.nan) for r in results], np.float64)


def motion_ok(pos: np.ndarray, motion: str, shape: str) -> bool:
    """Does a window of centroids [W, 2] move as `motion` says?"""
    seen = ~np.isnan(pos[:, 0])
    if seen.mean() < TRACKED_MIN:
        return False
    idx = np.flatnonzero(seen)
    xy = pos[idx]
    half = world.SIZE / 2
    step = ((np.diff(xy[:, 0]) + half) % world.SIZE - half) / np.diff(idx)
    vx, travel = float(np.median(step)), float(np.sum(step * np.diff(idx)))
    height = world.FLOOR - world.BOTTOM_OFFSET[shape] - xy[:, 1]
    if motion in ("left", "right"):
        sign = -1 if motion == "left" else 1
        return ROLL_BAND[0] <= sign * vx <= ROLL_BAND[1] and float(np.ptp(height)) <= 3.0
    if motion == "rest":
        return abs(travel) <= REST_MAX_DRIFT and float(np.ptp(height)) <= 2.0
    if abs(vx) > 0.3 or height.max() < BOUNCE_MIN_APEX or height.min() > BOUNCE_CONTACT:
        return False
    low = height <= BOUNCE_CONTACT
    starts = idx[np.flatnonzero(low & ~np.r_[False, low[:-1]])]  # first frame of each floor contact
    gaps = np.diff(starts)
    return bool(np.all((gaps >= BOUNCE_PERIOD[0]) & (gaps <= BOUNCE_PERIOD[1])))


@dataclass
class SwitchScore:
    """One stream: prompt A for `pre` frames, then prompt B."""

    frames: dict[str, list[bool]] = field(default_factory=dict)  # post-switch frames after the first block
    weather_frames: dict[str, list[bool]] = field(default_factory=dict)  # by prompted weather
    motion: list[bool] = field(default_factory=list)  # windows, all of B's motion
    latency: dict[str, int | None] = field(default_factory=dict)  # changed attributes: frames to obey
    obeyed: bool = False  # every changed attribute within one block (motion: by MOTION_START)
    jump: float | None = None  # object centroid jump across the switch, px
    step: float | None = None  # median per-frame centroid step before the switch, px


def score_switch(results: list[ProbeResult], a: world.Attributes, b: world.Attributes, pre: int,
                 frames_per_block: int) -> SwitchScore:
    post = results[pre:]
    fb = frames_per_block
    checks = [frame_checks(r, b) for r in post]
    s = SwitchScore()
    s.frames = {k: [c[k] for c in checks[fb:]] for k in FRAME_ATTRS}
    s.weather_frames = {b.weather: s.frames["weather"]}
    pos = track(results)
    s.motion = [motion_ok(pos[lo:lo + MOTION_WINDOW], b.motion, b.shape)
                for lo in range(pre + MOTION_START, len(results) - MOTION_WINDOW + 1, MOTION_WINDOW)]
    ok = []
    for attr in ("sky", "ground", "colour", "shape", "weather"):
        if getattr(a, attr) == getattr(b, attr):
            continue
        ok_frames = [c[attr] for c in checks]
        lat = next((k for k in range(len(post) - fb + 1) if all(ok_frames[k:k + fb])), None)
        s.latency[attr] = lat
        ok.append(lat is not None and lat < fb)
    if a.motion != b.motion:
        lat = next((k for k in range(0, len(post) - MOTION_WINDOW + 1, fb)
                    if motion_ok(pos[pre + k:pre + k + MOTION_WINDOW], b.motion, b.shape)), None)
        s.latency["motion"] = lat
        ok.append(lat is not None and lat <= MOTION_START)
    s.obeyed = all(ok)
    if not np.isnan(pos[pre - 1:pre + 1, 0]).any():
        d = pos[pre] - pos[pre - 1]
        s.jump = float(math.hypot((d[0] + 32) % 64 - 32, d[1]))
    before = pos[max(0, pre - 12):pre]
    steps = [math.hypot((q[0] - p[0] + 32) % 64 - 32, q[1] - p[1]) for p, q in zip(before, before[1:])
             if not (np.isnan(p[0]) or np.isnan(q[0]))]
    s.step = float(np.median(steps)) if steps else None
    return s


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k / n ((0, 1) when n = 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def stream_bootstrap(per_stream: list[list[bool]], rng: np.random.Generator, n: int = 1000) -> tuple[float, float]:
    """95 % interval of a pooled frame rate, resampling whole streams (frames of one stream are correlated)."""
    k = np.array([sum(v) for v in per_stream], float)
    m = np.array([len(v) for v in per_stream], float)
    if m.sum() == 0:
        return 0.0, 1.0
    pick = rng.integers(0, len(k), (n, len(k)))
    rates = k[pick].sum(1) / np.maximum(m[pick].sum(1), 1)
    return float(np.percentile(rates, 2.5)), float(np.percentile(rates, 97.5))
