"""The recorder: real H.264 files decoded back with PyAV (frame count, fps, pixels), the
timeline against the acks, gaps and repeats, crash safety under SIGKILL, bad settings, and
one end-to-end run through a real daemon over loopback sockets."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest

from plugins.hookspecs import AckInfo, SessionInfo
from plugins.host import PluginHost
from plugins.recorder import Recorder, VideoWriter
from plugins.timeline import read_timeline
from tests.serve_child import serve_with_plugin

FPS = 16.0
SHAPE = (64, 64)
ROOT = Path(__file__).resolve().parents[1]


def moving_square(n: int, shape: tuple[int, int] = SHAPE, start: int = 0) -> np.ndarray:
    """Frames a codec keeps apart: a smooth gradient with a white square that moves 3 px a frame."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 96)], -1)
    frames = np.repeat(base[None], n, 0).astype(np.uint8)
    for i in range(n):
        x = (3 * (start + i)) % (w - 12)
        y = (h // 3 + (start + i) // ((w - 12) // 3) * 5) % (h - 12)
        frames[i, y:y + 12, x:x + 12] = 255
    return frames


def decode(path: Path) -> tuple[np.ndarray, list[float], av.video.stream.VideoStream]:
    """All frames (RGB), their presentation times in seconds, and the stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(stream))
        return (np.stack([f.to_ndarray(format="rgb24") for f in decoded]) if decoded else np.zeros((0, 1, 1, 3)),
                [float(f.pts * f.time_base) for f in decoded], stream)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def session(name: str = "main") -> SessionInfo:
    return SessionInfo(name, "toy", FPS, SHAPE, 7, 3)


def recorder_host(tmp_path: Path, **settings) -> PluginHost:
    host = PluginHost({"recorder": {"dir": str(tmp_path), **settings}}, builtin_models=False)
    assert host.register(Recorder(), "recorder") == "recorder", host.disabled
    return host


def outputs(directory: Path) -> tuple[Path, Path]:
    videos, sidecars = sorted(directory.glob("*.mp4")), sorted(directory.glob("*.json"))
    assert len(videos) == 1 and len(sidecars) == 1 and videos[0].stem == sidecars[0].stem, list(directory.iterdir())
    return videos[0], sidecars[0]


# ---------------------------------------------------------------- the encoder


def test_video_writer_decodes_to_the_same_frames_at_the_stream_fps(tmp_path):
    frames = moving_square(40)
    with VideoWriter(tmp_path / "v.mp4", FPS, SHAPE) as writer:
        writer.write(frames[:17])
        writer.write(frames[17:])
    decoded, times, stream = decode(tmp_path / "v.mp4")
    assert len(decoded) == 40 and stream.average_rate == FPS
    assert times == pytest.approx([i / FPS for i in range(40)])
    assert min(psnr(d, f) for d, f in zip(decoded, frames)) > 35
    # negative control: each decoded frame is nearest to its own input, far from the others
    distances = np.array([[np.mean((d.astype(float) - f) ** 2) for f in frames] for d in decoded])
    assert list(distances.argmin(axis=1)) == list(range(40))
    assert psnr(decoded[10], frames[20]) < 25


def test_odd_sizes_are_padded_to_even(tmp_path):
    frames = moving_square(5, (63, 65))
    with VideoWriter(tmp_path / "odd.mp4", 12.5, (63, 65)) as writer:
        writer.write(frames)
    decoded, times, stream = decode(tmp_path / "odd.mp4")
    assert decoded.shape == (5, 64, 66, 3) and float(stream.average_rate) == 12.5
    assert times == pytest.approx([i / 12.5 for i in range(5)])
    assert min(psnr(d[:63, :65], f) for d, f in zip(decoded, frames)) > 35


def test_video_writer_refuses_frames_of_the_wrong_shape_or_type(tmp_path):
    with VideoWriter(tmp_path / "v.mp4", FPS, SHAPE) as writer:
        with pytest.raises(ValueError, match=r"expected uint8 frames \[n, 64, 64, 3\], got uint8 \[2, 32, 32, 3\]"):
            writer.write(moving_square(2, (32, 32)))
        with pytest.raises(ValueError, match="got float32"):
            writer.write(moving_square(2).astype(np.float32))


# ---------------------------------------------------------------- the plugin through the host


def test_session_recorded_with_its_timeline(tmp_path):
    host = recorder_host(tmp_path)
    info, frames = session(), moving_square(48)
    host.notify("session_opened", session=info, prompt="a red ball rolls on the lawn")
    host.notify("event_acked", session=info, ack=AckInfo("open-1", "open", "applied", 0))
    acks = [AckInfo("c-2", "prompt", "applied", 24, "a blue cube sits on the sand", "recache", "prompt"),
            AckInfo("c-3", "prompt", "superseded", None),
            AckInfo("c-4", "event", "applied", 36, "a pink orb hops in place", "cut", "event"),
            AckInfo("c-5", "event", "applied", None)]  # a game event no plugin mapped: shows in no frame
    for first in range(0, 48, 3):
        host.notify("frames", session=info, first_index=first, frames=frames[first:first + 3], prompt_id=None)
        for ack in acks:
            if ack.frame is not None and first + 3 > ack.frame >= first or ack.frame is None and first == 30:
                host.notify("event_acked", session=info, ack=ack)
    host.notify("session_closed", session=info, frames=48)
    host.close()
    assert host.disabled == {}
    video, sidecar = outputs(tmp_path)
    assert video.name.startswith("main-") and video.name.endswith("Z.mp4")
    decoded, times, _ = decode(video)
    assert len(decoded) == 48 and times[-1] == pytest.approx(47 / FPS)
    assert min(psnr(d, f) for d, f in zip(decoded, frames)) > 35
    timeline = read_timeline(sidecar)
    assert (timeline.frames, timeline.video, timeline.fps, timeline.frame_shape, timeline.seed) == \
        (48, video.name, FPS, SHAPE, 7)
    assert timeline.repeated == ()
    assert [(e.frame, e.event_id, e.event_type, e.text, e.transition, e.source) for e in timeline.timeline] == [
        (0, "open-1", "open", "a red ball rolls on the lawn", None, "open"),
        (24, "c-2", "prompt", "a blue cube sits on the sand", "recache", "prompt"),
        (36, "c-4", "event", "a pink orb hops in place", "cut", "event")]


def test_gaps_are_filled_and_counted_repeats_skipped(tmp_path):
    host = recorder_host(tmp_path)
    info, frames = session(), moving_square(30)
    host.notify("session_opened", session=info, prompt="a red ball")
    for first, count in [(3, 6), (15, 6), (18, 6), (9, 3)]:  # 0..2 and 12..14 never come; 18..20 twice; 9..11 late
        host.notify("frames", session=info, first_index=first, frames=frames[first:first + count], prompt_id=None)
    host.notify("session_closed", session=info, frames=30)  # 24..29 never come either
    host.close()
    video, sidecar = outputs(tmp_path)
    decoded, _, _ = decode(video)
    assert len(decoded) == 30
    assert read_timeline(sidecar).repeated == ((0, 3), (9, 6), (24, 6))
    # which input each video frame shows: the gaps hold the neighbouring delivered frame
    shown = [int(np.argmin([np.mean((d.astype(float) - f) ** 2) for f in frames])) for d in decoded]
    assert shown == [3] * 4 + list(range(4, 9)) + [8] * 6 + list(range(15, 24)) + [23] * 6


def test_sessions_filter_and_daemon_stopping_closes_open_recordings(tmp_path):
    host = recorder_host(tmp_path, sessions=["main"])
    for name in ("main", "other"):
        host.notify("session_opened", session=session(name), prompt="a red ball")
        host.notify("frames", session=session(name), first_index=0, frames=moving_square(6), prompt_id=None)
    host.close()  # daemon_stopping with "main" still open
    video, sidecar = outputs(tmp_path)
    assert video.name.startswith("main-")
    assert len(decode(video)[0]) == 6 and read_timeline(sidecar).frames == 6


def test_the_builtin_name_loads_the_recorder(tmp_path):
    host = PluginHost({"recorder": {"dir": str(tmp_path / "new" / "dir")}}, builtin_models=False)
    assert host.load("recorder") == "recorder" and host.disabled == {}
    assert (tmp_path / "new" / "dir").is_dir()
    host.close()


@pytest.mark.parametrize("table, message", [
    ("recordings", "[recorder] must be a table, not str"),
    ({"dir": 3}, "dir must be a non-empty path string, not 3"),
    ({"dir": " "}, "dir must be a non-empty path string"),
    ({"sessions": "main"}, "sessions must be a non-empty list of session names, not 'main'"),
    ({"sessions": []}, "sessions must be a non-empty list"),
    ({"crf": 60}, "crf must be an integer 0..51, not 60"),
    ({"keyframe_s": 0}, "keyframe_s must be a number of seconds in (0, 10], not 0"),
    ({"directory": "x"}, "unknown settings directory; known: dir, sessions, keyframe_s, crf"),
])
def test_bad_settings_are_refused_with_the_reason(tmp_path, table, message):
    recorder = Recorder()
    with pytest.raises(ValueError, match=re.escape(message)):
        recorder.longlive_configure(config={"recorder": table})
    host = PluginHost({"recorder": table}, builtin_models=False)  # through the host: disabled, named
    assert host.register(Recorder(), "recorder") is None
    assert message in host.disabled["recorder"]
    host.close()


def test_a_dir_that_is_a_file_or_under_one_is_refused(tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(ValueError, match="dir .*taken' is a file, not a directory"):
        Recorder().longlive_configure(config={"recorder": {"dir": str(tmp_path / "taken")}})
    with pytest.raises(ValueError, match="dir .*taken/sub' cannot be created: Not a directory"):
        Recorder().longlive_configure(config={"recorder": {"dir": str(tmp_path / "taken" / "sub")}})


# ---------------------------------------------------------------- crash safety

CRASHING_RECORDER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from plugins.hookspecs import SessionInfo
    from plugins.host import PluginHost
    from tests.test_plugin_recorder import moving_square
    host = PluginHost({"recorder": {"dir": sys.argv[1]}}, builtin_models=False)
    assert host.load("recorder") == "recorder", host.disabled
    info = SessionInfo("main", "toy", 16.0, (64, 64), 7, 3)
    host.notify("session_opened", session=info, prompt="a red ball")
    frames, start = moving_square(3 * 400), time.monotonic()
    for block in range(400):  # paced like the daemon: one block of 3 frames every 3/16 s
        time.sleep(max(0.0, start + block * 3 / 16 - time.monotonic()))
        host.notify("frames", session=info, first_index=3 * block, frames=frames[3 * block:3 * block + 3],
                    prompt_id=None)
        print(3 * block + 3, flush=True)
""")


