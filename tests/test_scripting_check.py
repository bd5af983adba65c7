"""`longlive check` finds planted problems at their lines, and passes the examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli import main
from runtime.pipeline import load_pipeline
from scripting.check import Bounds, check_story
from scripting.runner import load_story

EXAMPLES = sorted(p for p in (Path(__file__).parent.parent / "scripting" / "examples").glob("*.py")
                  if p.name != "__init__.py")

CLEAN = '''
async def story(s):
    await s.show("a red ball rests on the green grass under a sunny sky", seconds=1)
    gems = 0
    pick = await s.choose("Where?", ["night", "snow"], timeout=2, default=1)
    if pick == 0:
        gems += 1
        await s.show("a red ball rests on the green grass under a starry night sky", seconds=1)
    else:
        await s.show("a red ball rests on the snowy field under a sunny sky", seconds=1)
    jump = await s.event("jump", timeout=1)
    if jump is not None and gems > 0:
        await s.show("a red ball bounces on the green grass under a starry night sky", seconds=1)  # JUMP
'''


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("toy", max_streams=1)


def check(tmp_path: Path, pipe, text: str, bounds: Bounds = Bounds()):
    path = tmp_path / "story.py"
    path.write_text(text)
    return path, check_story(load_story(path), pipe.fps, pipe.check_prompt, bounds)


def line_of(path: Path, needle: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if needle in text)


def test_a_clean_story_passes_and_every_path_is_walked(tmp_path, pipe):
    path, report = check(tmp_path, pipe, CLEAN)
    assert report.problems == []
    # 3 ways through the choice (night, snow, timeout) x 2 through the event (jump, timeout)
    assert sorted(",".join(map(str, inputs)) for inputs, _ in report.paths) == sorted(
        f"{c},{e}" for c in ("0", "1", "_") for e in ("jump", "_"))
    ends = {",".join(map(str, inputs)): plan.end for inputs, plan in report.paths}
    assert ends["0,jump"] == 16 + 16 + 16 and ends["_,_"] == 16 + 32 + 16 + 16


def test_planted_unknown_word_is_found_at_its_line(tmp_path, pipe):
    path, report = check(tmp_path, pipe, CLEAN.replace("# JUMP", "").replace("a red ball bounces", "a red dragon bounces"))
    assert [(p.line, "'dragon'" in p.message) for p in report.problems] == [(line_of(path, "dragon"), True)]


def test_planted_unreachable_branch_is_found(tmp_path, pipe):
    text = CLEAN.replace("gems > 0", "gems > 5")  # gems is at most 1: the jump branch never runs
    path, report = check(tmp_path, pipe, text)
    assert [(p.line, p.message) for p in report.problems] == [
        (line_of(path, "# JUMP"), f"unreachable: line {line_of(path, '# JUMP')} never run on any path")]


def test_endless_paths_are_found(tmp_path, pipe):
    looping = CLEAN + "    while True:\n        await s.wait(1)  # LOOP\n"
    path, report = check(tmp_path, pipe, looping, Bounds(max_seconds=60))
    assert {(p.line, p.message.startswith("endless")) for p in report.problems} == {(line_of(path, "# LOOP"), True)}
    asking = CLEAN + "    while True:\n        await s.choose('again?', ['yes'])  # ASK\n"
    path, report = check(tmp_path, pipe, asking, Bounds(max_questions=8))
    assert {(p.line, p.message.split(":")[0]) for p in report.problems} == {(line_of(path, "# ASK"), "endless")}
    spinning = CLEAN + "    while True:\n        pass  # SPIN\n"
    path, report = check(tmp_path, pipe, spinning, Bounds(max_lines=10_000))
    loop = {line_of(path, "while True"), line_of(path, "# SPIN")}  # the budget runs out on either line
    assert report.problems and all(p.line in loop and p.message.startswith("endless") for p in report.problems)


def test_script_errors_on_one_path_are_reported(tmp_path, pipe):
    text = CLEAN.replace("seconds=1)\n    else:", "seconds=1)\n        await s.choose('?', ['a'], timeout=1)  # BAD\n    else:")
    path, report = check(tmp_path, pipe, text)
    assert [(p.line, "needs a default" in p.message) for p in report.problems] == [(line_of(path, "# BAD"), True)]


def test_check_command_exit_codes(tmp_path, capsys):
    assert main(["check", *map(str, EXAMPLES)]) == 0
    assert len(EXAMPLES) >= 3
    bad = tmp_path / "bad.py"
    bad.write_text(CLEAN.replace("gems > 0", "gems > 5").replace("a red ball bounces", "a red dragon bounces"))
    capsys.readouterr()
    assert main(["check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "unreachable" in out and "'dragon'" not in out  # the unreachable show is never encoded...
    bad.write_text(CLEAN.replace("a red ball rests on the snowy", "a red dragon rests on the snowy"))
    assert main(["check", str(bad)]) == 1
    assert f"bad.py:{line_of(bad, 'dragon')}: the model cannot take" in capsys.readouterr().out
