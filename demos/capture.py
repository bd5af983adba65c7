"""R in a demo: record what the demo receives, in the recorder plugin's format.

The protocol has no message that starts the daemon's recorder, so the demo records the frames
it is sent itself: an H.264 mp4 through `plugins.recorder.VideoWriter` and the prompt
timeline sidecar of `plugins/timeline.py` beside it. Frame 0 of the recording is the first
frame received after R; frames the stream dropped on the way are filled by repeating the
previous one and listed in `repeated`, as the recorder plugin does, so the video keeps time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from plugins.recorder import VideoWriter
from plugins.timeline import Entry, Timeline, TimelineWriter
from protocol.client import Picture


class Capture:
    """One recording: `add` each picture shown, then `close`."""

    def __init__(self, directory: str | Path, first: Picture, text: str, *, model: str, fps: float, seed: int) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        header = first.frame
        stem = f"{re.sub(r'[^A-Za-z0-9_-]', '_', header.session)}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
        self.video_path = directory / f"{stem}.mp4"
        self.timeline_path = directory / f"{stem}.json"
        height, width = header.shape[:2]
        self.video = VideoWriter(self.video_path, fps, (height, width))
        self.timeline = TimelineWriter(self.timeline_path, Timeline(
            session=header.session, model=model, fps=fps, frame_shape=(height, width), seed=seed,
            video=self.video_path.name))
        self.origin = header.frame  # stream frame index of recording frame 0
        self._prompt_id = header.prompt_id
        self.timeline.add(Entry(frame=0, event_id=header.prompt_id, event_type="open", text=text, source="open"))
        self._last: np.ndarray | None = None
        self.add(first, text)

    @property
    def frames(self) -> int:
        return self.video.frames

    def add(self, picture: Picture, text: str | None) -> None:
        """Append `picture` (`text`: its prompt, when known); earlier or repeated frames are skipped."""
        index = picture.frame.frame - self.origin
        if index < self.video.frames:
            return
        if index > self.video.frames and self._last is not None:
            gap = index - self.video.frames
            self.timeline.add_repeated(self.video.frames, gap)
            self.video.write(np.repeat(self._last[None], gap, axis=0))
        if picture.frame.prompt_id != self._prompt_id and text:
            self._prompt_id = picture.frame.prompt_id
            self.timeline.add(Entry(frame=index, event_id=self._prompt_id, event_type="prompt", text=text,
                                    source="prompt"))
        self._last = np.asarray(picture.image)
        self.video.write(self._last[None])

    def close(self) -> Path:
        """Finish both files; returns the video's path."""
        self.video.close()
        self.timeline.finish(self.video.frames)
        return self.video_path
