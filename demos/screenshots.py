"""Headless runs of the demos: the code path of their tests, and the docs' screenshots.

    SDL_VIDEODRIVER=dummy python -m demos.screenshots     # writes docs/img/demo_{viewer,story,arcade}.png

Each scene starts a toy daemon on a thread (loopback, free ports), opens a demo on it, plays a
bounded number of frames with synthetic key presses, and returns the window's pixels.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pygame

from demos.link import Link
from demos.ui import StreamApp, open_window, run

ANY_PORT = "tcp://127.0.0.1:*"
STORY = '''
async def story(s):
    await s.show("a red ball rests on a grassy meadow under a sunny daytime sky", seconds=0.5)
    way = await s.choose("Which way does the ball roll?", ["left", "right"], timeout=6, default=0)
    await s.show(["a red ball rolls to the left across a grassy meadow under an orange sunset",
                  "a blue cube slides to the right across a snowy field under a starry night sky"][way], seconds=2)
'''
BRANCHES = ("a red ball rolls to the left across a grassy meadow under an orange sunset",
            "a blue cube slides to the right across a snowy field under a starry night sky")


@contextmanager
def toy_daemon(arcade: bool = False, endpoints: tuple[str, str] = (ANY_PORT, ANY_PORT),
               session: str | None = "main") -> Iterator[tuple[str, str]]:
    """A toy-model daemon on a thread (with the arcade rules plugin if asked); yields its endpoints."""
    import torch

    from plugins.host import PluginHost
    from runtime.daemon.daemon import DaemonConfig
    from runtime.daemon.inprocess import serve_in_thread
    from runtime.pipeline import load_pipeline

    torch.set_num_threads(1)
    host = PluginHost(builtin_models=False)
    if arcade:
        host.load("plugins.examples.arcade_rules")
    pipe = load_pipeline("toy", max_streams=2)
    config = DaemonConfig(control=endpoints[0], stream=endpoints[1], default_session=session,
                          default_prompt="a red ball rests on a grassy meadow under a sunny daytime sky")
    with serve_in_thread(pipe, config, host) as daemon:
        yield daemon.endpoints


def headless_window() -> pygame.Surface:
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    return open_window("LongLive demo (headless)")


def press(key: int) -> None:
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode=""))


def pixels(surface: pygame.Surface) -> np.ndarray:
    """The window as an (h, w, 3) uint8 array."""
    return pygame.surfarray.array3d(surface).swapaxes(0, 1).copy()


def run_until(app: StreamApp, done: Callable[[], bool], timeout: float = 20.0, chunk: int = 4) -> None:
    """Run the demo's loop until `done()`; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the demo did not get there in time"
        run(app, chunk)


def viewer_scene(endpoints: tuple[str, str], out_dir: Path) -> tuple[StreamApp, np.ndarray]:
    from demos.viewer import ViewerApp

    surface = pygame.display.get_surface()
    app = ViewerApp(Link(*endpoints, name="viewer"), out_dir=out_dir)
    run_until(app, lambda: app.link.prompt is not None and app.link.frames_shown > 8)
    press(pygame.K_3)
    run_until(app, lambda: app.link.latency_ms is not None)
    run(app, 24)
    return app, pixels(surface)


def arcade_scene(endpoints: tuple[str, str], out_dir: Path) -> tuple[StreamApp, np.ndarray]:
    from demos.arcade import ArcadeApp

    surface = pygame.display.get_surface()
    app = ArcadeApp(Link(*endpoints, name="arcade"), out_dir=out_dir)
    run_until(app, lambda: app.link.frames_shown > 8)
    for key in (pygame.K_t, pygame.K_LEFT, pygame.K_w):
        sent = len(app.moves)
        press(key)
        run_until(app, lambda: len(app.moves) > sent and app.moves[-1].sent.picture is not None)
    run(app, 12)
    return app, pixels(surface)


def story_scene(endpoints: tuple[str, str], out_dir: Path) -> tuple[StreamApp, np.ndarray]:
    """Up to the open question (on screen), before it is answered."""
    from demos.story import StoryApp

    surface = pygame.display.get_surface()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "story.py").write_text(STORY)
    app = StoryApp(Link(*endpoints, session="story", name="story"), out_dir / "story.py", out_dir=out_dir)
    run_until(app, lambda: app.player.board.ask is not None and app.link.frames_shown > 4)
    run(app, 8)
    return app, pixels(surface)


def main() -> None:
    import tempfile

    img = Path(__file__).resolve().parent.parent / "docs" / "img"
    headless_window()
    with tempfile.TemporaryDirectory() as tmp:
        for name, scene, arcade in (("viewer", viewer_scene, False), ("story", story_scene, False),
                                    ("arcade", arcade_scene, True)):
            with toy_daemon(arcade=arcade) as endpoints:
                app, _ = scene(endpoints, Path(tmp))
                pygame.image.save(pygame.display.get_surface(), str(img / f"demo_{name}.png"))
                app.close()
            print(img / f"demo_{name}.png")


if __name__ == "__main__":
    main()
