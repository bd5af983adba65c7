"""The timeline sidecar: round trip, atomic rewrites, and validation that names the problem."""

from __future__ import annotations

import json
import os
import threading

import pytest

from plugins.timeline import (FORMAT, VERSION, Entry, Timeline, TimelineError, TimelineWriter, read_timeline,
                              write_atomic)

OPEN = Entry(frame=0, event_type="open", text="a red ball rolls on the lawn", source="open")
SWITCH = Entry(frame=24, event_id="c-2", event_type="prompt", text="a blue cube sits on the sand",
               transition="recache", source="prompt")


def header(**changes) -> Timeline:
    fields = dict(session="main", model="toy", fps=16.0, frame_shape=(64, 64), seed=7, video="main.mp4")
    return Timeline(**{**fields, **changes})


def test_writer_round_trip_and_documented_layout(tmp_path):
    path = tmp_path / "main.json"
    writer = TimelineWriter(path, header())
    assert read_timeline(path).frames is None and read_timeline(path).timeline == ()
    writer.add(OPEN)
    writer.set_event_id(0, "c-1")
    writer.add(SWITCH)
    writer.add_repeated(30, 2)
    writer.finish(48)
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT and doc["version"] == VERSION
    assert doc["frames"] == 48 and doc["repeated"] == [[30, 2]] and doc["frame_shape"] == [64, 64]
    assert list(doc["timeline"][1]) == ["frame", "event_id", "event_type", "text", "transition", "source"]
    back = read_timeline(path)
    assert back == writer.timeline
    assert back.timeline[0].event_id == "c-1"
    assert back.prompt_at(0) == back.timeline[0] and back.prompt_at(23) == back.timeline[0]
    assert back.prompt_at(24) == SWITCH and back.prompt_at(47) == SWITCH


def test_an_entry_at_the_same_frame_replaces_the_previous_and_order_is_enforced(tmp_path):
    writer = TimelineWriter(tmp_path / "t.json", header())
    writer.add(OPEN)
    writer.add(SWITCH)
    later = Entry(frame=24, event_id="c-3", text="a pink orb hops in place", source="event", event_type="event")
    writer.add(later)
    assert writer.timeline.timeline == (OPEN, later)
    with pytest.raises(TimelineError, match="frame order"):
        writer.add(Entry(frame=3, text="too late", source="prompt"))
    assert read_timeline(tmp_path / "t.json").timeline == (OPEN, later)  # the refused entry never reached the file


def test_unknown_keys_are_ignored(tmp_path):
    doc = header().to_json() | {"extra": 1}
    doc["timeline"] = [dict(OPEN.__dict__, mood="calm")]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    assert read_timeline(path).timeline == (OPEN,)


@pytest.mark.parametrize("change, message", [
    ({"format": "mp4-notes"}, "format is 'mp4-notes'"),
    ({"version": 2}, "version 2 is not supported"),
    ({"fps": 0}, "fps must be a positive number"),
    ({"fps": True}, "fps must be a positive number"),
    ({"frame_shape": [64]}, r"frame_shape must be \[height, width\]"),
    ({"frame_shape": [64, -1]}, "frame_shape must be two positive integers"),
    ({"seed": "7"}, "seed must be an integer"),
    ({"frames": -1}, "frames must be a count or null"),
    ({"repeated": [[3, 0]]}, "repeated must hold"),
    ({"timeline": [{"frame": 0, "text": "x"}]}, "lacks 'source'"),
    ({"timeline": [{"frame": 0, "text": "", "source": "open"}]}, "text must be a non-empty string"),
    ({"timeline": [{"frame": 0, "text": "x", "source": "radio"}]}, "source 'radio' is not one of"),
    ({"timeline": [{"frame": 5, "text": "x", "source": "open"}, {"frame": 5, "text": "y", "source": "prompt"}]},
     "frame 5 does not come after frame 5"),
    ({"frames": 4, "timeline": [{"frame": 8, "text": "x", "source": "prompt"}]}, "beyond the video's 4 frames"),
])
def test_invalid_documents_are_refused_with_the_reason(tmp_path, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(header().to_json() | change))
    with pytest.raises(TimelineError, match=message):
        read_timeline(path)


def test_not_json_and_missing_keys_are_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"format": "longlive-timeline", "version": 1, ')
    with pytest.raises(TimelineError, match="not valid JSON"):
        read_timeline(path)
    path.write_text(json.dumps({"format": FORMAT, "version": VERSION, "session": "main"}))
    with pytest.raises(TimelineError, match="missing keys: model, fps, frame_shape, seed, timeline"):
        read_timeline(path)
    with pytest.raises(TimelineError, match="cannot read timeline"):
        read_timeline(tmp_path / "absent.json")


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "t.json"
    write_atomic(path, "old\n")

    def crash(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        write_atomic(path, "new contents that never land\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]


def test_a_concurrent_reader_never_sees_a_torn_file(tmp_path):
    path = tmp_path / "t.json"
    writer = TimelineWriter(path, header())
    writer.add(OPEN)
    done = threading.Event()
    seen: list[int] = []
    errors: list[Exception] = []

    def read_loop():
        while not done.is_set():
            try:
                seen.append(len(read_timeline(path).repeated))
            except TimelineError as exc:  # a torn or half-written file
                errors.append(exc)

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        for i in range(150):
            writer.add_repeated(10 * i + 1, 1)
    finally:
        done.set()
        reader.join()
    assert not errors
    assert seen and seen == sorted(seen)
    assert len(read_timeline(path).repeated) == 150
