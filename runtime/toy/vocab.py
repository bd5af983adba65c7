"""The toy model's fixed word-level vocabulary and tokenizer.

The list is frozen with the model weights: ids are positions in VOCAB, so never reorder it;
append only, and retrain when you do. It holds exactly the words the prompt generator uses
(a test checks both directions), because a word the model never saw in training has an
untrained embedding and would silently steer it somewhere arbitrary. Unknown words are
therefore an error that names them, never dropped.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache

PAD = "<pad>"
PAD_ID = 0
MAX_TOKENS = 32  # the longest generated prompt has 24 words; the rest is room for typed prompts

VOCAB: tuple[str, ...] = (PAD,) + tuple("""
a above across an and at ball beach beneath block blue bounces bouncing box bright broad calm
clear cloudless cobalt crimson cube dark day daylight daytime desert down downpour dry dunes
dusk evening everywhere falling field frozen full gentle gloomy glowing golden grass grassy
green grey ground heads hops hot in is it jumps keeps lake lawn left leftward lemon lies light
magenta meadow midday midnight motionless moves night ocean of on one open orange orb over
overcast pink place plain purple pyramid quiet rain raindrops rains red rest rests right
rightward rolls royal sand sandy scarlet sea sits sky slides snow snowfall snowfield snowflakes
snows snowy sphere square starlit starry stars stays still storm stormy sunny sunset swirling
the thunderclouds thundery to travels triangle tundra under up violet warm water weather wedge
while yellow
""".split())
VOCAB_SIZE = len(VOCAB)
WORD_TO_ID = {word: i for i, word in enumerate(VOCAB)}

# Words people are likely to type that the toy world expresses differently.
SYNONYMS = {
    "circle": "ball", "round": "ball", "rectangle": "square", "brick": "block",
    "cone": "pyramid", "rolling": "rolls", "sliding": "slides", "moving": "moves",
    "jumping": "jumps", "hopping": "hops", "resting": "rests", "stopped": "still",
    "stationary": "still", "idle": "still", "sitting": "sits", "lying": "lies",
    "rainy": "rain", "raining": "rains", "drizzle": "rain", "snowing": "snows",
    "sunrise": "sunset", "twilight": "dusk", "morning": "daytime", "noon": "midday",
    "afternoon": "daytime", "sun": "sunny", "moon": "night", "moonlit": "starlit",
    "cloudy": "overcast", "thunder": "thundery", "thunderstorm": "storm", "lightning": "storm",
    "ice": "frozen", "icy": "frozen", "winter": "snowy", "pond": "lake", "river": "water",
    "lagoon": "lake", "grassland": "meadow", "gold": "golden", "navy": "blue", "rose": "pink",
    "indigo": "violet",
    "leftwards": "leftward", "rightwards": "rightward", "towards": "to", "below": "beneath",
    "upon": "on", "through": "across",
}


class UnknownWordsError(ValueError):
    """A prompt used words outside VOCAB; `words` lists them, `suggestions` maps each to
    known words that could replace it (possibly none)."""

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.suggestions = {w: suggest(w) for w in words}
        parts = [f"{w!r} (try {', '.join(map(repr, s))})" if s else repr(w)
                 for w, s in self.suggestions.items()]
        super().__init__(f"unknown words in prompt: {', '.join(parts)}; "
                         f"the toy model knows {VOCAB_SIZE - 1} words (runtime.toy.vocab.VOCAB)")


def suggest(word: str) -> list[str]:
    """Known words to use instead of `word`: a listed synonym, else close spellings."""
    if word in SYNONYMS:
        return [SYNONYMS[word]]
    return difflib.get_close_matches(word, VOCAB[1:], n=3, cutoff=0.75)


def words(text: str) -> list[str]:
    """Lowercased words of `text`; punctuation and digits separate words and are dropped."""
    return re.findall(r"[a-z]+", text.lower())


@lru_cache(maxsize=4096)  # training repeats the same few thousand prompts constantly
def _ids(text: str, max_len: int) -> tuple[int, ...]:
    ws = words(text)
    unknown = list(dict.fromkeys(w for w in ws if w not in WORD_TO_ID))
    if unknown:
        raise UnknownWordsError(unknown)
    ids = [WORD_TO_ID[w] for w in ws[:max_len]]
    return tuple(ids + [PAD_ID] * (max_len - len(ids)))


def tokenize(text: str, max_len: int = MAX_TOKENS) -> list[int]:
    """Token ids of `text`, truncated or padded with PAD_ID to exactly `max_len`.

    Raises UnknownWordsError (a ValueError) listing every word not in VOCAB.
    """
    return list(_ids(text, max_len))
