"""The prompt-timeline sidecar: which prompt a recorded video shows from which frame.

The recorder writes one next to every video (``<stem>.json`` beside ``<stem>.mp4``); the
offline renderer writes the same file, so a video from either is read the same way. It is
a small JSON document (UTF-8, one object)::

    {
      "format": "longlive-timeline",   # constant FORMAT: what this file is
      "version": 1,                    # constant VERSION: bumped on any incompatible change
      "session": "main",               # the session's name
      "model": "toy",                  # the model that made the frames
      "fps": 16.0,                     # playback rate of the video, frames per second
      "frame_shape": [64, 64],         # [height, width] of the frames as generated
      "seed": 0,                       # the session's seed when it opened
      "video": "main-20250101T120000Z.mp4",  # the video's file name, same folder; null if none
      "frames": 96,                    # frames in the video; null while still recording
      "repeated": [[40, 3]],           # [first frame, count]: frames the source never
                                       # delivered (dropped observations), filled by repeating
                                       # the previous frame so that time stays right
      "timeline": [                    # one entry per applied prompt, ordered by frame
        {"frame": 0, "event_id": null, "event_type": "open", "text": "...",
         "transition": null, "source": "open"},
        {"frame": 24, "event_id": "c1-2", "event_type": "prompt", "text": "...",
         "transition": "recache", "source": "prompt"}
      ]
    }

A timeline entry says: from ``frame`` on (up to the next entry) the video shows ``text``,
switched to with ``transition`` (null for the opening prompt), because of event
``event_id`` of type ``event_type`` (``open``, ``prompt`` or ``event``); ``source`` is
where the text came from (``open``, ``prompt`` for a controller's prompt, ``event`` for a
game event a plugin mapped to a prompt, ``script`` for an offline render). Frames are
0-based indices into the video. Readers ignore unknown keys (the protocol's rule), so fields
may be added without a version bump.

Writing is crash-safe: ``TimelineWriter`` rewrites the whole file on every change into a
temporary file in the same folder, flushes it to disk and renames it over the old one, so a
reader (or a crash at any instant) sees either the previous or the new document, never a
torn one. ``"frames": null`` marks a recording that never finished: the video is then as
long as what its encoder got to write.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

FORMAT = "longlive-timeline"
VERSION = 1
EVENT_TYPES = ("open", "prompt", "event")
SOURCES = ("open", "prompt", "event", "script")


class TimelineError(ValueError):
    """A sidecar that is not a valid version-1 timeline; the message says what is wrong."""


@dataclass(frozen=True, kw_only=True)
class Entry:
    """From ``frame`` on, the video shows ``text`` (see the module docstring)."""

    frame: int
    event_id: str | None = None
    event_type: str = "prompt"
    text: str
    transition: str | None = None
    source: str


@dataclass(frozen=True)
class Timeline:
    """A whole sidecar document."""

    session: str
    model: str
    fps: float
    frame_shape: tuple[int, int]
    seed: int
    video: str | None = None
    frames: int | None = None
    repeated: tuple[tuple[int, int], ...] = ()
    timeline: tuple[Entry, ...] = field(default_factory=tuple)

    def prompt_at(self, frame: int) -> Entry | None:
        """The entry in effect at ``frame`` (None before the first entry)."""
        current = None
        for entry in self.timeline:
            if entry.frame > frame:
                break
            current = entry
        return current

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "session": self.session, "model": self.model,
                "fps": self.fps, "frame_shape": list(self.frame_shape), "seed": self.seed,
                "video": self.video, "frames": self.frames,
                "repeated": [list(r) for r in self.repeated],
                "timeline": [asdict(e) for e in self.timeline]}


# ---------------------------------------------------------------- writing


def write_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that no reader or crash ever sees a partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TimelineWriter:
    """Keeps a ``Timeline`` and its file in step: every change rewrites the file atomically.

    Entries must come in frame order (the daemon acks prompt changes in the order they take
    effect); an entry at the frame of the previous one replaces it, since only the later
    prompt is ever shown there."""

    def __init__(self, path: str | Path, timeline: Timeline) -> None:
        self.path = Path(path)
        self.timeline = validate(timeline)
        self._save()

    def add(self, entry: Entry) -> None:
        entries = list(self.timeline.timeline)
        if entries and entry.frame < entries[-1].frame:
            raise TimelineError(f"timeline entry at frame {entry.frame} comes after one at frame "
                                f"{entries[-1].frame}; entries must be added in frame order")
        if entries and entry.frame == entries[-1].frame:
            entries.pop()
        self._set(timeline=tuple(entries) + (entry,))

    def set_event_id(self, frame: int, event_id: str) -> None:
        """Name the event of the entry at ``frame`` (the opening prompt's id is known only at its ack)."""
        entries = [replace(e, event_id=event_id) if e.frame == frame and e.event_id is None else e
                   for e in self.timeline.timeline]
        self._set(timeline=tuple(entries))

    def add_repeated(self, first: int, count: int) -> None:
        """Frames ``first .. first+count-1`` were filled by repeating the previous frame."""
        self._set(repeated=self.timeline.repeated + ((first, count),))

    def finish(self, frames: int) -> None:
        """The video is complete with ``frames`` frames."""
        self._set(frames=frames)

    def _set(self, **changes: Any) -> None:
        self.timeline = validate(replace(self.timeline, **changes))
        self._save()

    def _save(self) -> None:
        write_atomic(self.path, json.dumps(self.timeline.to_json(), indent=1) + "\n")


# ---------------------------------------------------------------- reading and validation


def read_timeline(path: str | Path) -> Timeline:
    """Parse and validate a sidecar; TimelineError names the file and the problem."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TimelineError(f"cannot read timeline {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TimelineError(f"timeline {path} is not valid JSON: {exc}") from None
    try:
        return from_json(doc)
    except TimelineError as exc:
        raise TimelineError(f"timeline {path}: {exc}") from None


def from_json(doc: Any) -> Timeline:
    """A ``Timeline`` from a parsed document; unknown keys are ignored."""
    if not isinstance(doc, dict):
        raise TimelineError(f"a timeline is a JSON object, not {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise TimelineError(f"format is {doc.get('format')!r}, not {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise TimelineError(f"version {doc.get('version')!r} is not supported (this reader knows {VERSION})")
    missing = [k for k in ("session", "model", "fps", "frame_shape", "seed", "timeline") if k not in doc]
    if missing:
        raise TimelineError(f"missing keys: {', '.join(missing)}")
    shape, entries, repeated = doc["frame_shape"], doc["timeline"], doc.get("repeated", [])
    if not isinstance(shape, list) or len(shape) != 2:
        raise TimelineError(f"frame_shape must be [height, width], not {shape!r}")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TimelineError("timeline must be a list of objects")
    if not isinstance(repeated, list) or not all(isinstance(r, list) and len(r) == 2 for r in repeated):
        raise TimelineError(f"repeated must be a list of [first frame, count] pairs, not {repeated!r}")
    try:
        timeline = Timeline(
            session=doc["session"], model=doc["model"], fps=doc["fps"], frame_shape=(shape[0], shape[1]),
            seed=doc["seed"], video=doc.get("video"), frames=doc.get("frames"),
            repeated=tuple((r[0], r[1]) for r in repeated),
            timeline=tuple(Entry(frame=e["frame"], text=e["text"], source=e["source"],
                                 event_type=e.get("event_type", "prompt"), event_id=e.get("event_id"),
                                 transition=e.get("transition")) for e in entries))
    except KeyError as exc:
        raise TimelineError(f"a timeline entry lacks {exc.args[0]!r}") from None
    return validate(timeline)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(t: Timeline) -> Timeline:
    """``t`` itself if every field has the documented type and range; TimelineError otherwise."""
    checks = [
        (isinstance(t.session, str) and t.session != "", f"session must be a non-empty string, not {t.session!r}"),
        (isinstance(t.model, str) and t.model != "", f"model must be a non-empty string, not {t.model!r}"),
        (isinstance(t.fps, int | float) and not isinstance(t.fps, bool) and math.isfinite(t.fps) and t.fps > 0,
         f"fps must be a positive number, not {t.fps!r}"),
        (all(_is_int(n) and n > 0 for n in t.frame_shape), f"frame_shape must be two positive integers, "
                                                           f"not {list(t.frame_shape)!r}"),
        (_is_int(t.seed), f"seed must be an integer, not {t.seed!r}"),
        (t.video is None or isinstance(t.video, str), f"video must be a file name or null, not {t.video!r}"),
        (t.frames is None or (_is_int(t.frames) and t.frames >= 0),
         f"frames must be a count or null, not {t.frames!r}"),
        (all(_is_int(a) and _is_int(n) and a >= 0 and n > 0 for a, n in t.repeated),
         f"repeated must hold [first >= 0, count > 0] pairs, not {[list(r) for r in t.repeated]!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise TimelineError(message)
    last = -1
    for i, e in enumerate(t.timeline):
        where = f"timeline entry {i}"
        if not _is_int(e.frame) or e.frame < 0:
            raise TimelineError(f"{where}: frame must be an integer >= 0, not {e.frame!r}")
        if e.frame <= last:
            raise TimelineError(f"{where}: frame {e.frame} does not come after frame {last}")
        last = e.frame
        if not isinstance(e.text, str) or not e.text:
            raise TimelineError(f"{where}: text must be a non-empty string, not {e.text!r}")
        if e.source not in SOURCES:
            raise TimelineError(f"{where}: source {e.source!r} is not one of {', '.join(SOURCES)}")
        if e.event_type not in EVENT_TYPES:
            raise TimelineError(f"{where}: event_type {e.event_type!r} is not one of {', '.join(EVENT_TYPES)}")
        for name in ("event_id", "transition"):
            value = getattr(e, name)
            if value is not None and not isinstance(value, str):
                raise TimelineError(f"{where}: {name} must be a string or null, not {value!r}")
    if t.frames is not None and t.timeline and t.timeline[-1].frame >= t.frames and t.frames > 0:
        raise TimelineError(f"timeline entry at frame {t.timeline[-1].frame} lies beyond the video's "
                            f"{t.frames} frames")
    return t
