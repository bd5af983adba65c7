"""`longlive demo` on a machine without a display: one line says so, the story is rendered
offline to an mp4 whose path is printed, and the mp4 decodes to the story's frames."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av

from demos.cli import default_story

ROOT = Path(__file__).resolve().parent.parent
STORY = '''
async def story(s):
    await s.show("a red ball rests on a grassy meadow under a sunny daytime sky", seconds=1)
    await s.show("a blue cube slides to the right across a snowy field", seconds=1, transition="cut")
'''


def demo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    return subprocess.run([sys.executable, "-m", "runtime.cli", "demo", *args], cwd=cwd, env=env | {
        "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)


def test_without_a_display_the_demo_renders_a_playable_mp4(tmp_path):
    (tmp_path / "tiny.py").write_text(STORY)
    done = demo("--story", "tiny.py", "--threads", "1", "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("longlive demo: no display (neither DISPLAY nor WAYLAND_DISPLAY is set)")
    path = tmp_path / lines[-1]
    assert path == tmp_path / "out" / "tiny.mp4" and path.with_suffix(".json").is_file()
    with av.open(str(path)) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(frames) == 32 and frames[0].shape == (64, 64, 3)  # 2 s at the toy's 16 fps
    assert abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 10  # the cut to a new scene shows


def test_a_missing_story_file_is_named():
    done = demo("--story", "no/such/story.py", cwd=ROOT)
    assert done.returncode == 2 and "no story file no/such/story.py" in done.stderr


def test_the_default_story_exists():
    assert default_story().is_file()


def test_the_child_daemon_serves_the_arcade_rules_and_stops_cleanly(tmp_path):
    """The daemon `longlive demo --arcade` starts: a child `serve` on free loopback ports with
    the rules plugin; a game event gets a frame; SIGTERM stops it with status 0."""
    import time

    from demos.cli import start_daemon, stop_daemon
    from demos.link import Link

    child, control, stream = start_daemon("toy", tmp_path, arcade=True, story=False, threads=1)
    link = Link(control, stream)
    try:
        deadline = time.monotonic() + 60
        while link.frames_shown < 3:
            assert time.monotonic() < deadline and child.poll() is None, (tmp_path / "daemon.log").read_text()
            link.poll()
            time.sleep(0.01)
        ticket = link.send_event("jump").ticket
        ack = ticket.result(10)
        assert ack.status == "applied" and ack.frame is not None
        assert "bounces" in link.ctl.status("main")[0].prompt
    finally:
        link.close()
        stop_daemon(child)
    assert child.returncode == 0 and "longlive: stopped" in (tmp_path / "daemon.log").read_text()


def test_the_window_path_of_longlive_demo_opens_each_demo(tmp_path, monkeypatch):
    """`play()` as `longlive demo` calls it once a display exists (SDL's dummy driver stands in
    for the screen; the frame loop is bounded to 30 frames): every demo opens and draws."""
    import argparse

    import pygame

    import demos.ui
    from demos.cli import play
    from demos.screenshots import toy_daemon

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    drawn = []
    real_run = demos.ui.run
    monkeypatch.setattr(demos.ui, "run", lambda app: drawn.append(real_run(app, 30)))
    (tmp_path / "tiny.py").write_text(STORY)
    with toy_daemon(arcade=True) as (control, stream):
        for story, arcade in ((None, False), (None, True), (tmp_path / "tiny.py", False)):
            args = argparse.Namespace(story=story, arcade=arcade, out=tmp_path)
            assert play(args, control, stream) == 0
            pygame.display.quit()  # the next demo opens its own window, as a fresh process would
    assert drawn == [30, 30, 30]
