"""What every demo shares on screen: the window, the stream area, the HUD, the text box, the
daemon-missing banner, the help overlay, screenshots and recording, and the frame loop.

A demo is a `StreamApp` subclass that adds its keys (`handle`), its HUD lines (`hud_lines`)
and its own drawing (`draw_extra`). `run(app, frames)` is the whole loop; tests call it with a
bound on frames under SDL's dummy video driver and post synthetic key events in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pygame

from demos.capture import Capture
from demos.link import Link

SIZE = (800, 600)
STREAM = pygame.Rect(16, 16, 512, 512)
PANEL = pygame.Rect(544, 16, 240, 512)
FOOTER = pygame.Rect(16, 536, 768, 56)
STRIP = pygame.Rect(PANEL.x + 8, PANEL.bottom - 40, PANEL.w - 16, 14)

BG, PANEL_BG, EMPTY = (14, 14, 20), (30, 30, 42), (6, 6, 8)
TEXT, DIM, GOOD, BAD, ACCENT = (232, 232, 236), (150, 150, 165), (120, 220, 140), (245, 110, 100), (250, 200, 90)
BASE_KEYS = [("F1", "show / hide these keys"), ("S", "save a screenshot"), ("R", "start / stop recording"),
             ("Esc", "quit")]

Line = tuple[str, tuple[int, int, int]]


def open_window(title: str) -> pygame.Surface:
    """Initialise only pygame's display and fonts (not audio) and open the demo window."""
    pygame.display.init()
    pygame.font.init()
    surface = pygame.display.set_mode(SIZE)
    pygame.display.set_caption(title)
    return surface


def font(size: int) -> pygame.font.Font:
    return pygame.font.Font(None, size)  # pygame's bundled font: no system fonts needed


def wrap(text: str, face: pygame.font.Font, width: int) -> list[str]:
    """Break `text` into lines no wider than `width` pixels."""
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and face.size(trial)[0] > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def blit_lines(surface: pygame.Surface, lines: list[Line], x: int, y: int, face: pygame.font.Font,
               width: int, bottom: int | None = None) -> int:
    """Draw wrapped lines from (x, y); returns the y below them."""
    for text, colour in lines:
        for part in wrap(text, face, width) or [""]:
            if bottom is not None and y + face.get_linesize() > bottom:
                return y
            surface.blit(face.render(part, True, colour), (x, y))
            y += face.get_linesize()
    return y


class Feedback(NamedTuple):
    message: str
    blocking: bool  # True: the daemon would refuse the text; False: it would show only part of it


def check_prompt(text: str, model: str | None) -> Feedback | None:
    """What the model will make of `text`, as far as a client can tell before sending; None if all is well.

    The toy model reads prompts with a small lexicon (`runtime.toy.meaning`, pure Python, no
    torch), so its unknown words and suggestions are known here: the daemon would show the rest
    and ignore them (not blocking), or refuse a text with nothing it can show (blocking). Other
    models answer BAD_PROMPT after sending, which the HUD shows too."""
    if not text.strip():
        return Feedback("type a prompt", True)
    if model != "toy":
        return None
    from runtime.toy.meaning import MeaningError, reading

    try:
        warning = reading(text).warning()
    except MeaningError as exc:
        return Feedback(str(exc), True)
    return None if warning is None else Feedback(warning, False)


class TextBox:
    """A one-line prompt editor with live feedback. Enter calls `submit(text)` when `check` finds
    nothing; a non-blocking warning (words the model would ignore) needs a second Enter."""

    def __init__(self, check: Callable[[str], Feedback | None], submit: Callable[[str], None]) -> None:
        self.check, self.submit = check, submit
        self.active = False
        self.text = ""
        self.feedback: Feedback | None = None
        self._warned = ""  # the text whose warning the last Enter showed

    def open(self) -> None:
        self.active, self.text, self.feedback, self._warned = True, "", None, ""

    def handle(self, event: pygame.event.Event) -> bool:
        """True when the box used the event (every key while it is open)."""
        if not self.active:
            return False
        if event.type == pygame.TEXTINPUT:
            self.text += event.text
        elif event.type == pygame.KEYDOWN:
            if event.key == pygame.K_ESCAPE:
                self.active = False
            elif event.key == pygame.K_BACKSPACE:
                self.text = self.text[:-1]
            elif event.key in (pygame.K_RETURN, pygame.K_KP_ENTER):
                self.feedback = self.check(self.text)
                if self.feedback is None or (not self.feedback.blocking and self._warned == self.text):
                    self.submit(self.text)
                    self.active = False
                elif not self.feedback.blocking:
                    self._warned = self.text
                return True
        else:
            return False
        self.feedback = self.check(self.text) if self.text.strip() else None
        return True

    def draw(self, surface: pygame.Surface, rect: pygame.Rect, face: pygame.font.Font) -> None:
        pygame.draw.rect(surface, PANEL_BG, rect)
        pygame.draw.rect(surface, ACCENT, rect, 1)
        caret = "|" if int(time.monotonic() * 2) % 2 == 0 else " "
        surface.blit(face.render(f"prompt> {self.text}{caret}", True, TEXT), (rect.x + 6, rect.y + 4))
        if self.feedback is None:
            note: Line = ("Enter sends, Esc cancels" if self.text.strip() else "type a prompt", DIM)
        elif self.feedback.blocking:
            note = (self.feedback.message, BAD)
        else:
            again = " (Enter again sends it)" if self._warned == self.text else ""
            note = (self.feedback.message.split(";")[0] + again, ACCENT)
        blit_lines(surface, [note], rect.x + 6, rect.y + 4 + face.get_linesize(), font(18), rect.w - 12, rect.bottom)


