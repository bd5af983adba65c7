"""The arcade: arrow keys and space steer the world through game events, the way an engine
integration does. The game sends what happened (`move`, `stop`, `jump`, `weather`, `time`);
the daemon's rules plugin (plugins/examples/arcade_rules.py) turns each into a prompt, and
the ack names the frame that first shows it, which the game puts on screen beside the event.

The game itself is small: a list of scenes to reach; a scene counts once the frame that
shows it (the event's ack frame) is on screen.
"""

from __future__ import annotations

from dataclasses import dataclass

import pygame

from demos.link import Link, Sent
from demos.ui import ACCENT, BAD, DIM, FOOTER, GOOD, STREAM, TEXT, Line, StreamApp, blit_lines

WEATHERS = ("clear", "rain", "snow")
TIMES = ("day", "sunset", "night", "storm")
GOALS = (  # (what to show the player, the world it needs)
    ("roll left at sunset", {"motion": "left", "sky": "sunset"}),
    ("jump in the rain", {"motion": "jump", "weather": "rain"}),
    ("rest under the night sky while it snows", {"motion": "rest", "sky": "night", "weather": "snow"}),
)
THUMB = 72


@dataclass
class Move:
    """One game event on its way, and the world it leads to once applied."""

    sent: Sent
    world: dict[str, str]


class ArcadeApp(StreamApp):
    title = "LongLive arcade"
    keys = [("Left / Right", "roll left / right"), ("Down", "stop"), ("Space", "jump"),
            ("W", "weather: clear / rain / snow"), ("T", "time of day: day / sunset / night / storm")]

    def __init__(self, link: Link, **kwargs: object) -> None:
        super().__init__(link, **kwargs)
        self.world = {"motion": "rest", "sky": "day", "weather": "clear"}  # as the game last asked for it
        self.shown = dict(self.world)  # as the frames on screen show it
        self.moves: list[Move] = []
        self.reached: set[int] = set()
        self.unmapped = False  # the daemon acked an event without a frame: no rules plugin

    def handle(self, event: pygame.event.Event) -> None:
        if event.type != pygame.KEYDOWN:
            return super().handle(event)
        key, world = event.key, self.world
        if key in (pygame.K_LEFT, pygame.K_RIGHT):
            direction = "left" if key == pygame.K_LEFT else "right"
            self.send("move", {"direction": direction}, f"move {direction}", motion=direction)
        elif key == pygame.K_DOWN:
            self.send("stop", {}, "stop", motion="rest")
        elif key == pygame.K_SPACE:
            self.send("jump", {}, "jump", motion="jump")
        elif key == pygame.K_w:
            kind = WEATHERS[(WEATHERS.index(world["weather"]) + 1) % len(WEATHERS)]
            self.send("weather", {"kind": kind}, f"weather {kind}", weather=kind)
        elif key == pygame.K_t:
            of_day = TIMES[(TIMES.index(world["sky"]) + 1) % len(TIMES)]
            self.send("time", {"of_day": of_day}, f"time {of_day}", sky=of_day)
        else:
            super().handle(event)

    def send(self, name: str, payload: dict, label: str, **change: str) -> None:
        self.world = self.world | change
        self.moves.append(Move(self.link.send_event(name, payload, label), dict(self.world)))
        del self.moves[:-6]

    def update(self) -> None:
        super().update()
        for move in self.moves:
            if move.sent.ticket.done() and move.sent.outcome() == "no visible effect":
                self.unmapped = True
            if move.sent.picture is not None and move.sent.shown_at is not None:
                self.shown = move.world
        for i, (_, needs) in enumerate(GOALS):
            if all(self.shown.get(k) == v for k, v in needs.items()):
                self.reached.add(i)

    def hud_lines(self) -> list[Line]:
        lines = super().hud_lines()
        lines.append((f"scenes reached {len(self.reached)}/{len(GOALS)}", ACCENT))
        for i, (goal, _) in enumerate(GOALS):
            lines.append((("[x] " if i in self.reached else "[ ] ") + goal, GOOD if i in self.reached else TEXT))
        if self.unmapped:
            lines.append(("The daemon acks events without a frame: it has no rules plugin. Start it with "
                          "--plugin plugins/examples/arcade_rules.py", BAD))
        return lines

    def draw_extra(self, surface: pygame.Surface) -> None:
        """Each recent event with its ack frame: the picture the daemon says first shows it."""
        x = FOOTER.x
        small = pygame.font.Font(None, 16)
        for move in self.moves[-6:]:
            box = pygame.Rect(x, STREAM.bottom - THUMB - 20, THUMB, THUMB)
            picture = move.sent.picture
            if picture is not None:
                image = pygame.image.frombuffer(picture.image.tobytes(), picture.image.shape[1::-1], "RGB")
                surface.blit(pygame.transform.smoothscale(image, box.size), box)
            else:
                pygame.draw.rect(surface, (0, 0, 0), box)
            pygame.draw.rect(surface, ACCENT, box, 1)
            surface.blit(small.render(move.sent.label, True, TEXT), (box.x + 2, box.bottom + 2))
            surface.blit(small.render(move.sent.outcome(), True, DIM), (box.x + 2, box.bottom + 12))
            x += THUMB + 12
        blit_lines(surface, [("Arrows: roll / stop   Space: jump   W: weather   T: time of day   F1: keys", TEXT)],
                   FOOTER.x + 4, FOOTER.y + 4, self.small, FOOTER.w)
