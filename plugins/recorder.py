"""The recorder plugin: every session to an H.264 mp4 plus its prompt timeline (docs/plugins/recorder.md).

Each session becomes ``<dir>/<session>-<UTC time>.mp4`` and the sidecar ``<same stem>.json``
(format in ``plugins/timeline.py``). All work happens on the plugin's observer thread, never on
the daemon's loop. The mp4 is *fragmented* (an empty ``moov`` up front, then one
``moof``+``mdat`` fragment per keyframe, a keyframe every ``keyframe_s`` seconds, encoder
without lookahead), so whatever a crash leaves on disk is a playable video missing at most
the fragment being filled: about the last second.

Frames that never reach the recorder (observations dropped because it fell behind) are
filled by repeating the previous frame (the first delivered frame, for a gap at the very
start), so the video keeps the stream's clock; each fill is listed in the sidecar's
``repeated``. Frames that arrive twice or out of order (earlier than one already written)
are skipped and logged: the video never goes back in time.

``VideoWriter`` is the encoder on its own, for the offline renderer.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from plugins.hookspecs import AckInfo, SessionInfo, hookimpl
from plugins.timeline import Entry, Timeline, TimelineWriter

log = logging.getLogger("longlive.plugins.recorder")

CODEC = "libx264"
MAX_CRF = 51  # x264's scale: 0 lossless .. 51 worst


# ---------------------------------------------------------------- the encoder


class VideoWriter:
    """Appends uint8 RGB frames ``[n, H, W, 3]`` to a fragmented H.264 mp4 at a fixed fps.

    Frame i is shown at i / fps. Odd heights or widths are padded by one row or column
    (repeating the edge), since yuv420p needs even sizes. Not thread-safe; one writer per file.
    """

    def __init__(self, path: str | Path, fps: float, frame_shape: tuple[int, int], *,
                 keyframe_s: float = 1.0, crf: int = 18) -> None:
        height, width = frame_shape
        if not (height > 0 and width > 0):
            raise ValueError(f"frame_shape must be two positive sizes, not {frame_shape!r}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, not {fps!r}")
        self.path, self.fps, self.frame_shape = Path(path), fps, (height, width)
        self.frames = 0  # frames written so far
        self._pad = ((0, 0), (0, height % 2), (0, width % 2), (0, 0))
        rate = Fraction(fps).limit_denominator(1001)
        gop = max(1, round(fps * keyframe_s))
        self._container = av.open(str(self.path), "w", format="mp4", options={
            # Fragment at every keyframe, moov before any sample: the file is playable at every
            # fragment boundary, so a crash loses only the fragment in progress.
            "movflags": "frag_keyframe+empty_moov+default_base_moof",
            "flush_packets": "1",  # hand each finished fragment to the OS at once
        })
        self._stream = self._container.add_stream(CODEC, rate=rate, options={
            "crf": str(crf), "preset": "veryfast",
            # zerolatency: no lookahead or B-frames, so the encoder holds no frames back;
            # fixed GOP without scene-cut keyframes, so fragments are exactly keyframe_s long.
            "tune": "zerolatency", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
        })
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = 1 / rate
        self._stream.thread_count = 1  # the recorder shares the machine with the generator
        self._last: np.ndarray | None = None

    @property
    def last_frame(self) -> np.ndarray | None:
        """The most recently written frame (as given), for repeating it across a gap."""
        return self._last

    def write(self, frames: np.ndarray) -> None:
        """Encode ``frames`` (uint8 ``[n, H, W, 3]``) as the next n frames of the video."""
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (*self.frame_shape, 3):
            raise ValueError(f"expected uint8 frames [n, {self.frame_shape[0]}, {self.frame_shape[1]}, 3], "
                             f"got {frames.dtype} {list(frames.shape)}")
        for image in frames:
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.pad(image, self._pad[1:], mode="edge")),
                                                 format="rgb24")
            picture.pts = self.frames
            self._container.mux(self._stream.encode(picture))
            self.frames += 1
        if len(frames):
            self._last = frames[-1]

    def close(self) -> None:
        """Flush the encoder and finish the file; safe to call twice."""
        if self._container is None:
            return
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class RecorderConfig:
    """The ``[recorder]`` table of the plugin config."""

    dir: Path = Path("recordings")
    sessions: tuple[str, ...] | None = None  # record only these sessions; None: all
    keyframe_s: float = 1.0  # keyframe (and fragment) interval: the most a crash loses
    crf: int = 18  # x264 quality (lower is better and larger)

    @classmethod
    def from_table(cls, table: Any) -> RecorderConfig:
        """Parse and check the table; ValueError names the bad setting."""
        if not isinstance(table, Mapping):
            raise ValueError(f"[recorder] must be a table, not {type(table).__name__}")
        unknown = sorted(set(table) - {"dir", "sessions", "keyframe_s", "crf"})
        if unknown:
            raise ValueError(f"[recorder] has unknown settings {', '.join(unknown)}; "
                             f"known: dir, sessions, keyframe_s, crf")
        directory = table.get("dir", str(cls.dir))
        if not isinstance(directory, str) or not directory.strip():
            raise ValueError(f"[recorder] dir must be a non-empty path string, not {directory!r}")
        sessions = table.get("sessions")
        if sessions is not None and (not isinstance(sessions, list) or not sessions
                                     or not all(isinstance(s, str) and s for s in sessions)):
            raise ValueError(f"[recorder] sessions must be a non-empty list of session names, not {sessions!r}")
        keyframe_s = table.get("keyframe_s", cls.keyframe_s)
        if isinstance(keyframe_s, bool) or not isinstance(keyframe_s, int | float) or not 0 < keyframe_s <= 10:
            raise ValueError(f"[recorder] keyframe_s must be a number of seconds in (0, 10], not {keyframe_s!r}")
        crf = table.get("crf", cls.crf)
        if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= MAX_CRF:
            raise ValueError(f"[recorder] crf must be an integer 0..{MAX_CRF}, not {crf!r}")
        path = Path(directory).expanduser()
        if path.exists() and not path.is_dir():
            raise ValueError(f"[recorder] dir {directory!r} is a file, not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"[recorder] dir {directory!r} cannot be created: {exc.strerror}") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"[recorder] dir {directory!r} is not writable")
        return cls(path.resolve(), tuple(sessions) if sessions else None, float(keyframe_s), crf)


# ---------------------------------------------------------------- one session's recording


class Recording:
    """One session's video and timeline, kept in step frame by frame."""

    def __init__(self, config: RecorderConfig, session: SessionInfo, prompt: str) -> None:
        stem = _free_stem(config.dir, f"{_safe(session.name)}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        self.video_path, self.timeline_path = config.dir / f"{stem}.mp4", config.dir / f"{stem}.json"
        self.video = VideoWriter(self.video_path, session.fps, session.frame_shape,
                                 keyframe_s=config.keyframe_s, crf=config.crf)
        self.timeline = TimelineWriter(self.timeline_path, Timeline(
            session=session.name, model=session.model, fps=session.fps, frame_shape=tuple(session.frame_shape),
            seed=session.seed, video=self.video_path.name))
        self.timeline.add(Entry(frame=0, event_type="open", text=prompt, source="open"))
        self.skipped = 0  # frames dropped because they came again or out of order

    def frames(self, first_index: int, frames: np.ndarray) -> None:
        written = self.video.frames
        if first_index < written:  # already have these: keep only the new tail
            skip = min(written - first_index, len(frames))
            self.skipped += skip
            log.warning("recorder: session %s delivered frames %d..%d again or out of order; skipped %d",
                        self.timeline.timeline.session, first_index, first_index + len(frames) - 1, skip)
            first_index, frames = first_index + skip, frames[skip:]
            if not len(frames):
                return
        if first_index > written:
            self._fill(first_index - written, frames[0])
        self.video.write(frames)

    def acked(self, ack: AckInfo) -> None:
        if ack.status != "applied" or ack.frame is None:
            return
        if ack.event_type == "open":
            self.timeline.set_event_id(0, ack.event_id)
        elif ack.text is not None:
            self.timeline.add(Entry(frame=ack.frame, event_id=ack.event_id, event_type=ack.event_type,
                                    text=ack.text, transition=ack.transition, source=ack.source or ack.event_type))

    def close(self, frames: int | None) -> None:
        """Finish the files; ``frames`` is the session's frame count, when known (a dropped tail is filled)."""
        try:
            if frames is not None and frames > self.video.frames and self.video.last_frame is not None:
                self._fill(frames - self.video.frames, None)
        finally:
            self.video.close()
        self.timeline.finish(self.video.frames)
        log.info("recorder: session %s: %d frames in %s", self.timeline.timeline.session, self.video.frames,
                 self.video_path)

    def _fill(self, count: int, following: np.ndarray | None) -> None:
        """Keep time across ``count`` frames never delivered: repeat the last frame (or the next, at the start)."""
        hold = self.video.last_frame if self.video.last_frame is not None else following
        self.timeline.add_repeated(self.video.frames, count)
        self.video.write(np.repeat(hold[None], count, axis=0))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "session"


def _free_stem(directory: Path, stem: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3`` ... if a session of that name opened in the same second."""
    candidate, n = stem, 1
    while (directory / f"{candidate}.mp4").exists() or (directory / f"{candidate}.json").exists():
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


# ---------------------------------------------------------------- the plugin


class Recorder:
    """The hook implementations. Loading the module (``--plugin recorder``) registers its one instance
    (below); an embedder running several hosts in one process registers its own ``Recorder()``."""

    def __init__(self) -> None:
        self.config = RecorderConfig()
        self.recordings: dict[str, Recording] = {}

    @hookimpl
    def longlive_configure(self, config: Mapping[str, Any]) -> None:
        self.config = RecorderConfig.from_table(config.get("recorder", {}))
        if CODEC not in av.codecs_available:
            raise ValueError(f"the recorder needs the {CODEC} encoder, which this PyAV build lacks")

    @hookimpl
    def longlive_session_opened(self, session: SessionInfo, prompt: str) -> None:
        if self.config.sessions is not None and session.name not in self.config.sessions:
            return
        if session.name in self.recordings:  # opened again without a close: finish the old file first
            self.recordings.pop(session.name).close(None)
        self.recordings[session.name] = Recording(self.config, session, prompt)

    @hookimpl
    def longlive_frames(self, session: SessionInfo, first_index: int, frames: np.ndarray) -> None:
        if (recording := self.recordings.get(session.name)) is not None:
            recording.frames(first_index, frames)

    @hookimpl
    def longlive_event_acked(self, session: SessionInfo, ack: AckInfo) -> None:
        if (recording := self.recordings.get(session.name)) is not None:
            recording.acked(ack)

    @hookimpl
    def longlive_session_closed(self, session: SessionInfo, frames: int) -> None:
        if (recording := self.recordings.pop(session.name, None)) is not None:
            recording.close(frames)

    @hookimpl
    def longlive_daemon_stopping(self) -> None:
        while self.recordings:
            self.recordings.popitem()[1].close(None)


longlive_plugin = Recorder()  # what the host registers (plugins/host.py)
