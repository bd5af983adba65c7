"""The arcade, headless against a real toy daemon with the arcade rules plugin: each key
becomes a game event, the rules plugin turns it into a prompt, the ack's frame is shown beside
the event, and the scene reached counts; without the plugin the game says so."""

from __future__ import annotations

import numpy as np
import pygame
import pytest

from demos.arcade import THUMB, ArcadeApp
from demos.link import Link
from demos.screenshots import arcade_scene, headless_window, press, run_until, toy_daemon
from demos.ui import FOOTER, STREAM


@pytest.fixture(scope="module", autouse=True)
def window():
    yield headless_window()
    pygame.display.quit()


def test_keys_steer_the_world_through_the_rules_plugin(tmp_path):
    with toy_daemon(arcade=True) as endpoints:
        app, shot = arcade_scene(endpoints, tmp_path)
        try:
            assert [m.sent.label for m in app.moves] == ["time sunset", "move left", "weather rain"]
            for move in app.moves:
                ack = move.sent.ticket.result(0)
                assert ack.status == "applied" and move.sent.outcome() == f"frame {ack.frame}"
                assert move.sent.picture.frame.frame == ack.frame  # the ack frame itself is what is shown
                assert move.sent.picture.frame.prompt_id == ack.event_id
            assert app.link.prompt == ("a red ball rolls to the left across a grassy meadow under an orange sunset"
                                       " in the rain")
            assert 0 in app.reached and 1 not in app.reached
            # the ack frames are drawn as thumbnails: each box shows its own picture
            y = STREAM.bottom - THUMB - 20
            boxes = [shot[y + 2:y + THUMB - 2, x + 2:x + THUMB - 2].astype(int)
                     for x in range(FOOTER.x, FOOTER.x + 3 * (THUMB + 12), THUMB + 12)]
            for box, move in zip(boxes, app.moves, strict=True):
                own = move.sent.picture.image.reshape(-1, 3).mean(axis=0)
                assert box.std() > 5 and np.abs(box.reshape(-1, 3).mean(axis=0) - own).max() < 8
        finally:
            app.close()


def test_without_the_rules_plugin_the_game_says_so(tmp_path):
    with toy_daemon(arcade=False) as endpoints:
        app = ArcadeApp(Link(*endpoints), out_dir=tmp_path)
        try:
            run_until(app, lambda: app.link.frames_shown > 2)
            assert not app.unmapped
            press(pygame.K_SPACE)
            run_until(app, lambda: bool(app.moves) and app.moves[-1].sent.ticket.done())
            app.update()
            assert app.unmapped and app.moves[-1].sent.outcome() == "no visible effect"
            assert any("no rules plugin" in text for text, _ in app.hud_lines())
        finally:
            app.close()
