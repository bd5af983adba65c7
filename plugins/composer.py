"""The composer: full prompts from short events, the way LongLive's example prompts repeat the
whole scene in every prompt (docs/plugins/composer.md).

A ``Scene`` holds a cast (name -> short phrase), a setting and a style. ``compose`` turns an
action that names cast members into one sentence: with cast ``{"hero": "a red ball"}``,
setting ``"across a green field"`` and style ``"under a sunny daytime sky"``,
``"the hero rolls to the left"`` becomes
``"a red ball rolls to the left across a green field under a sunny daytime sky"``.
A video model reads each prompt on its own, so a prompt that only says "the hero jumps"
would lose the hero's look and the place; repeating them keeps the shot coherent.

``Scene`` is a plain library class (the scripting engine uses it without a daemon). The
plugin half keeps one scene per session, composes prompts that mention a cast name (the
rule: a word of the prompt, case-insensitive, equals a cast name), and answers the game
events ``action`` and ``scene``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from plugins.hookspecs import EventInfo, PromptChange, Refused, SessionInfo, hookimpl

NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
DETERMINERS = ("the", "a", "an")  # dropped before a cast name: the phrase brings its own
CHANGE_KEYS = ("transition", "at_frame", "blend_blocks")  # passed from an event's payload to its PromptChange

# A scene the toy model can take, worded like its training prompts (runtime/toy/vocab.py).
TOY_EXAMPLE_TABLE = {"cast": {"hero": "a red ball", "rival": "a blue cube"},
                     "setting": "across a green field", "style": "under a sunny daytime sky"}


class SceneError(ValueError):
    """A scene that is malformed or that the model cannot encode; the message lists every problem."""


@dataclass(frozen=True)
class Scene:
    """Cast, setting and style, each a short phrase. Immutable: changes return a new scene."""

    cast: Mapping[str, str] = field(default_factory=dict)
    setting: str = ""
    style: str = ""

    def __post_init__(self) -> None:
        problems = _shape_problems(self.cast, self.setting, self.style)
        if problems:
            raise SceneError("bad scene: " + "; ".join(problems))
        object.__setattr__(self, "cast", MappingProxyType({k: " ".join(v.split()) for k, v in self.cast.items()}))
        object.__setattr__(self, "setting", " ".join(self.setting.split()))
        object.__setattr__(self, "style", " ".join(self.style.split()))
        names = "|".join(re.escape(n) for n in sorted(self.cast, key=len, reverse=True))
        pattern = re.compile(rf"\b(?:(?:{'|'.join(DETERMINERS)})\s+)?({names})\b", re.IGNORECASE) if names else None
        object.__setattr__(self, "_pattern", pattern)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Scene:
        """A scene from a config table ``{cast = {...}, setting = "...", style = "..."}``."""
        unknown = sorted(set(table) - {"cast", "setting", "style"})
        if unknown:
            raise SceneError(f"unknown scene settings {', '.join(unknown)}; known: cast, setting, style")
        return cls(table.get("cast", {}), table.get("setting", ""), table.get("style", ""))

    def mentions(self, text: str) -> bool:
        """Whether ``text`` names a cast member (the rule for composing a prompt)."""
        return self._pattern is not None and self._pattern.search(text) is not None

    def compose(self, action: str) -> str:
        """``action`` with cast names replaced by their phrases, then the setting, then the style."""
        action = " ".join(action.split()).rstrip(".!?;,: ")
        if self._pattern is not None:
            action = self._pattern.sub(lambda m: self.cast[_cast_key(self.cast, m.group(1))], action)
        return " ".join(part for part in (action, self.setting, self.style) if part)

    def changed(self, *, cast: Mapping[str, str] | None = None, setting: str | None = None,
                style: str | None = None) -> Scene:
        """A new scene: ``cast`` entries added or replaced (others kept), setting/style replaced when given."""
        if cast is not None and not isinstance(cast, Mapping):
            raise SceneError(f"cast must be a table of name = phrase, not {type(cast).__name__}")
        return replace(self, cast={**self.cast, **(cast or {})},
                       setting=self.setting if setting is None else setting,
                       style=self.style if style is None else style)

    def check(self, check_prompt: Callable[[str], None]) -> None:
        """Ask the model (``SessionInfo.check_prompt`` or ``Pipeline.check_prompt``, both strict) whether
        it reads every phrase in full; SceneError names each phrase it refuses and why (for the toy
        model: the unknown words and the known words to try instead)."""
        problems = []
        for what, phrase in self.phrases():
            try:
                check_prompt(phrase)
            except ValueError as exc:
                problems.append(f"{what} {phrase!r}: {exc}")
        if problems:
            raise SceneError("the model cannot take this scene: " + "; ".join(problems))

    def phrases(self) -> list[tuple[str, str]]:
        """(what, phrase) for every non-empty phrase, e.g. ("cast 'hero'", "a red ball")."""
        named = [(f"cast {name!r}", phrase) for name, phrase in self.cast.items()]
        return [(w, p) for w, p in named + [("setting", self.setting), ("style", self.style)] if p]

    def to_table(self) -> dict[str, Any]:
        return {"cast": dict(self.cast), "setting": self.setting, "style": self.style}


def _cast_key(cast: Mapping[str, str], matched: str) -> str:
    return next(name for name in cast if name.lower() == matched.lower())


def _shape_problems(cast: Any, setting: Any, style: Any) -> list[str]:
    """What is wrong with a scene's parts, before any model is asked."""
    if not isinstance(cast, Mapping):
        return [f"cast must be a table of name = phrase, not {type(cast).__name__}"]
    problems = []
    for name, phrase in cast.items():
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            problems.append(f"cast name {name!r} must be one word (letters, digits, _)")
        elif name.lower() in DETERMINERS:
            problems.append(f"cast name {name!r} is a determiner")
        if not isinstance(phrase, str) or not phrase.strip():
            problems.append(f"cast {name!r} must be a non-empty phrase, not {phrase!r}")
    for what, value in (("setting", setting), ("style", style)):
        if not isinstance(value, str):
            problems.append(f"{what} must be a string, not {value!r}")
    if problems:
        return problems
    lowered = {name.lower() for name in cast}
    if len(lowered) != len(cast):
        problems.append(f"cast names differ only in case: {sorted(cast)}")
    # A name inside a phrase would be replaced again on the next rewrite; refusing it keeps
    # composition idempotent (a composed prompt names no cast member).
    for what, phrase in [(f"cast {n!r}", p) for n, p in cast.items()] + [("setting", setting), ("style", style)]:
        clash = sorted({w for w in re.findall(r"[A-Za-z0-9_]+", phrase) if w.lower() in lowered})
        if clash:
            problems.append(f"{what} {phrase!r} contains the cast name {', '.join(map(repr, clash))}; "
                            f"name the cast member differently (e.g. 'hero')")
    return problems


