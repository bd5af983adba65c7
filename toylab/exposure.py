"""``longlive eval toy --exposure N``: how much of the toy's error is its own.

The same spawn streams run twice through the real engine. *Teacher-forced*: after every block
the cache keeps the world's ground-truth block (``Engine.step(..., context=...)``), so each block
is the model's one-block-ahead prediction from known frames. *Free-running*: the cache keeps
what the model drew, as in serving. Both are scored against the world's ground truth for the
same prompt: by prompted motion, one intact object and its centroid within ``NEAR_PX`` of the true
one; by prompted weather, the weather read right.
A model that draws well from true context but drifts from its own (issue 13: exposure bias)
shows a large gap; a model that cannot draw at all fails both (the untrained control).
Prompts are template sentences of training-side combinations (a diagnostic, like validation).
"""

from __future__ import annotations

import numpy as np
import torch

from runtime.pipeline import Pipeline
from toylab import scoring, world
from toylab.probe import probe_frames
from toylab.prompts import make_prompt

NEAR_PX = 2.0
MODES = ("teacher-forced", "free-running")


def streams_for(n: int, seed: int) -> list[tuple[str, world.Attributes]]:
    """n (prompt, attributes) pairs, motions in turn so each gets n / 4."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        attrs = world.sample_attributes(rng, "train")
        if attrs.motion == world.MOTIONS[len(out) % len(world.MOTIONS)]:
            out.append((make_prompt(attrs, rng), attrs))
    return out


@torch.no_grad()
def run_streams(pipe: Pipeline, prompts: list[str], truth: np.ndarray, teacher: bool, seed: int) -> np.ndarray:
    """uint8 [S, T, 64, 64, 3] generated for `prompts`; with `teacher` the cache keeps `truth`'s blocks."""
    engine = pipe.engine
    fb = engine.cfg.frames_per_block
    known = torch.from_numpy(world.to_float(truth)).permute(0, 4, 1, 2, 3)  # [S, 3, T, 64, 64]
    streams = [engine.open(pipe.encode_prompt(p), seed=seed + i) for i, p in enumerate(prompts)]
    blocks = []
    try:
        for b in range(truth.shape[1] // fb):
            context = [known[i, :, b * fb:(b + 1) * fb] for i in range(len(streams))] if teacher else None
            blocks.append(torch.stack(engine.step(streams, context)))
    finally:
        for s in streams:
            engine.close(s)
    return world.to_uint8(torch.cat(blocks, 2).permute(0, 2, 3, 4, 1).float().numpy())


def score(video: np.ndarray, attrs: list[world.Attributes], skip: int) -> dict[str, dict[str, list[bool]]]:
    """Frame checks after the first `skip` frames, grouped by prompted motion (one intact object, near
    its true centroid) and by prompted weather (read right)."""
    out: dict[str, dict[str, list[bool]]] = {}
    for frames, a in zip(video, attrs):
        results = probe_frames(frames)[skip:]
        truth = np.array([(s.x, s.y) for s in world.trajectory(world.spawn_state(a), len(frames))])[skip:]
        seen = scoring.track(results)
        dx = (seen[:, 0] - truth[:, 0] + world.SIZE / 2) % world.SIZE - world.SIZE / 2
        near = np.nan_to_num(np.hypot(dx, seen[:, 1] - truth[:, 1]), nan=np.inf) <= NEAR_PX
        motion = out.setdefault(f"motion {a.motion}", {"intact": [], "near": []})
        motion["intact"] += [bool(r.present and r.objects == 1 and r.intact) for r in results]
        motion["near"] += near.tolist()
        out.setdefault(f"weather {a.weather}", {"right": []})["right"] += [r.weather == a.weather for r in results]
    return out


def exposure(pipe: Pipeline, n: int = 24, frames: int = 72, seed: int = 0) -> dict:
    """{mode: {group: {check: rate, "n": frames}}} for teacher-forced and free-running generation."""
    pairs = streams_for(n, seed)
    attrs = [a for _, a in pairs]
    truth = np.stack([world.simulate(world.spawn_state(a), frames)[0] for a in attrs])
    fb = pipe.engine.cfg.frames_per_block
    result = {}
    for mode in MODES:
        video = run_streams(pipe, [p for p, _ in pairs], truth, mode == "teacher-forced", seed)
        checks = score(video, attrs, fb)
        result[mode] = {g: {**{k: float(np.mean(v)) for k, v in c.items()}, "n": len(next(iter(c.values())))}
                        for g, c in sorted(checks.items())}
    return result


def table(result: dict) -> list[str]:
    """Markdown rows: group (frames) | one cell per mode."""
    lines = ["| group (frames) | " + " | ".join(result) + " |", "|---|" + "---|" * len(result)]
    for g, first in result[MODES[0]].items():
        cells = [" · ".join(f"{k} {v:.0%}" for k, v in result[mode][g].items() if k != "n") for mode in result]
        lines.append(f"| {g} ({first['n']}) | " + " | ".join(cells) + " |")
    return lines