def strip_cells(cells: int) -> list[tuple[int, int]]:
    """Left and right x of each of ``cells`` equal cells across the cache strip."""
    return [(STRIP.x + STRIP.w * i // cells, STRIP.x + STRIP.w * (i + 1) // cells) for i in range(cells)]


class StreamApp:
    """The parts every demo shares; subclasses add keys, HUD lines and drawing."""

    title = "LongLive"
    keys: list[tuple[str, str]] = []

    def __init__(self, link: Link, out_dir: str | Path = "longlive-demo") -> None:
        self.link = link
        self.out_dir = Path(out_dir)
        self.running = True
        self.show_help = False
        self.show_hud = True  # tests draw without it to find the HUD's pixels
        self.capture: Capture | None = None
        self.notice: tuple[str, float] | None = None  # a message and when it fades
        self.surface: pygame.Surface | None = None
        self.big, self.small = font(24), font(20)
        self._recorded = 0  # frames_shown already handed to the capture

    # ------------------------------------------------------------------ input

    def handle(self, event: pygame.event.Event) -> None:
        if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
            self.running = False
        elif event.type == pygame.KEYDOWN and event.key == pygame.K_F1:
            self.show_help = not self.show_help
        elif event.type == pygame.KEYDOWN and event.key == pygame.K_s:
            self.screenshot()
        elif event.type == pygame.KEYDOWN and event.key == pygame.K_r:
            self.toggle_recording()

    def say(self, message: str, seconds: float = 4.0) -> None:
        self.notice = (message, time.monotonic() + seconds)

    def screenshot(self) -> Path | None:
        if self.surface is None:
            return None
        path = self.out_dir / "screenshots" / f"{type(self).__name__.lower()}-{time.strftime('%Y%m%d-%H%M%S')}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pygame.image.save(self.surface, str(path))
        self.say(f"saved {path}")
        return path

    def toggle_recording(self) -> None:
        if self.capture is not None:
            path, frames = self.capture.close(), self.capture.frames
            self.capture = None
            self.say(f"recorded {frames} frames to {path}")
        elif self.link.picture is None or self.link.status is None:
            self.say("nothing to record yet: no frame has arrived")
        else:
            status = self.link.status
            self.capture = Capture(self.out_dir / "recordings", self.link.picture, self.link.prompt or status.prompt,
                                   model=status.model, fps=status.fps_target, seed=status.seed)
            self._recorded = self.link.frames_shown
            self.say(f"recording to {self.capture.video_path} (R stops)")

    # ------------------------------------------------------------------ each frame

    def update(self) -> None:
        self.link.poll()
        if self.capture is not None and self.link.frames_shown > self._recorded and self.link.picture is not None:
            self.capture.add(self.link.picture, self.link.prompt)
            self._recorded = self.link.frames_shown

    def hud_lines(self) -> list[Line]:
        """The panel's lines; subclasses extend this list."""
        link, status = self.link, self.link.status
        fps = f"{link.fps:.1f}" if link.fps else "-"
        target = f" / {status.fps_target:g}" if status else ""
        latency = f"{link.latency_ms:.0f} ms" if link.latency_ms is not None else "-"
        daemon = f"{status.latency_ms:.0f} ms" if status and status.latency_ms is not None else "-"
        frame = link.picture.frame.frame if link.picture else "-"
        lines: list[Line] = [
            (f"session {link.session}  frame {frame}", TEXT),
            (f"fps {fps}{target}", TEXT),
            (f"event->frame {latency} (daemon {daemon})", TEXT),
            (f"prompt: {link.prompt or '?'}", GOOD),
        ]
        if self.capture is not None:
            lines.append((f"REC {self.capture.frames} frames", BAD))
        return lines

    def banner(self) -> str | None:
        """The message shown over the stream while no daemon answers (None while one does)."""
        if self.link.connected:
            return None
        where = f"{self.link.control}, {self.link.stream}"
        if self.link.ever_connected:
            return f"The daemon stopped. Reconnecting to {where} ..."
        return f"No daemon at {where} yet. Waiting for it ..."

    def draw(self, surface: pygame.Surface) -> None:
        self.surface = surface
        surface.fill(BG)
        self.draw_stream(surface)
        pygame.draw.rect(surface, PANEL_BG, PANEL)
        if self.show_hud:
            blit_lines(surface, [(self.title, ACCENT)] + self.hud_lines(), PANEL.x + 8, PANEL.y + 8, self.small,
                       PANEL.w - 16, STRIP.y - 22)
            self.draw_cache(surface)
        self.draw_extra(surface)
        if self.notice is not None and time.monotonic() < self.notice[1]:
            blit_lines(surface, [(self.notice[0], ACCENT)], FOOTER.x + 4, FOOTER.bottom - 18, font(18), FOOTER.w)
        message = self.banner()
        if message:
            box = STREAM.inflate(-64, 0)
            box.h, box.centery = 96, STREAM.centery
            pygame.draw.rect(surface, (60, 18, 18), box)
            pygame.draw.rect(surface, BAD, box, 2)
            blit_lines(surface, [(message, TEXT)], box.x + 12, box.y + 14, self.big, box.w - 24)
        if self.show_help:
            self.draw_help(surface)

    def draw_stream(self, surface: pygame.Surface) -> None:
        picture = self.link.picture
        if picture is None:
            pygame.draw.rect(surface, EMPTY, STREAM)
            return
        image = pygame.image.frombuffer(picture.image.tobytes(), picture.image.shape[1::-1], "RGB")
        surface.blit(pygame.transform.smoothscale(image, STREAM.size), STREAM)

    def draw_cache(self, surface: pygame.Surface) -> None:
        """The session's KV cache as one cell per latent frame of the window: the sink's cells
        (amber) and the rest (green) light up as the window fills (status `cache_fill` of
        `cache_window_frames`, the first `cache_sink_frames` being the sink). Without the sizes
        (an older daemon) the strip shows the fill alone."""
        status = self.link.status
        fill = status.cache_fill if status else 0.0
        window = status.cache_window_frames if status else None
        sink = (status.cache_sink_frames or 0) if status else 0
        label = f"KV cache: sink {sink} + window {window - sink}" if window else "KV cache window"
        surface.blit(font(18).render(f"{label}, {fill:.0%} full", True, DIM), (STRIP.x, STRIP.y - 16))
        pygame.draw.rect(surface, EMPTY, STRIP)
        if not window:
            pygame.draw.rect(surface, GOOD, (STRIP.x, STRIP.y, round(STRIP.w * fill), STRIP.h))
        else:
            held = round(fill * window)
            for i, (x0, x1) in enumerate(strip_cells(window)):
                colour = (ACCENT if i < sink else GOOD) if i < held else EMPTY
                pygame.draw.rect(surface, colour, (x0 + 1, STRIP.y + 1, x1 - x0 - 2, STRIP.h - 2))
        pygame.draw.rect(surface, DIM, STRIP, 1)

    def draw_extra(self, surface: pygame.Surface) -> None:
        """A demo's own drawing (text box, choices, game log)."""

    def draw_help(self, surface: pygame.Surface) -> None:
        box = pygame.Rect(0, 0, 520, 40 + 22 * len(self.keys + BASE_KEYS))
        box.center = surface.get_rect().center
        pygame.draw.rect(surface, (20, 20, 30), box)
        pygame.draw.rect(surface, ACCENT, box, 2)
        y = box.y + 12
        for key, what in self.keys + BASE_KEYS:
            surface.blit(self.small.render(key, True, ACCENT), (box.x + 16, y))
            surface.blit(self.small.render(what, True, TEXT), (box.x + 130, y))
            y += 22

    def close(self) -> None:
        if self.capture is not None:
            self.toggle_recording()
        self.link.close()


def run(app: StreamApp, frames: int | None = None, fps: int = 60) -> int:
    """Handle input, update and draw until the app quits or `frames` frames are drawn; returns the frames drawn."""
    surface = pygame.display.get_surface()
    clock = pygame.time.Clock()
    drawn = 0
    while app.running and (frames is None or drawn < frames):
        for event in pygame.event.get():
            app.handle(event)
        app.update()
        app.draw(surface)
        pygame.display.flip()
        clock.tick(fps)
        drawn += 1
    return drawn