def test_sigkill_loses_at_most_about_a_second(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_RECORDER, str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    delivered = 0
    try:
        while delivered < 45:  # ~2.8 s of video: two full fragments and part of a third
            line = proc.stdout.readline()
            assert line, "the recording process ended early"
            delivered = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    video, sidecar = outputs(tmp_path)
    decoded, times, _ = decode(video)
    lost = delivered - len(decoded)
    assert 0 <= lost <= FPS + 3, f"delivered {delivered}, decodable {len(decoded)}"  # one fragment + one block
    assert len(decoded) >= 32  # negative control on the bound: most of what was delivered survived
    assert times == pytest.approx([i / FPS for i in range(len(decoded))])
    assert min(psnr(d, f) for d, f in zip(decoded, moving_square(len(decoded)))) > 35
    timeline = read_timeline(sidecar)  # the sidecar is whole, and says the recording never finished
    assert timeline.frames is None and timeline.timeline[0].text == "a red ball"


# ---------------------------------------------------------------- end to end through a real daemon


BLUE = "a blue cube slides to the left across the sea under a stormy sky"
NIGHT = "a pink orb hops in place on the dunes under a starry night sky"


def test_daemon_session_recorded_end_to_end(tmp_path):
    from protocol import Ack
    from protocol.client import Controller, Picture, Viewer
    from runtime.daemon.daemon import DaemonConfig
    from runtime.daemon.inprocess import serve_in_thread
    from runtime.pipeline import load_pipeline

    # the toy: real content (random-small draws per-pixel noise, which no 4:2:0 codec keeps)
    pipe = load_pipeline("toy", max_streams=2)
    host = PluginHost({"recorder": {"dir": str(tmp_path), "sessions": ["rec"]}}, builtin_models=False)
    assert host.load("recorder") == "recorder", host.disabled
    config = DaemonConfig(control="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*")
    pictures: list[Picture] = []
    with serve_in_thread(pipe, config, host) as daemon, \
            Viewer(daemon.endpoints[1], sessions=("main", "rec"), status=False) as view, \
            Controller(daemon.endpoints[0]) as ctl:
        assert isinstance(next(view.frames(timeout=20)), Picture)  # subscribed: the default session's frames arrive
        opened = ctl.open("rec", seed=3, prompt="a red ball rolls over green grass").result(timeout=20)
        acks = [ctl.send_prompt(text, session="rec").result(timeout=20)
                for text in (BLUE, NIGHT)]
        while not pictures or pictures[-1].frame.frame < acks[-1].frame + pipe.frames_per_block:
            msg = view.recv(timeout=20)
            assert msg is not None
            if isinstance(msg, Picture) and msg.frame.session == "rec":
                pictures.append(msg)
        closed = ctl.close_session("rec")
        while not (isinstance(msg := view.recv(timeout=20), Ack) and msg.event_id == closed.event_id):
            assert msg is not None
            if isinstance(msg, Picture) and msg.frame.session == "rec":
                pictures.append(msg)  # frames published before the close are all ahead of its ack
    # the daemon stopped and its host drained the recorder: the files are complete
    streamed = [p.frame.frame for p in pictures]
    assert streamed == list(range(len(streamed))) and view.missed == 0
    video, sidecar = outputs(tmp_path)
    assert video.name.startswith("rec-")
    decoded, times, stream = decode(video)
    assert len(decoded) == len(streamed) and stream.average_rate == pipe.fps
    assert times == pytest.approx([i / pipe.fps for i in range(len(decoded))])
    quality = [psnr(d, p.image) for d, p in zip(decoded, pictures)]
    assert min(quality) > 28, quality
    timeline = read_timeline(sidecar)
    assert timeline.frames == len(streamed) and timeline.repeated == () and timeline.seed == 3
    assert [(e.frame, e.event_id, e.text, e.source) for e in timeline.timeline] == [
        (0, opened.event_id, "a red ball rolls over green grass", "open"),
        (acks[0].frame, acks[0].event_id, BLUE, "prompt"),
        (acks[1].frame, acks[1].event_id, NIGHT, "prompt")]
    assert 0 < acks[0].frame < acks[1].frame < len(streamed)
    by_frame = {p.frame.frame: p.frame.prompt_id for p in pictures}  # the stream agrees with the timeline
    for entry in timeline.timeline[1:]:
        assert by_frame[entry.frame] == entry.event_id and by_frame[entry.frame - 1] != entry.event_id


def test_sigterm_to_longlive_serve_closes_the_recording_cleanly(tmp_path):
    from protocol.client import Viewer

    proc = serve_with_plugin(tmp_path, "recorder", f'[recorder]\ndir = "{tmp_path / "rec"}"\n')
    try:
        while not (line := proc.stdout.readline()).startswith("longlive: serving"):
            assert line, "serve did not start"
        with Viewer(f"ipc://{tmp_path}/stream", acks=False, status=False) as view:
            seen = max(p.frame.frame for p in itertools.islice(view.frames(timeout=20), 24))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    video, sidecar = outputs(tmp_path / "rec")
    timeline = read_timeline(sidecar)
    decoded, _, _ = decode(video)
    # closed, not cut off: the partial last second is in the file and the sidecar has the count
    assert timeline.frames is not None and timeline.frames > seen and len(decoded) == timeline.frames
    assert timeline.timeline[0].source == "open" and timeline.repeated == ()
