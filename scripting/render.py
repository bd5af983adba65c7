"""Offline rendering: a story's plan played through the engine in-process, as fast as the
machine allows, into an mp4 and its prompt-timeline sidecar (plugins/timeline.py).

Prompt changes land by the rule in ``scripting.plan`` at the stream's real block boundaries
(``stream.frame_index`` before each ``pipe.step``), which is what the daemon does live.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from plugins.recorder import VideoWriter
from plugins.timeline import Entry, Timeline, TimelineWriter
from runtime.pipeline import Pipeline, PromptError, VideoStream
from scripting.errors import ScriptError
from scripting.plan import Boundaries, Plan
from scripting.story import Cue

FrameSink = Callable[[int, np.ndarray], None]  # (index of the first frame, frames [n, H, W, 3])


def encode_all(pipe: Pipeline, cues: list[Cue]) -> dict[str, object]:
    """Every distinct prompt text encoded before the first frame, so that a prompt the model
    cannot take fails at once with the story line that shows it."""
    encoded: dict[str, object] = {}
    for cue in cues:
        if cue.text not in encoded:
            try:
                encoded[cue.text] = pipe.encode_prompt(cue.text)
            except PromptError as exc:
                raise ScriptError(f"the {pipe.name} model cannot take {cue.text!r}: {exc}", cue.file, cue.line) from None
    return encoded


def _switch(stream: VideoStream, cue: Cue, cond: object) -> None:
    if cue.transition == "blend":
        stream.blend_to(cond, blocks=cue.blocks)
    else:
        stream.switch_prompt(cond, transition=cue.transition)


def play_plan(pipe: Pipeline, plan: Plan, seed: int, sink: FrameSink, progress: bool = False,
              limit: int | None = None) -> list[Entry]:
    """Generate the plan's ``plan.end`` frames (only the first ``limit`` if given), handing
    each block to ``sink``; returns the prompt timeline (one entry per prompt that took
    effect, with its first frame)."""
    assert plan.opening is not None
    end = plan.end if limit is None else min(plan.end, limit)
    encoded = encode_all(pipe, plan.prompts)
    stream = pipe.open_stream(encoded[plan.opening.text], seed=plan.seed if plan.seed is not None else seed)
    timeline = [Entry(frame=0, event_type="open", text=plan.opening.text, source="script")]
    boundaries = Boundaries(plan)
    try:
        with tqdm(total=end, unit="frame", disable=not progress, desc="render") as bar:
            while stream.frame_index < end:
                boundary = stream.frame_index
                if boundary > 0:  # the first block always shows the opening prompt
                    cue, seed_cue = boundaries.due(boundary)
                    if cue is not None:
                        _switch(stream, cue, encoded[cue.text])
                        timeline.append(Entry(frame=boundary, text=cue.text, transition=cue.transition, source="script"))
                    if seed_cue is not None:
                        stream.set_seed(seed_cue.seed)
                frames = pipe.step([stream])[0][: end - boundary]
                sink(boundary, frames)
                bar.update(len(frames))
    finally:
        pipe.close_stream(stream)
    return timeline


def render_to_file(pipe: Pipeline, plan: Plan, seed: int, out: str | Path, session: str = "story",
                   progress: bool = True, limit: int | None = None) -> Timeline:
    """Write ``out`` (mp4) and ``out`` with suffix .json (the timeline sidecar)."""
    out = Path(out)
    sidecar = out.with_suffix(".json")
    opening_seed = plan.seed if plan.seed is not None else seed
    head = Timeline(session=session, model=pipe.name, fps=pipe.fps, frame_shape=tuple(pipe.frame_shape),
                    seed=opening_seed, video=out.name, frames=None)
    with VideoWriter(out, pipe.fps, pipe.frame_shape) as video:
        entries = play_plan(pipe, plan, seed, lambda first, frames: video.write(frames), progress, limit)
        frames = video.frames
    writer = TimelineWriter(sidecar, head)
    for entry in entries:
        writer.add(entry)
    writer.finish(frames)
    return writer.timeline
