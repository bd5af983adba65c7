"""Natural-language prompts for toy-world attributes.

Each attribute value has several phrasings and sentences come from several templates, so
the model learns to read meaning rather than a fixed word order. Content words never
overlap across attributes (e.g. a sky phrase never says "blue", ground phrases never say
"snow", which belongs to the weather): a tiny text encoder must not have to untangle them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from toylab.world import Attributes

SKY_PHRASES = {
    "day": ("a sunny daytime sky", "a bright midday sky", "a cloudless day sky", "broad daylight"),
    "sunset": ("an orange sunset", "a glowing sunset sky", "the warm light of dusk",
               "an evening sky at sunset"),
    "night": ("a starry night sky", "the dark night sky", "a midnight sky full of stars",
              "a quiet starlit night"),
    "storm": ("a stormy sky", "grey thunderclouds", "a dark thundery sky",
              "a gloomy overcast storm"),
}
GROUND_PHRASES = {
    "grass": ("a grassy meadow", "a green field", "the lawn", "a meadow of grass"),
    "snow": ("a snowy field", "a snowfield", "a frozen tundra", "a snowy plain"),
    "sand": ("a sandy beach", "the desert sand", "the dunes", "a sandy desert"),
    "water": ("the sea", "the ocean", "a calm lake", "open water"),
}
COLOUR_WORDS = {
    "red": ("red", "crimson", "scarlet"),
    "blue": ("blue", "cobalt blue", "royal blue"),
    "yellow": ("yellow", "lemon yellow", "golden yellow"),
    "purple": ("purple", "violet"),
    "pink": ("pink", "magenta", "hot pink"),
}
SHAPE_WORDS = {
    "ball": ("ball", "sphere", "orb"),
    "cube": ("cube", "box", "block", "square"),
    "triangle": ("triangle", "pyramid", "wedge"),
}
# "{move}" becomes "rolls" for a ball and "slides" for anything with corners.
MOTION_PHRASES = {
    "left": ("{move} to the left", "moves left", "heads left", "{move} leftward",
             "travels to the left"),
    "right": ("{move} to the right", "moves right", "heads right", "{move} rightward",
              "travels to the right"),
    "bounce": ("bounces", "bounces up and down", "hops in place", "keeps bouncing",
               "jumps up and down"),
    "rest": ("rests on the ground", "sits still", "stays still", "lies motionless",
             "is at rest"),
}
# Appended to a clause, so each starts with its own separator ("" = nothing said).
WEATHER_CLAUSES = {
    "clear": ("", "", " in clear weather", " in dry weather"),
    "rain": (", rain falling", " in the rain", " while it rains", ", raindrops everywhere",
             " in a downpour"),
    "snow": (", snow falling", " while it snows", ", snowflakes swirling",
             " in a gentle snowfall"),
}
DETERMINERS = ("a", "the", "one")

TEMPLATES = (
    "{obj} {motion} across {ground} under {sky}{weather}",
    "{sky} over {ground}; {obj} {motion}{weather}",
    "{ground} beneath {sky}{weather}. {obj} {motion}",
    "{obj} {motion} on {ground}, {sky} above{weather}",
    "under {sky}, {obj} {motion} over {ground}{weather}",
)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def make_prompt(attrs: Attributes, rng: np.random.Generator) -> str:
    """One sentence describing `attrs`, with template and wording drawn from `rng`."""
    obj = f"{_pick(rng, DETERMINERS)} {_pick(rng, COLOUR_WORDS[attrs.colour])} " \
          f"{_pick(rng, SHAPE_WORDS[attrs.shape])}"
    move = "rolls" if attrs.shape == "ball" else "slides"
    text = _pick(rng, TEMPLATES).format(
        obj=obj,
        motion=_pick(rng, MOTION_PHRASES[attrs.motion]).format(move=move),
        ground=_pick(rng, GROUND_PHRASES[attrs.ground]),
        sky=_pick(rng, SKY_PHRASES[attrs.sky]),
        weather=_pick(rng, WEATHER_CLAUSES[attrs.weather]),
    )
    return ". ".join(part[0].upper() + part[1:] for part in text.split(". "))


def phrase_tables() -> dict[str, dict[str, tuple[str, ...]]]:
    """Every attribute's phrasings by value, with "{move}" expanded; for vocabulary checks."""
    motions = {m: tuple(p.format(move=v) for p in ps for v in ("rolls", "slides"))
               for m, ps in MOTION_PHRASES.items()}
    return {"sky": SKY_PHRASES, "ground": GROUND_PHRASES, "colour": COLOUR_WORDS,
            "shape": SHAPE_WORDS, "motion": motions, "weather": WEATHER_CLAUSES}