# ---------------------------------------------------------------- the plugin


class Composer:
    """The hook implementations. Loading the module registers its one instance (below); an embedder
    running several hosts in one process registers its own ``Composer()``. Every hook here is a
    decision hook, so all of them run on the daemon's loop thread: no locking needed."""

    def __init__(self) -> None:
        self.scene = Scene()  # the configured scene, every session's start
        self.sessions: dict[str, Scene] = {}
        self.last_action: dict[str, str] = {}  # per session: the last action composed, re-shown on a scene change
        self._checked: set[str] = set()  # models the configured scene was checked against

    @hookimpl
    def longlive_configure(self, config: Mapping[str, Any]) -> None:
        table = config.get("composer", {})
        if not isinstance(table, Mapping):
            raise ValueError(f"[composer] must be a table, not {type(table).__name__}")
        try:
            self.scene = Scene.from_table(table)
        except SceneError as exc:
            raise SceneError(f"[composer] {exc}") from None
        self.sessions.clear()
        self.last_action.clear()
        self._checked.clear()

    @hookimpl
    def longlive_rewrite_prompt(self, session: SessionInfo, text: str, event: EventInfo) -> str | None:
        if event.type == "open":
            self._start(session)
        scene = self.sessions.get(session.name, self.scene)
        if not scene.mentions(text):
            return None
        self.last_action[session.name] = text
        return scene.compose(text)

    @hookimpl
    def longlive_game_event(self, session: SessionInfo, name: str, payload: Mapping[str, Any]) -> PromptChange | None:
        if name not in ("action", "scene"):
            return None
        scene = self.sessions.get(session.name, self.scene)
        try:
            change = _change_options(payload)
            if name == "action":
                action = _text(payload, "text", required=True)
            else:
                scene = _scene_change(scene, payload)
                action = _text(payload, "action") or self.last_action.get(session.name)
        except (SceneError, ValueError) as exc:  # the sender gets EVENT_REFUSED with the reason
            raise Refused(f"{name} event: {exc}") from None
        if name == "scene":
            try:
                scene.check(session.check_prompt)
            except SceneError as exc:  # the session keeps its scene
                raise Refused(f"scene change: {exc}") from None
            self.sessions[session.name] = scene
            if action is None:
                return None  # nothing shown yet to re-prompt: the new scene applies to the next action
        self.last_action[session.name] = action
        return PromptChange(scene.compose(action), **change)

    def _start(self, session: SessionInfo) -> None:
        """A session opens with the configured scene; the first session of each model checks it."""
        if session.model not in self._checked:
            self.scene.check(session.check_prompt)  # raises: the host disables the composer, naming why
            self._checked.add(session.model)
        self.sessions[session.name] = self.scene
        self.last_action.pop(session.name, None)


def _text(payload: Mapping[str, Any], key: str, required: bool = False) -> str | None:
    value = payload.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"payload {key!r} must be a non-empty string, not {value!r}")
    return value


def _scene_change(scene: Scene, payload: Mapping[str, Any]) -> Scene:
    """``scene`` with the payload's cast/setting/style; SceneError if the result is malformed."""
    parts = {k: payload[k] for k in ("cast", "setting", "style") if k in payload}
    if not parts:
        raise ValueError("a scene event needs at least one of cast, setting, style")
    return scene.changed(**parts)


def _change_options(payload: Mapping[str, Any]) -> dict[str, Any]:
    """transition / at_frame / blend_blocks from the payload (the daemon validates their values)."""
    return {k: payload[k] for k in CHANGE_KEYS if payload.get(k) is not None}


longlive_plugin = Composer()  # what the host registers (plugins/host.py)
