"""Arcade rules: game events steer the toy world, the pattern an engine integration follows.

The game sends what happened (``move`` {"direction": "left"|"right"}, ``stop``, ``jump``,
``weather`` {"kind": "clear"|"rain"|"snow"}, ``time`` {"of_day": "day"|"sunset"|"night"|
"storm"}); these rules keep each session's world state and answer with the whole scene as
one prompt, so every prompt names the subject, place and sky as LongLive's prompts do.

    longlive serve --plugin plugins/examples/arcade_rules.py
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plugins import EventInfo, PromptChange, SessionInfo, hookimpl

MOTIONS = {"left": "rolls to the left", "right": "rolls to the right", "jump": "bounces up and down",
           "rest": "rests on the ground"}
SKIES = {"day": "a sunny daytime sky", "sunset": "an orange sunset", "night": "a starry night sky",
         "storm": "a stormy sky"}
WEATHER = {"clear": "", "rain": " in the rain", "snow": " while it snows"}

_worlds: dict[str, dict[str, str]] = {}  # session name -> its state, touched on the loop thread only


def describe(world: Mapping[str, str]) -> str:
    return (f"a red ball {MOTIONS[world['motion']]} across a grassy meadow under {SKIES[world['sky']]}"
            f"{WEATHER[world['weather']]}")


@hookimpl
def longlive_game_event(session: SessionInfo, name: str, payload: Mapping[str, Any]) -> PromptChange | None:
    world = _worlds.setdefault(session.name, {"motion": "rest", "sky": "day", "weather": "clear"})
    if name == "move" and payload.get("direction") in ("left", "right"):
        world["motion"] = payload["direction"]
    elif name in ("stop", "jump"):
        world["motion"] = "rest" if name == "stop" else "jump"
    elif name == "weather" and payload.get("kind") in WEATHER:
        world["weather"] = payload["kind"]
    elif name == "time" and payload.get("of_day") in SKIES:
        world["sky"] = payload["of_day"]
    else:
        return None  # not ours: acknowledged without a frame
    return PromptChange(describe(world), transition="recache")


@hookimpl
def longlive_rewrite_prompt(session: SessionInfo, event: EventInfo) -> None:
    """A session (re)opening starts from the default world. Called on the loop thread like
    ``longlive_game_event``, so the state needs no lock; the prompt itself is left as it is."""
    if event.type == "open":
        _worlds.pop(session.name, None)
