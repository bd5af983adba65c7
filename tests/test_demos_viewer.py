"""The viewer/controller, headless (SDL dummy driver) against a real toy daemon on loopback:
the stream is drawn and moves, the HUD is drawn, a preset key switches the prompt and its ack
comes back, the prompt box catches unknown toy words before sending, R records a playable mp4
with its timeline, and a daemon that stops and comes back is shown and reconnected."""

from __future__ import annotations

import av
import numpy as np
import pygame
import pytest

from demos.link import Link
from demos.screenshots import headless_window, pixels, press, run_until, toy_daemon, viewer_scene
from demos.ui import (ACCENT, BAD, EMPTY, GOOD, PANEL, PANEL_BG, STREAM, STRIP, TextBox, check_prompt, run,
                      strip_cells)
from demos.viewer import PRESETS, ViewerApp
from plugins.timeline import read_timeline


@pytest.fixture(scope="module", autouse=True)
def window():
    yield headless_window()
    pygame.display.quit()


def region(image: np.ndarray, rect: pygame.Rect) -> np.ndarray:
    return image[rect.y:rect.bottom, rect.x:rect.right].astype(int)


def test_every_preset_is_a_toy_prompt_and_typos_get_suggestions():
    assert all(check_prompt(p, "toy") is None for p in PRESETS)
    problem = check_prompt("a red bal rolls under the moonlite sky", "toy")
    assert problem is not None and not problem.blocking  # the daemon would show the red ball, ignoring these
    assert "'bal' (try 'ball')" in problem.message and "moonlite" in problem.message
    assert check_prompt("the moonlite", "toy").blocking  # nothing left to show: the daemon would refuse it
    assert check_prompt("a green ball", "toy").blocking
    assert check_prompt("anything at all", "random-small") is None  # only the toy's words are known here


def test_the_prompt_box_sends_a_partly_read_prompt_only_on_a_second_enter():
    sent: list[str] = []
    box = TextBox(lambda text: check_prompt(text, "toy"), sent.append)

    def key(k: int) -> None:
        box.handle(pygame.event.Event(pygame.KEYDOWN, key=k))

    def type_text(text: str) -> None:
        box.handle(pygame.event.Event(pygame.TEXTINPUT, text=text))

    box.open()
    type_text("the moonlite")
    key(pygame.K_RETURN)
    key(pygame.K_RETURN)
    assert box.active and box.feedback.blocking and sent == []  # refused, however often Enter is pressed
    key(pygame.K_ESCAPE)
    box.open()
    type_text("a blue bal")
    key(pygame.K_RETURN)
    assert box.active and sent == [] and "'bal'" in box.feedback.message
    type_text("l")  # edited: its own warning, its own second Enter
    key(pygame.K_RETURN)
    assert not box.active and sent == ["a blue ball"]  # nothing to warn about: sent at once
    box.open()
    type_text("a blue bal")
    key(pygame.K_RETURN)
    key(pygame.K_RETURN)
    assert not box.active and sent == ["a blue ball", "a blue bal"]


