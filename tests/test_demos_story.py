"""The story player, headless against a real toy daemon: the question is drawn over the
stream, a number key picks a branch and the branch's prompt comes into effect; at the end
Enter plays the story again and a mouse click picks the other branch."""

from __future__ import annotations

import numpy as np
import pygame
import pytest

from demos.screenshots import BRANCHES, headless_window, pixels, run_until, story_scene, toy_daemon
from demos.ui import ACCENT, run


@pytest.fixture(scope="module", autouse=True)
def window():
    yield headless_window()
    pygame.display.quit()


def border_pixels(image: np.ndarray, rect: pygame.Rect) -> int:
    box = image[rect.y:rect.bottom, rect.x:rect.right]
    return int((box == ACCENT).all(axis=2).sum())


def test_choices_by_key_and_by_mouse_lead_to_their_branch(tmp_path):
    with toy_daemon(session=None) as endpoints:
        app, shot = story_scene(endpoints, tmp_path)
        try:
            rects = app.option_rects()
            assert len(rects) == 2 and all(border_pixels(shot, r) > 2 * r.w for r in rects)
            assert app.link.prompt not in BRANCHES
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_2, mod=0, unicode="2"))
            run_until(app, lambda: app.link.prompt in BRANCHES)
            assert app.link.prompt == BRANCHES[1]
            run_until(app, lambda: app.player.board.state == "ended")
            assert app.option_rects() == [] and border_pixels(pixels(pygame.display.get_surface()), rects[0]) == 0

            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_RETURN, mod=0, unicode="\r"))
            run_until(app, lambda: app.player.board.ask is not None)
            run(app, 2)
            assert app.link.prompt not in BRANCHES  # the replay starts over from the opening
            pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=app.option_rects()[0].center))
            run_until(app, lambda: app.link.prompt in BRANCHES)
            assert app.link.prompt == BRANCHES[0]
        finally:
            app.close()


def test_a_story_interrupted_by_the_daemon_starts_again_when_it_returns(tmp_path):
    app = None
    try:
        with toy_daemon(session=None) as endpoints:
            app, _ = story_scene(endpoints, tmp_path)
        run_until(app, lambda: app.banner() is not None and app.player.board.state == "interrupted", timeout=15)
        assert "stopped" in app.banner()
        with toy_daemon(endpoints=endpoints, session=None):
            run_until(app, lambda: app.banner() is None and app.player.board.ask is not None, timeout=30)
            assert app.player.board.state == "playing" and app.link.prompt not in BRANCHES
    finally:
        if app is not None:
            app.close()
