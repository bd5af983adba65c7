"""The viewer/controller: watch the stream, switch prompts with 1-9 or a typed one, and try
the transitions live (Tab) to see what KV-recache does against none, cut and blend."""

from __future__ import annotations

import pygame

from demos.link import Link
from demos.ui import ACCENT, DIM, FOOTER, TEXT, Line, StreamApp, TextBox, blit_lines, check_prompt

# Every preset is a prompt the toy model reads (a test checks), one per key.
PRESETS = (
    "a red ball rolls to the left across a grassy meadow under a sunny daytime sky",
    "a red ball rolls to the right across a grassy meadow under an orange sunset",
    "a blue cube slides to the left across a snowy field under a starry night sky",
    "a yellow triangle bounces on a sandy beach under a sunny daytime sky",
    "a pink ball rests on the ground by the sea under a stormy sky",
    "a purple cube slides to the right across a snowy field while it snows",
    "a red ball bounces on a grassy meadow in the rain under a stormy sky",
    "a blue ball rolls to the right across a sandy beach under an orange sunset",
    "a yellow cube rests on a snowy field under a starry night sky",
)
TRANSITIONS = ("recache", "none", "cut", "blend")
BLEND_BLOCKS = 4


class ViewerApp(StreamApp):
    title = "LongLive viewer"
    keys = [("1 - 9", "preset prompts"), ("Enter", "type a prompt (checked before sending)"),
            ("Tab", "next transition: recache / none / cut / blend")]

    def __init__(self, link: Link, **kwargs: object) -> None:
        super().__init__(link, **kwargs)
        self.transition = TRANSITIONS[0]
        self.box = TextBox(lambda text: check_prompt(text, self.model), self.send)

    @property
    def model(self) -> str | None:
        return self.link.status.model if self.link.status else None

    def send(self, text: str) -> None:
        self.link.send_prompt(text, self.transition, BLEND_BLOCKS)

    def handle(self, event: pygame.event.Event) -> None:
        if self.box.handle(event):
            return
        if event.type == pygame.KEYDOWN:
            if pygame.K_1 <= event.key <= pygame.K_9:
                self.send(PRESETS[event.key - pygame.K_1])
                return
            if event.key in (pygame.K_RETURN, pygame.K_KP_ENTER):
                self.box.open()
                return
            if event.key == pygame.K_TAB:
                self.transition = TRANSITIONS[(TRANSITIONS.index(self.transition) + 1) % len(TRANSITIONS)]
                self.say(f"next prompts switch with {self.transition}")
                return
        super().handle(event)

    def hud_lines(self) -> list[Line]:
        blend = f" over {BLEND_BLOCKS} blocks" if self.transition == "blend" else ""
        lines = super().hud_lines() + [(f"transition: {self.transition}{blend} (Tab)", ACCENT)]
        for sent in list(self.link.sent)[-3:]:
            error = sent.error()
            lines.append((f"{sent.label}: {error.message if error else sent.outcome()}", DIM))
            if (warning := sent.warning()) is not None:
                lines.append((f"  {warning.split(';')[0]}", ACCENT))
        lines.append(("F1: keys", DIM))
        return lines

    def draw_extra(self, surface: pygame.Surface) -> None:
        if self.box.active:
            self.box.draw(surface, FOOTER, self.small)
        else:
            blit_lines(surface, [("1-9 presets   Enter: type a prompt   Tab: transition   F1: keys", TEXT)],
                       FOOTER.x + 4, FOOTER.y + 4, self.small, FOOTER.w)
