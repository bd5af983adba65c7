"""What the player (or the game) did, as data: the inputs that replay a story exactly.

A story's state is its inputs: the same story, seed and inputs give the same video, so a
live run's log of inputs *is* its save file. Each input answers one ``choose`` or ``event``
in order, and carries the frame at which it counts.

Command-line form (``--answers``), comma-separated, one item per question in order::

    2          choice: option 2 (from 0), at the earliest frame (when the choice is offered)
    2@48       choice: option 2, counting at frame 48
    jump       event: "jump" with an empty payload, at the earliest frame
    jump@60    event: "jump" at frame 60
    _          nobody answered: the question times out (at its deadline)

JSON form (``--answers-file``, written by ``longlive play --log``): a list of
``{"index": 2, "frame": 48}``, ``{"event": "weather", "payload": {"kind": "rain"}, "frame": 60}``
or ``{"timeout": true}``; ``frame`` is optional.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from scripting.errors import ScriptError
from scripting.story import Answer, Ask


@dataclass(frozen=True)
class Input:
    """One recorded input: an option index, an event (name, payload) or a timeout; ``frame``
    is when it counts (None: as early as possible, i.e. when the question is offered)."""

    index: int | None = None
    event: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    timeout: bool = False
    frame: int | None = None

    def __str__(self) -> str:
        what = "_" if self.timeout else self.event if self.event is not None else str(self.index)
        if self.payload:
            what += "(" + " ".join(f"{k}={v}" for k, v in self.payload.items()) + ")"
        return what if self.frame is None else f"{what}@{self.frame}"


def parse_answers(text: str) -> list[Input]:
    """The ``--answers`` form (see the module docstring)."""
    inputs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        what, _, at = item.partition("@")
        frame = None
        if at:
            if not at.isdigit():
                raise ValueError(f"answer {item!r}: the frame after '@' must be an integer >= 0")
            frame = int(at)
        if what == "_":
            inputs.append(Input(timeout=True, frame=frame))
        elif what.isdigit():
            inputs.append(Input(index=int(what), frame=frame))
        elif what:
            inputs.append(Input(event=what, frame=frame))
        else:
            raise ValueError(f"answer {item!r} is empty before '@'")
    return inputs


def read_answers(path: str | Path) -> list[Input]:
    """The JSON form, as ``longlive play --log`` writes it."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read answers from {path}: {exc}") from None
    items = doc.get("answers") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list of answers (or an object with 'answers')")
    inputs = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: answer {i} is not an object")
        frame = item.get("frame")
        if frame is not None and (not isinstance(frame, int) or isinstance(frame, bool) or frame < 0):
            raise ValueError(f"{path}: answer {i}: frame must be an integer >= 0")
        if item.get("timeout"):
            inputs.append(Input(timeout=True, frame=frame))
        elif "event" in item:
            payload = item.get("payload") or {}
            if not isinstance(item["event"], str) or not isinstance(payload, dict):
                raise ValueError(f"{path}: answer {i}: event must be a name and payload an object")
            inputs.append(Input(event=item["event"], payload=payload, frame=frame))
        elif isinstance(item.get("index"), int) and not isinstance(item.get("index"), bool):
            inputs.append(Input(index=item["index"], frame=frame))
        else:
            raise ValueError(f"{path}: answer {i} has none of index, event, timeout")
    return inputs


def resolve(ask: Ask, given: Input | None, number: int) -> Answer:
    """The answer ``given`` makes to ``ask`` (the ``number``-th question, from 1), by the rule
    that live play follows too: an answer counts at ``max(offered, its frame)``; one past the
    deadline is an error (live, the question would already have timed out); no input at all
    times out when the question has a timeout, and is an error when it has none."""
    where = dict(file=ask.file, line=ask.line)
    what = f"the {ask.kind} at question {number}"
    if given is None or given.timeout:
        if ask.deadline is None:
            missing = "no answer is given for" if given is None else "'_' (timeout) cannot answer"
            raise ScriptError(f"{missing} {what}, which has no timeout; pass --answers", **where)
        return Answer(ask.deadline, timed_out=True)
    frame = ask.offered if given.frame is None else max(ask.offered, given.frame)
    if ask.deadline is not None and frame > ask.deadline:
        raise ScriptError(f"answer {given} to {what} comes at frame {frame}, after its timeout at frame "
                          f"{ask.deadline}", **where)
    if ask.kind == "choice":
        if given.index is None or not 0 <= given.index < len(ask.options):
            raise ScriptError(f"answer {given} to {what} must be an option index in 0..{len(ask.options) - 1} "
                              f"({', '.join(ask.options)})", **where)
        return Answer(frame, index=given.index)
    if given.event not in ask.names:
        raise ScriptError(f"answer {given} to {what} must be one of the events {', '.join(ask.names)}", **where)
    return Answer(frame, name=given.event, payload=dict(given.payload))
