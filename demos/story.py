"""The story player: a narrative script (scripting/) plays live while its choices appear on
screen with their time left, picked with the number keys or the mouse.

The story runs on its own thread under the scripting package's live driver (`scripting.live`),
which is a protocol controller with its own sockets; the window never waits for it. Choices
travel the way a game's would: as protocol `event` messages named "choice" sent by the
window's own controller to the daemon, which relays them to the story (resent with the same
id until answered; the story counts an id once). If the daemon goes away mid-story, the
story starts again from the top once it is back.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import pygame

from demos.link import Link
from demos.ui import ACCENT, BAD, DIM, FOOTER, GOOD, STREAM, TEXT, Line, StreamApp, blit_lines
from protocol.client import Controller, Picture, RemoteError, Ticket, Viewer
from scripting.errors import ScriptError
from scripting.live import CHOICE_EVENT, LiveConfig, LiveDriver
from scripting.runner import StoryFunction, load_story, run_story
from scripting.story import Answer, Ask

OPTION_H = 30


class _Stopped(BaseException):
    """The window closed: leave the story. A BaseException, like GeneratorExit, so that the story
    runner (which turns a story's exceptions into ScriptErrors) lets it through."""


class Board:
    """What the story thread shows the window: the open question, the log, the state."""

    def __init__(self) -> None:
        self.ask: Ask | None = None
        self.input_frame = 0
        self.fps = 16.0
        self.state = "starting"  # starting, playing, ended, failed, interrupted
        self.message = ""
        self.log: deque[str] = deque(maxlen=6)

    def write(self, text: str) -> None:  # the driver prints its progress here
        for line in text.splitlines():
            if line.strip():
                self.log.append(line.removeprefix("story: "))

    def flush(self) -> None:
        pass


class _ScreenDriver(LiveDriver):
    """The live driver, telling the board which question is open."""

    def __init__(self, board: Board, stop: threading.Event, *args: object, **kwargs: object) -> None:
        self.board, self.stop = board, stop
        super().__init__(*args, on_picture=self._picture_seen, out=board, **kwargs)  # type: ignore[arg-type]

    def _picture_seen(self, picture: Picture) -> None:
        if self.stop.is_set():
            raise _Stopped
        self.board.input_frame = self.input_frame

    async def ask(self, ask: Ask) -> Answer:
        self.board.fps = self.fps
        self.board.ask = ask
        try:
            return await super().ask(ask)
        finally:
            self.board.ask = None


class StoryThread:
    """Plays `function` on the daemon again and again (after an interruption, or on `replay()`).
    `alive()` says whether the daemon answers (the window's link knows from heartbeats): a story
    that fails while it does not was interrupted, and starts again once it does."""

    def __init__(self, function: StoryFunction, control: str, stream: str, alive: Callable[[], bool],
                 session: str = "story", stall_s: float = 4.0) -> None:
        self.function, self.control, self.stream, self.session = function, control, stream, session
        self.alive, self.stall_s = alive, stall_s
        self.board = Board()
        self._stop, self._replay = threading.Event(), threading.Event()
        self.game = Controller(control, name="story-window")  # the window's thread only
        self._choice: Ticket | None = None
        self._thread = threading.Thread(target=self._run, name="story", daemon=True)
        self._thread.start()

    def choose(self, index: int) -> Ticket:
        """Answer the open question with option `index` (from 0): a `choice` event to the daemon,
        which relays it to the story; `pump` resends it until the daemon answers."""
        self._choice = self.game.event(CHOICE_EVENT, {"index": index}, session=self.session)
        return self._choice

    def pump(self) -> None:
        """Never blocks: resend the pending choice, read its answer."""
        if self._choice is not None:
            self.game.pump(0)
            if self._choice.done():
                self._choice = None

    def replay(self) -> None:
        self._replay.set()

    def close(self) -> None:
        self._stop.set()
        self._replay.set()
        self._thread.join(timeout=self.stall_s + 5)
        self.game.close()

    def _run(self) -> None:
        board = self.board
        while not self._stop.is_set():
            try:
                board.state, board.message = "playing", ""
                self._play_once()
                board.state, board.message = "ended", "The end. Enter plays it again."
            except _Stopped:
                break
            except (ScriptError, RuntimeError, TimeoutError) as exc:
                # The driver's "no frame for N s" and open timeouts reach us as ScriptErrors
                # when they happen inside the story: the daemon's liveness tells them apart.
                if self.alive() and isinstance(exc, ScriptError):
                    board.state, board.message = "failed", f"story error: {exc}"
                else:
                    board.state, board.message = "interrupted", "story interrupted; it starts again with the daemon"
                    while not self.alive() and not self._stop.wait(0.25):
                        pass
                    continue
            self._replay.wait()
            self._replay.clear()
        self._close_session()

    def _play_once(self) -> None:
        config = LiveConfig(control=self.control, stream=self.stream, session=self.session,
                            terminal=False, stall_s=self.stall_s, keep_open=True)
        self._close_session()  # a session left from an earlier run
        with Controller(self.control) as ctl, \
                Viewer(self.stream, sessions=[self.session], acks=False, errors=False, status=False,
                       events=True) as viewer:
            viewer.wait_ready()  # subscribed before the session opens: its first frames are not lost
            driver = _ScreenDriver(self.board, self._stop, config, ctl, viewer)
            failed = True
            try:  # as scripting.live.play does, with the driver that tells the window its questions
                s = run_story(self.function, driver)
                self.board.fps = driver.fps  # opens the session for a story that never waited
                driver.finish(s.now)
                failed = False
            finally:
                driver.close(failed)

    def _close_session(self) -> None:
        with Controller(self.control) as ctl:
            try:
                ctl.close_session(self.session).result(2.0)
            except (RemoteError, TimeoutError):
                pass  # no such session, or no daemon (then there is nothing to close either)


class StoryApp(StreamApp):
    title = "LongLive story"
    keys = [("1 - 9", "pick a choice"), ("mouse", "click a choice"), ("Enter", "play again at the end")]

    def __init__(self, link: Link, story: str | Path | StoryFunction, **kwargs: object) -> None:
        super().__init__(link, **kwargs)
        function = story if callable(story) else load_story(story)
        self.name = getattr(function, "__story_file__", function.__name__)
        self.player = StoryThread(function, link.control, link.stream, lambda: link.connected, link.session)
        self.picked: int | None = None

    def option_rects(self) -> list[pygame.Rect]:
        ask = self.player.board.ask
        if ask is None or ask.kind != "choice":
            return []
        top = STREAM.bottom - 12 - OPTION_H * len(ask.options)
        return [pygame.Rect(STREAM.x + 24, top + i * OPTION_H, STREAM.w - 48, OPTION_H - 4)
                for i in range(len(ask.options))]

    def pick(self, index: int) -> None:
        ask = self.player.board.ask
        if ask is not None and ask.kind == "choice" and 0 <= index < len(ask.options):
            self.player.choose(index)
            self.picked = index

    def handle(self, event: pygame.event.Event) -> None:
        if event.type == pygame.KEYDOWN and pygame.K_1 <= event.key <= pygame.K_9:
            self.pick(event.key - pygame.K_1)
        elif event.type == pygame.KEYDOWN and event.key in (pygame.K_RETURN, pygame.K_KP_ENTER):
            if self.player.board.state in ("ended", "failed"):
                self.player.replay()
        elif event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
            for i, rect in enumerate(self.option_rects()):
                if rect.collidepoint(event.pos):
                    self.pick(i)
        else:
            super().handle(event)

    def update(self) -> None:
        super().update()
        self.player.pump()
        if self.player.board.ask is None:
            self.picked = None

    def hud_lines(self) -> list[Line]:
        board = self.player.board
        lines = super().hud_lines() + [(f"story: {Path(self.name).name} ({board.state})", ACCENT)]
        if board.message:
            lines.append((board.message, BAD if board.state in ("failed", "interrupted") else TEXT))
        lines += [(line, DIM) for line in list(board.log)[-4:]]
        return lines

    def draw_extra(self, surface: pygame.Surface) -> None:
        board = self.player.board
        ask = board.ask
        if ask is not None:
            left = "" if ask.deadline is None else \
                f"  ({max(0.0, (ask.deadline - board.input_frame) / board.fps):.1f} s)"
            what = ask.question if ask.kind == "choice" else f"waiting for {' or '.join(ask.names)}"
            rects = self.option_rects()
            top = (rects[0].y if rects else STREAM.bottom - 12) - 30
            surface.blit(self.big.render(what + left, True, ACCENT), (STREAM.x + 24, top))
            for i, rect in enumerate(rects):
                picked = i == self.picked
                pygame.draw.rect(surface, (70, 60, 20) if picked else (20, 20, 30), rect)
                pygame.draw.rect(surface, GOOD if picked else ACCENT, rect, 1)
                surface.blit(self.small.render(f"{i + 1}  {ask.options[i]}", True, TEXT), (rect.x + 8, rect.y + 6))
        hint = "number keys or mouse: choose   Enter: play again (at the end)   F1: keys"
        blit_lines(surface, [(hint, TEXT)], FOOTER.x + 4, FOOTER.y + 4, self.small, FOOTER.w)

    def close(self) -> None:
        self.player.close()
        super().close()
