"""Stories run offline: the plan follows the at_frame rule, renders are byte-identical, every
example renders, answers count at the documented frames, and errors name the story's line."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from plugins.timeline import read_timeline
from runtime.cli import main
from runtime.pipeline import load_pipeline
from scripting.answers import Input, parse_answers
from scripting.errors import ScriptError
from scripting.plan import plan_story
from scripting.render import play_plan, render_to_file
from scripting.runner import load_story

EXAMPLES = sorted(p for p in (Path(__file__).parent.parent / "scripting" / "examples").glob("*.py")
                  if p.name != "__init__.py")

BRANCHING = '''
async def story(s):
    await s.show("a red ball rests on the green grass under a sunny sky", seconds=1)
    pick = await s.choose("Where?", ["night", "snow"], timeout=2, default=1)
    if pick == 0:
        await s.show("a red ball rests on the green grass under a starry night sky", seconds=1)
    else:
        await s.show("a red ball rests on the snowy field under a sunny sky", seconds=1, transition="cut")
'''


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("toy", max_streams=1)


def write(tmp_path: Path, text: str, name: str = "story.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def render_frames(pipe, plan, seed: int = 0) -> tuple[np.ndarray, list]:
    blocks: list[np.ndarray] = []
    timeline = play_plan(pipe, plan, seed, lambda first, frames: blocks.append(np.array(frames)))
    return np.concatenate(blocks), timeline


def test_same_story_seed_and_answers_render_identical_frames(tmp_path, pipe):
    story = load_story(write(tmp_path, BRANCHING))
    plan = plan_story(story, pipe.fps, parse_answers("0@20"))
    first, timeline = render_frames(pipe, plan)
    second, _ = render_frames(pipe, plan_story(story, pipe.fps, parse_answers("0@20")))
    assert first.shape == (plan.end, 64, 64, 3) and first.tobytes() == second.tobytes()
    # the answer counts at frame 20, so the next prompt lands at the first boundary >= 20
    assert [(e.frame, e.text) for e in timeline][1] == (21, "a red ball rests on the green grass under a starry night sky")
    other, _ = render_frames(pipe, plan_story(story, pipe.fps, parse_answers("0@20")), seed=1)
    assert other.tobytes() != first.tobytes()  # negative control: the seed matters


def test_answer_frames_follow_the_rule(tmp_path, pipe):
    story = load_story(write(tmp_path, BRANCHING))
    fps = pipe.fps  # 16: the choice is offered at frame 16, times out at frame 48
    assert plan_story(story, fps, [Input(index=0)]).answers[0].frame == 16  # no frame: when offered
    assert plan_story(story, fps, [Input(index=0, frame=3)]).answers[0].frame == 16  # before the offer: at it
    timed_out = plan_story(story, fps, [])  # nobody answers: the default at the deadline
    assert timed_out.answers[0].timed_out and timed_out.answers[0].frame == 48
    assert timed_out.cues[0].text.endswith("snowy field under a sunny sky") and timed_out.cues[0].frame == 48
    with pytest.raises(ScriptError, match="after its timeout at frame 48"):
        plan_story(story, fps, [Input(index=0, frame=49)])
    with pytest.raises(ScriptError, match=r"option index in 0\.\.1"):
        plan_story(story, fps, [Input(index=2)])


def test_render_command_writes_mp4_and_sidecar(tmp_path, pipe, capsys):
    story = write(tmp_path, BRANCHING)
    out = tmp_path / "out.mp4"
    assert main(["render", str(story), "-o", str(out), "--answers", "_", "--threads", "1"]) == 0
    assert "warning" not in capsys.readouterr().err
    timeline = read_timeline(out.with_suffix(".json"))
    frames = [f.to_ndarray(format="rgb24") for f in av.open(str(out)).decode(video=0)]
    assert len(frames) == timeline.frames == 64 and timeline.fps == pipe.fps and timeline.video == "out.mp4"
    assert [(e.frame, e.transition, e.source) for e in timeline.timeline] == [(0, None, "script"), (48, "cut", "script")]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_renders(example, tmp_path, pipe):
    plan = plan_story(load_story(example), pipe.fps, [])
    timeline = render_to_file(pipe, plan, 0, tmp_path / f"{example.stem}.mp4", progress=False, limit=48)
    decoded = sum(1 for _ in av.open(str(tmp_path / f"{example.stem}.mp4")).decode(video=0))
    assert decoded == timeline.frames == 48 and plan.end > 48


def line_of(path: Path, needle: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if needle in text)


@pytest.mark.parametrize("body,needle,message", [
    ('    await s.show("the dragon", seconds=1)\n', "dragon", "unknown words in prompt: 'dragon'"),
    ('    await s.choose("?", ["a", "b"], timeout=1)\n', "choose", "a choice with a timeout needs a default"),
    ('    await s.show("a red ball rests", seconds=-1)\n', "seconds=-1", "must be a number >= 0"),
    ('    await s.show("a red ball rests", transition="fade")\n', "fade", "transition must be one of"),
    ('    await s.show(colour)\n', "colour", "NameError"),
    ('    import asyncio\n    await asyncio.sleep(0)\n', "asyncio.sleep", "waits in real time"),
])
def test_script_errors_name_the_story_line(tmp_path, pipe, body, needle, message):
    path = write(tmp_path, 'async def story(s):\n    await s.show("a red ball rests on the grass", seconds=1)\n' + body)
    with pytest.raises(ScriptError) as caught:
        render_frames(pipe, plan_story(load_story(path), pipe.fps, []))
    assert message in str(caught.value)
    assert caught.value.line == line_of(path, needle) and Path(caught.value.file).resolve() == path.resolve()


def test_a_story_shows_before_it_waits(tmp_path, pipe):
    path = write(tmp_path, "async def story(s):\n    await s.wait(1)\n")
    with pytest.raises(ScriptError, match="shows its first prompt before") as caught:
        plan_story(load_story(path), pipe.fps, [])
    assert caught.value.line == 2


def test_answers_file_round_trips(tmp_path):
    path = write(tmp_path, json.dumps({"answers": [{"index": 1, "frame": 40}, {"timeout": True},
                                                   {"event": "weather", "payload": {"kind": "snow"}}]}), "a.json")
    from scripting.answers import read_answers
    assert read_answers(path) == [Input(index=1, frame=40), Input(timeout=True),
                                  Input(event="weather", payload={"kind": "snow"})]
    assert parse_answers("1@40,_,jump") == [Input(index=1, frame=40), Input(timeout=True), Input(event="jump")]


def test_render_names_the_words_it_ignores_at_their_line(tmp_path, capsys):
    story = write(tmp_path, 'async def story(s):\n    await s.show("a red ball rests in the enchanted garden", seconds=0.5)\n')
    out = tmp_path / "out.mp4"
    assert main(["render", str(story), "-o", str(out), "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {story}:2: unknown words in prompt: 'enchanted'" in err and "'garden'" in err
    assert read_timeline(out.with_suffix(".json")).frames >= 8  # rendered, not refused
