"""The README's code is real: its story passes `longlive check`, its plugin loads and answers."""

from __future__ import annotations

from pathlib import Path

from plugins.hookspecs import SessionInfo
from plugins.host import PluginHost
from runtime.cli import main

README = (Path(__file__).parent.parent / "README.md").read_text()


def _python_block(after: str) -> str:
    return README.split(after, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_story_passes_check(tmp_path, capsys):
    story = tmp_path / "story.py"
    story.write_text(_python_block("## Narrative scripting"))
    assert main(["check", str(story)]) == 0
    assert "3 paths" in capsys.readouterr().out


def test_the_readme_plugin_maps_its_event(tmp_path):
    rules = tmp_path / "rules.py"
    rules.write_text(_python_block("## Plugins"))
    host = PluginHost(builtin_models=False)
    assert host.load(str(rules)) == "rules"
    session = SessionInfo("main", "toy", 16.0, (64, 64), 0, 3)
    change, plugin = host.game_event(session, "door_opened", {})
    assert plugin == "rules" and "rolls to the left" in change.text
    assert host.game_event(session, "footstep", {}) == (None, None)