def test_viewer_stream_hud_keys_box_and_recording(tmp_path):
    with toy_daemon() as endpoints:
        app, shot = viewer_scene(endpoints, tmp_path)
        try:
            # the stream area shows pictures, and they change over time
            stream = region(shot, STREAM)
            assert stream.std() > 10
            run(app, 20)
            assert np.abs(region(pixels(pygame.display.get_surface()), STREAM) - stream).mean() > 0.5

            # the key press '3' switched the prompt: acked, and the frames from the ack on carry it
            sent = app.link.sent[-1]
            ack = sent.ticket.result(0)
            assert ack.status == "applied" and ack.frame is not None
            assert app.link.prompt == PRESETS[2] and app.link.prompt_id == sent.ticket.event_id
            assert app.link.picture.frame.frame >= ack.frame and sent.latency_ms > 0

            # the cache strip: one cell per window frame, the sink's in amber, held ones lit
            def frames_held() -> int:  # window frames held, per the status the strip is drawn from (every 2 s)
                return round(app.link.status.cache_fill * app.link.status.cache_window_frames)

            for _ in range(300):  # up to 5 s of window frames for a status showing the ring in use
                if frames_held() > app.link.status.cache_sink_frames:
                    break
                run(app, 1)
            status = app.link.status
            sink, window = status.cache_sink_frames, status.cache_window_frames
            held = frames_held()
            assert 0 < sink < held <= window
            surface = pygame.display.get_surface()
            app.draw(surface)
            image = pixels(surface)
            middle = STRIP.y + STRIP.h // 2
            colours = [tuple(image[middle, (x0 + x1) // 2]) for x0, x1 in strip_cells(window)]
            assert colours == [ACCENT] * sink + [GOOD] * (held - sink) + [EMPTY] * (window - held)

            # the HUD draws text: the panel differs from the same frame drawn without it
            app.draw(surface)
            with_hud = region(pixels(surface), PANEL)
            app.show_hud = False
            app.draw(surface)
            without = region(pixels(surface), PANEL)
            app.show_hud = True
            assert (without == PANEL_BG).all()  # control: nothing drawn there without the HUD
            assert (np.abs(with_hud - without).sum(axis=2) > 60).sum() > 500

            # the prompt box: an unknown word is shown and nothing is sent on one Enter; a good prompt is sent
            count = len(app.link.sent)
            press(pygame.K_TAB)  # recache -> none
            press(pygame.K_RETURN)
            for ch in "a blue bal":
                pygame.event.post(pygame.event.Event(pygame.TEXTINPUT, text=ch))
            press(pygame.K_RETURN)
            run(app, 2)
            assert app.box.active and "'bal' (try 'ball')" in app.box.feedback.message and len(app.link.sent) == count
            pygame.event.post(pygame.event.Event(pygame.TEXTINPUT, text="l on the sand"))
            press(pygame.K_RETURN)
            run(app, 2)
            assert not app.box.active and app.link.sent[-1].label == "prompt (none)"
            run_until(app, lambda: app.link.prompt == "a blue ball on the sand")

            # R records what arrives; R again finishes a playable mp4 and a valid timeline
            press(pygame.K_r)
            run_until(app, lambda: app.capture is not None and app.capture.frames >= 20)
            capture = app.capture
            press(pygame.K_r)
            press(pygame.K_s)
            run(app, 2)
            with av.open(str(capture.video_path)) as video:
                decoded = sum(1 for _ in video.decode(video=0))
            timeline = read_timeline(capture.timeline_path)
            assert decoded == capture.frames == timeline.frames >= 20
            assert timeline.timeline[0].text == "a blue ball on the sand"
            shots = list((tmp_path / "screenshots").glob("*.png"))
            assert len(shots) == 1 and pygame.image.load(str(shots[0])).get_size() == surface.get_size()
        finally:
            app.close()


def banner_pixels(image: np.ndarray) -> int:
    """Pixels of the banner's red border in the stream area."""
    return int((region(image, STREAM) == BAD).all(axis=2).sum())


def test_a_stopped_daemon_is_shown_and_reconnected(tmp_path):
    surface = pygame.display.get_surface()
    app = None
    try:
        with toy_daemon() as endpoints:
            app = ViewerApp(Link(*endpoints), out_dir=tmp_path)
            run_until(app, lambda: app.link.frames_shown > 4)
            assert app.banner() is None and banner_pixels(pixels(surface)) == 0  # control
        run_until(app, lambda: app.banner() is not None, timeout=10)
        run(app, 1)  # liveness is a clock: draw once more after it ran out
        assert "stopped" in app.banner() and banner_pixels(pixels(surface)) > 500
        shown = app.link.frames_shown
        with toy_daemon(endpoints=endpoints):  # a new daemon on the same endpoints
            run_until(app, lambda: app.link.connected and app.link.frames_shown > shown + 4)
            run(app, 2)
            assert app.banner() is None and banner_pixels(pixels(surface)) == 0
    finally:
        if app is not None:
            app.close()
