"""What a prompt says about the toy world: typed text -> attribute values -> one canonical sentence.

The learned text encoder saw only the prompt generator's template sentences in training, and
users do not type those: "sunny sky" or "on the beach" in another word order landed on the wrong
sky or ground. The toy world has six attributes with 3-5 values each, so the meaning of a prompt
is small and can be read with a lexicon: every word or phrase a user is likely to type for a value
(synonyms, inflections, colour-of-sky phrases), read longest phrase first, weighted (a specific
word beats a vague one: "dark thundery sky" is a storm), unmentioned attributes at DEFAULTS.
The learned encoder then only ever sees `canonical(...)`, a sentence of its own training phrases.

Readings beyond the lexicon, each added because fresh user sentences needed it: an inflected word
reads as its lexicon form ("drifted", "quietly", "colours"); a typing slip of a lexicon word reads as
that word ("pnik", "bouncng"; only the slips that rarely hit a real word, `_slips`); a negated weather
word means clear weather unless a weather is affirmed, and any other negated word says nothing ("no
clouds", "isn't moving"; how far a negation reaches is in `_scan`); a correction word makes the next
mention replace the earlier ones ("moving right, I mean left"); a colour that describes the sky, the
light or the ground is not the object's ("a red ball under a pink and orange sky", "golden light", "blue
water"); "snow" after "on"/"across"/... is the ground ("on fresh white snow"), and otherwise
"snow"/"snowy" belong to the weather or the ground, whichever the rest of the prompt leaves free ("snowy
weather over the dunes", "on snow while it rains"); and "still" before an -ing word means "yet" ("snow
still falling").

Words that name nothing in the lexicon are allowed when they are filler ("slowly", "the", "big").
Any other word is *unread*. Two readers share the scan: `reading` (serving) shows what the rest of
the prompt says and reports the unread words and the slips it corrected, because a stream that
refuses "a red ball rolling through a moonlit orchard" over "orchard" is worse than one that shows
the ball under the moon; `read` (the author's lint: story checks, plugins) refuses both, naming
each with suggestions. Both refuse a colour the world has no paint for ("a green ball") and a
prompt that shows nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.toy import vocab

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "sky": ("day", "sunset", "night", "storm"),
    "ground": ("grass", "snow", "sand", "water"),
    "colour": ("red", "blue", "yellow", "purple", "pink"),
    "shape": ("ball", "cube", "triangle"),
    "motion": ("left", "right", "bounce", "rest"),
    "weather": ("clear", "rain", "snow"),
}
DEFAULTS = {"sky": "day", "ground": "grass", "colour": "red", "shape": "ball", "motion": "rest",
            "weather": "clear"}

STRONG, WEAK = 2, 1
# attribute -> value -> phrases; a phrase ending in "~" is weak (counts only against no better word)
LEXICON: dict[str, dict[str, tuple[str, ...]]] = {
    "sky": {
        "day": ("day", "daytime", "daylight", "broad daylight", "sunny", "sun", "sunshine", "sunlit", "sunlight~",
                "midday", "noon", "morning", "afternoon", "cloudless", "blue sky", "clear sky~", "bright~"),
        "sunset": ("sunset", "sundown", "sunrise", "dawn", "dusk", "twilight", "evening", "golden hour",
                   "orange sky", "red sky", "pink sky", "setting sun", "rising sun", "sun goes down", "sun went down",
                   "sun sank", "sun sinks", "sun sinking", "sinking sun", "sun dips", "sun dipped", "sun set",
                   "sun going down", "sun sets", "sun is setting", "sun comes up", "orange~", "glowing~", "glow~",
                   "warm~"),
        "night": ("night", "nighttime", "nocturnal", "midnight", "starry", "stars", "star", "starlit", "starlight",
                  "moon", "moonlit", "moonlight", "black sky", "dark sky~", "dark~", "black~"),
        "storm": ("storm", "stormy", "tempest", "thunder", "thunderstorm", "thunderclouds", "thundercloud", "thundery",
                  "thunderheads", "thunderhead",
                  "lightning", "overcast", "cloudy", "clouds", "grey sky", "gray sky", "grey~", "gray~", "gloomy"),
    },
    "ground": {
        "grass": ("grass", "grassy", "meadow", "lawn", "field~", "green~", "park", "pasture", "prairie",
                  "grassland", "hills~"),
        "snow": ("snowy", "snowfield", "snow field", "tundra", "frozen", "ice", "icy", "glacier",
                 "on the snow", "on snow", "across the snow", "over the snow", "through the snow",
                 "snowy ground", "in the snow", "snow covered", "covered in snow",
                 "covered with snow", "snowbound", "ground of snow", "field of snow", "fields of snow",
                 "blanket of snow", "carpet of snow", "white~"),
        "sand": ("sand", "sandy", "beach", "desert", "dunes", "dune", "shore", "seaside"),
        "water": ("water", "sea", "ocean", "lake", "pond", "river", "waves", "lagoon", "pool", "bay", "loch", "creek",
                  "canal", "harbour", "harbor"),
    },
    "colour": {
        "red": ("red", "crimson", "scarlet", "cherry", "ruby"),
        "blue": ("blue", "cobalt", "cobalt blue", "royal blue", "navy", "azure", "sapphire"),
        "yellow": ("yellow", "lemon", "lemon yellow", "golden", "golden yellow", "gold", "amber"),
        "purple": ("purple", "violet", "lilac", "lavender", "indigo", "plum"),
        "pink": ("pink", "hot pink", "magenta", "fuchsia", "rose", "rosy", "bubblegum"),
    },
    "shape": {
        "ball": ("ball", "balls", "sphere", "orb", "circle", "marble", "round~"),
        "cube": ("cube", "box", "block", "square", "crate", "brick", "dice", "die", "rectangle"),
        "triangle": ("triangle", "pyramid", "wedge", "cone", "triangular"),
    },
    "motion": {
        "left": ("left", "to the left", "leftward", "leftwards", "westward", "west", "from right to left",
                 "right to left"),
        "right": ("right", "to the right", "rightward", "rightwards", "eastward", "east", "from left to right",
                  "left to right", "rolls~", "roll~", "rolling~", "rolled~", "moves~", "moving~", "move~",
                  "slides~", "sliding~", "slide~", "travels~", "travelling~", "traveling~", "heads~",
                  "goes~", "going~", "heading~", "drifts~", "drifting~", "glides~", "gliding~", "runs~", "running~"),
        "bounce": ("bounce", "bounces", "bouncing", "bouncy", "hop", "hops", "hopping", "jump", "jumps",
                   "jumping", "leaps", "leaping", "up and down", "bobs", "bobbing", "boing", "boings", "springs",
                   "springing"),
        "rest": ("rest", "rests", "resting", "at rest", "still~", "sits", "sitting", "sat", "stood~", "waits",
                 "waiting", "stays", "staying", "sit", "stay", "motionless", "stationary", "idle", "lies", "lying",
                 "stopped", "not moving",
                 "does not move", "doesn t move", "standing", "stands", "parked", "stays put", "unmoving"),
    },
    "weather": {
        "clear": ("clear weather", "dry weather", "dry", "no rain~", "no snow~", "fair weather", "clear sky",
                  "clear~"),
        "rain": ("rain", "rains", "raining", "rainy", "raindrops", "drizzle", "drizzling", "downpour",
                 "showers", "shower", "rainstorm", "pouring", "drizzly", "precipitation~", "bucketing~", "lashing~"),
        "snow": ("snow", "snows", "snowing", "snowfall", "snowflakes", "flakes", "blizzard", "snow falling",
                 "falling snow", "snowstorm", "flurries", "flurry", "snowy weather"),
    },
}

# Words that say nothing about the world; allowed and ignored.
FILLER = frozenset("""
a an the one some any of on in at across over under beneath below above through along to toward towards
into onto from by near with while and or as it its is are was be being been there here this that which who
very slowly quickly fast slow gently softly happily lazily steadily calmly small little big large tiny huge
shiny glossy single lone lonely just keeps keep kept continues continuing again around back forth scene sky
skies ground land floor weather air light gentle heavy full all everywhere falling swirling calm open quiet
plain place up down side screen object thing shape coloured colored color colour then now so can will
should has have without s t i we you see show shows showing make let please watch picture video image
frame where what how under beneath amid amidst during against beside behind front whole entire across
its their my our nice pretty cute vivid pale deep soft solid toy toys game player beautiful lovely tall
wide wet cold hot endlessly forever constantly repeatedly continuously gets getting starts starting
floating floats float coming comes fall falls fell overhead hard lightly out off perfectly time covered
want but landscape away cheerful more ominous surface could brooding fierce miserable when
cinematic shot k moody atmosphere mood tracking faint glistening shadows shadow dramatic reflections reflection
shimmering ripples each melancholic crisp fresh if long surreal yet playful dreamlike completely motion serene close
sparkling trailing searching for something stretching tranquil pastel catching hushed mysterious cool dreamy peaceful
smooth gleaming whimsical eerie contemplative strange pristine lush steady silently smoothly rhythmically playfully
unexpectedly every among edges depth patient contrasting pls plz u ur thx
camera static low high angle dolly handheld pan locked medium mid key glinting hypnotic minimalist rippling
backlight melancholy tone reflecting flickers tense diffused feel glassy dim hearted late after
drop drops trace hint sign bit generate render me okay ok terrain subject precip obj item action movement upon
""".split()) - {p for vs in LEXICON.values() for ps in vs.values() for p in ps}
# Object colours the world has no paint for: an error when they describe the object.
UNPAINTED = frozenset("green orange white black brown grey gray silver cyan teal turquoise beige".split())
# Words that turn the next phrase, if it is weather, into clear weather ("not a drop of rain") and
# otherwise make it say nothing ("no clouds", "isn't moving"); see `_scan` for how far they reach.
NEGATORS = frozenset("""no not without nor zero nothing none never neither cannot isn aren wasn weren doesn don didn
won""".split())
NEGATION_CHAIN = frozenset("or and any of".split())  # words a negation runs on through to more of the same attribute
NEGATION_STOPS = frozenset("but except only".split())  # "nothing but rain" rains
NEGATION_REACH = 4  # words that say nothing a negation may cross to its first phrase ("not a drop of rain")
# Words after which the next mention replaces what the prompt said before about that attribute:
# "a red ball, no wait, a yellow one", "moving right, I mean left". ("no" directly before a comma counts too.)
CORRECTIONS = frozenset("mean actually sorry scratch wait er erm um umm oops correction".split())
# Punctuation kept as words: a negation ends at it, and "no" right before it is a correction.
CLAUSE_MARKS = frozenset(",;:.!?|=()-\u2013\u2014")
# A colour word followed (through other colours and "and") by one of these describes the sky, the
# light or the ground, not the object: "pink and orange sky", "soft golden light", "blue water".
SCENE_NOUNS = frozenset("""sky skies sunset sunrise dusk dawn evening glow clouds horizon light lights sunlight
moonlight starlight hue hues tone tones tint rays reflection reflections water sea ocean lake waves ripples sand
snow grass ground meadow field beach desert dunes""".split())
COPULAS = frozenset("is are was were looks turns".split())  # "the sky is blue": the colour is the sky's
# "snow" after one of these (through words that are no phrase: "on fresh white snow") is the ground.
GROUND_PREPOSITIONS = frozenset("on onto upon across over along".split())
# "snow-laden ground", "terrain = SNOW": words that make a "snow" next to them the ground
GROUND_NOUNS = frozenset("ground field fields land floor plain plains hills terrain earth landscape".split())
GROUND_KEYS = frozenset("ground terrain floor surface".split())
KEY_MARKS = frozenset(":=")  # "precipitation: none", "ground = snow"
OFF_VALUES = frozenset("none no off false nothing zero".split())
# phrase -> the reading it takes when its first attribute is already named otherwise
SECOND_READING = {("snow",): ("ground", "snow"), ("snowy",): ("weather", "snow")}


class MeaningError(ValueError):
    """A prompt the toy world cannot show: unknown words, an unpainted colour, or no content."""


def _phrase_table() -> dict[tuple[str, ...], list[tuple[str, str, int]]]:
    table: dict[tuple[str, ...], list[tuple[str, str, int]]] = {}
    for attr, values in LEXICON.items():
        for value, phrases in values.items():
            for p in phrases:
                weight = WEAK if p.endswith("~") else STRONG
                table.setdefault(tuple(p.rstrip("~").split()), []).append((attr, value, weight))
    return table


_TABLE = _phrase_table()
_LONGEST = max(map(len, _TABLE))
_PHRASE_WORDS = frozenset(w for phrase in _TABLE for w in phrase)


def _words_of(attr: str) -> frozenset[str]:
    """Every word of the phrases that name a value of `attr`."""
    return frozenset(w for phrase, hits in _TABLE.items() if any(a == attr for a, _, _ in hits) for w in phrase)


_SHAPE_WORDS = _words_of("shape")
_COLOUR_WORDS = _words_of("colour") | UNPAINTED
_SKY_WORDS = _words_of("sky") - SCENE_NOUNS
_SAYS_NOTHING = FILLER | NEGATORS | CORRECTIONS | CLAUSE_MARKS  # words outside the phrases that are not unknown
_KNOWN = _PHRASE_WORDS | _SAYS_NOTHING


def _known_form(word: str) -> str:
    """`word`, or the lexicon form it inflects ("drifted" -> "drifts", "colours" -> "colour")."""
    if word in _KNOWN:
        return word
    stems = [word[:-len(end)] for end in ("ly", "s", "es", "ed", "d", "ing") if word.endswith(end)]
    for form in [f for stem in [*stems, word] if len(stem) >= 3 for f in (stem, stem + "e", stem + "s", stem + "ing")]:
        if form in _KNOWN:
            return form
    return word


def _slips(word: str) -> set[str]:
    """What `word` may have been meant as: two neighbouring letters swapped ("pnik", "nigth"), or, in
    a word of six letters or more, one letter dropped ("bouncng"). Measured on the 17 600 most common
    English words of four letters or more outside the lexicon (wordfreq's list, 2026-12-03): these
    two slips read 12 of them as a lexicon word ("though" as "through", "filed" as "field", "polo" as
    "pool"); dropped letters in shorter words too read 42, extra letters 193, wrong letters 599
    ("each" as "beach", "road" as "broad", "training" as "raining"), so those slips stay unread."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    out = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    if len(word) >= 6:
        out |= {a + c + b for a, b in splits for c in "abcdefghijklmnopqrstuvwxyz"}
    return out - {word}


def _correction(word: str) -> str | None:
    """The one lexicon word that `word`, of four letters or more, is a slip of (`_slips`)."""
    if len(word) < 4:
        return None
    fixes = _slips(word) & _PHRASE_WORDS
    return fixes.pop() if len(fixes) == 1 else None


def _scene_colours(ws: list[str]) -> set[int]:
    """Indices of colour words that describe the scene, not the object: "pink-orange sunset", "golden
    light", "bright blue daytime sky", "blue is the sky" (through colours, "and" and sky words, or a
    copula, to a scene noun), "the blue of day", "the sky is (bright) blue", "a sky blue as an egg" (right
    after a scene noun, unless a shape follows: "a sky blue cube" is blue)."""
    out = set()
    for i, w in enumerate(ws):
        if w not in _COLOUR_WORDS:
            continue
        j = i + 1
        if ws[j:j + 1] and ws[j] in COPULAS:  # "blue is the daytime sky"
            j += 2 if ws[j + 1:j + 2] == ["the"] else 1
        while j < len(ws) and (ws[j] in _COLOUR_WORDS or ws[j] in _SKY_WORDS or ws[j] == "and"):
            j += 1
        if j < len(ws) and ws[j] in SCENE_NOUNS:
            out.add(i)
        elif ws[i + 1:i + 2] == ["of"] and any(x in _SKY_WORDS or x in SCENE_NOUNS for x in ws[i + 2:i + 4]):
            out.add(i)  # "the blue of day"
        elif i >= 1 and ws[i - 1] in SCENE_NOUNS and not any(x in _SHAPE_WORDS for x in ws[i + 1:i + 3]):
            out.add(i)  # "a sky blue as a robin's egg"
        elif any(k >= 1 and ws[k] in COPULAS and ws[k - 1] in SCENE_NOUNS for k in (i - 1, i - 2)):
            out.add(i)  # "the sky is blue", "the sea is deep blue"
    return out


def _other_things_colours(ws: list[str]) -> set[int]:
    """Indices of colour words right before an unread word that no shape follows: "a red umbrella
    flaps", "a yellow lifeboat". They most likely colour something the world cannot show, so they
    count only weakly for the object ("a red rubber ball" is still red)."""
    return {i for i, w in enumerate(ws[:-1]) if w in _COLOUR_WORDS and ws[i + 1] not in _KNOWN
            and not any(x in _SHAPE_WORDS for x in ws[i + 2:i + 4])}


def _words_and_marks(text: str) -> list[str]:
    """Lowercased words (apostrophes and digits separate them) and the clause marks between them: a dash
    only between spaces ("--" is one mark), a full stop only where no letter follows ("Terrain.SNOW" is
    one name)."""
    return re.findall(r"[a-z]+|[,;:!?|=()\u2013\u2014]|\.(?![a-z])|(?<=\s)-(?=-*\s)", text.lower())


Votes = dict[str, dict[str, list[int]]]  # attribute -> value -> [weight, index of the last mention]


def _vote(votes: Votes, attr: str, value: str, weight: int, at: int) -> None:
    v = votes[attr].setdefault(value, [0, at])
    v[0], v[1] = v[0] + weight, at


def _named_otherwise(votes: Votes, attr: str, value: str) -> bool:
    return any(w >= STRONG for v, (w, _) in votes[attr].items() if v != value)


def _on_the_ground(ws: list[str], at: int) -> bool:
    """Whether `ws[at]` ("snow") is the ground: a ground preposition before it within three words that are
    colours or no phrase ("on fresh white snow"), a ground key before it ("terrain = snow"), or a ground noun
    right after it, or after one more word ("snow-laden ground")."""
    if any(ws[j] in GROUND_KEYS and ws[j + 1] in KEY_MARKS for j in range(max(0, at - 3), at - 1)):
        return True
    if any(w in GROUND_NOUNS for w in ws[at + 1:at + 3]):
        return True
    for w in reversed(ws[max(0, at - 3):at]):
        if w in GROUND_PREPOSITIONS:
            return True
        if (w in _PHRASE_WORDS and w not in _COLOUR_WORDS) or w in NEGATORS or w in CLAUSE_MARKS:
            return False
    return False


def _scan(ws: list[str], scene_colours: set[int]) -> tuple[Votes, list[str]]:
    """Votes of the phrases in `ws` (longest first) and the words that are neither phrase nor filler;
    `scene_colours` are the colour words that describe the sky (`_scene_colours`).

    A negation covers its first phrase within NEGATION_REACH words that say nothing ("not a drop of
    rain", "isn't moving"), then runs on only to phrases of the same attribute, adjacent or joined by
    NEGATION_CHAIN ("no rain or snow, purple ball" keeps the purple; "not moving left or right"), and
    never past a clause mark or NEGATION_STOPS ("nothing but rain"). A phrase with a negator in it says
    what it says ("no rain", "not moving"), unless the same attribute follows it ("not moving left").
    """
    votes: Votes = {a: {} for a in ATTRIBUTES}
    unknown: list[str] = []
    two_way: list[tuple[tuple[str, ...], int, bool]] = []  # phrases with a SECOND_READING, decided last
    negated: set[str] | None = None  # None: no negation; else the attributes it has covered so far
    reach = 0  # words that say nothing the negation may still cross
    correcting = False  # after a correction word: the next vote replaces its attribute's earlier votes
    weak_colours = _other_things_colours(ws)
    i = 0
    while i < len(ws):
        w = ws[i]
        if w in CORRECTIONS or (w == "no" and i + 1 < len(ws) and ws[i + 1] in CLAUSE_MARKS):
            correcting, negated = True, None
            i += 1
            continue
        if w in NEGATORS:
            negated, reach = set(), NEGATION_REACH
        for n in range(min(_LONGEST, len(ws) - i), 0, -1):
            phrase = tuple(ws[i:i + n])
            hits = _TABLE.get(phrase)
            if not hits:
                continue
            attrs = {attr for attr, _, _ in hits}
            after = ws[i + n:i + n + 2]  # the two words after the phrase
            says_itself = any(x in NEGATORS for x in phrase)  # "no rain", "not moving"
            if negated and not says_itself and not attrs <= negated:
                negated = None  # a phrase of another attribute ends the negation
            covered = negated is not None and not says_itself
            if "weather" in attrs and len(after) == 2 and after[0] in KEY_MARKS and after[1] in OFF_VALUES:
                covered = True  # "precipitation: none"
            if phrase == ("snow",) and not covered and _on_the_ground(ws, i):
                hits = [("ground", "snow", STRONG)]
            elif phrase in SECOND_READING:
                two_way.append((phrase, i, covered))
                hits = []
            if covered:  # "not a drop of rain": clear, weakly (an affirmed weather beats it); others say nothing
                hits = [("weather", "clear", WEAK)] if "weather" in attrs and hits else []
            elif says_itself and after and attrs & {a for a, _, _ in _TABLE.get(tuple(after[:1]), ())}:
                hits = []  # "doesn't move left or right": the negation is about the direction
            hits = [h for h in hits if not (h[0] == "colour" and i in scene_colours)]
            if i in weak_colours:
                hits = [(a, v, WEAK if a == "colour" else wt) for a, v, wt in hits]
            if after[:1] == ["down"] and all(h[:1] + h[2:] == ("motion", WEAK) for h in hits):
                hits = []  # "snowflakes drifting down": a generic motion verb before "down" is the weather falling
            if correcting and hits:
                for attr, _, _ in hits:
                    votes[attr].clear()
                correcting = False
            for attr, value, weight in hits:
                _vote(votes, attr, value, weight, i)
            if says_itself or negated is not None:
                negated, reach = (negated or set()) | attrs, 0
            i += n
            break
        else:
            if w in CLAUSE_MARKS or w in NEGATION_STOPS:
                negated = None
            elif w not in NEGATORS and negated is not None and w not in NEGATION_CHAIN:
                if w in _SAYS_NOTHING and reach > 0:
                    reach -= 1
                else:
                    negated = None
            if w not in _SAYS_NOTHING:
                unknown.append(w)
            i += 1
    for phrase, at, covered in two_way:
        (attr, value, weight), = _TABLE[phrase]
        if covered:
            attr, value, weight = "weather", "clear", WEAK
        elif _named_otherwise(votes, attr, value) and not _named_otherwise(votes, *SECOND_READING[phrase]):
            attr, value = SECOND_READING[phrase]
        _vote(votes, attr, value, weight, at)
    return votes, unknown


def unread_words_message(unread: tuple[str, ...], corrected: tuple[tuple[str, str], ...] = ()) -> str:
    """The slips (each with what it was read as) and the unread words (each with suggestions), then
    what the toy world can show."""
    parts = [f"{w!r} (read as {fix!r})" for w, fix in corrected]
    parts += [f"{w!r} (try {', '.join(map(repr, s))})" if (s := vocab.suggest(w)) else repr(w) for w in unread]
    return (f"unknown words in prompt: {', '.join(parts)}; the toy world shows a sky "
            f"({'/'.join(ATTRIBUTES['sky'])}), a ground ({'/'.join(ATTRIBUTES['ground'])}), one "
            f"{'/'.join(ATTRIBUTES['colour'])} {'/'.join(ATTRIBUTES['shape'])} that moves "
            f"{'/'.join(ATTRIBUTES['motion'])}, and weather ({'/'.join(ATTRIBUTES['weather'])})")


@dataclass(frozen=True)
class Reading:
    mentioned: dict[str, str]  # attribute -> value, for the attributes the prompt mentions
    unread: tuple[str, ...]  # words outside the lexicon and FILLER, each once, in order
    corrected: tuple[tuple[str, str], ...] = ()  # (typed, read as) for typing slips, each once, in order

    def warning(self) -> str | None:
        """What serving did with the words the lexicon does not hold, for the author; None if nothing."""
        return unread_words_message(self.unread, self.corrected) if self.unread or self.corrected else None


def reading(text: str) -> Reading:
    """What `text` says, with the words that say nothing the toy can show set aside in `.unread`,
    and typing slips of known words read as those words (`.corrected`).

    Raises MeaningError for an object colour the world cannot paint and for text that mentions
    no attribute at all (naming its unread words, if any).
    """
    ws, corrected = [], {}
    for w in _words_and_marks(text):
        form = _known_form(w)
        if form not in _KNOWN and (fix := _correction(w)) is not None:
            form = corrected[w] = fix
        ws.append(form)
    ws = [w for w, nxt in zip(ws, ws[1:] + [""]) if not (w == "still" and nxt.endswith("ing"))]  # "still falling": yet
    scene_colours = _scene_colours(ws)
    for i, w in enumerate(ws):
        if w in UNPAINTED and i not in scene_colours and any(n in _SHAPE_WORDS for n in ws[i + 1:i + 3]):
            raise MeaningError(f"the toy world has no {w} objects; object colours: "
                               f"{', '.join(ATTRIBUTES['colour'])}")
    votes, unknown = _scan(ws, scene_colours)
    unread = tuple(dict.fromkeys(unknown))
    # most weight wins; on a tie, the later mention (a user correcting themself)
    out = {attr: max(vs.items(), key=lambda kv: (kv[1][0], kv[1][1]))[0] for attr, vs in votes.items() if vs}
    if not out:
        raise MeaningError(unread_words_message(unread) if unread else
                           f"the prompt {text!r} says nothing the toy world can show")
    return Reading(out, unread, tuple(corrected.items()))


def read(text: str) -> dict[str, str]:
    """The attributes `text` mentions (attribute -> value), strictly: MeaningError for any unread or
    misspelt word (named, with suggestions), and for everything `reading` refuses."""
    r = reading(text)
    if (warning := r.warning()) is not None:
        raise MeaningError(warning)
    return r.mentioned


def complete(mentioned: dict[str, str]) -> dict[str, str]:
    """Every attribute: the mentioned values, DEFAULTS for the rest."""
    return DEFAULTS | mentioned


# One training phrasing per value (tests check each is one the prompt generator produces).
_CANON = {
    "sky": {"day": "a sunny daytime sky", "sunset": "an orange sunset", "night": "a starry night sky",
            "storm": "a stormy sky"},
    "ground": {"grass": "a grassy meadow", "snow": "a snowy field", "sand": "a sandy beach", "water": "the sea"},
    "motion": {"left": "{move} to the left", "right": "{move} to the right", "bounce": "bounces",
               "rest": "rests on the ground"},
    "weather": {"clear": "", "rain": ", rain falling", "snow": ", snow falling"},
}
CANONICAL_TEMPLATE = "{obj} {motion} across {ground} under {sky}{weather}"


def canonical(attrs: dict[str, str]) -> str:
    """The sentence the learned encoder reads for complete attributes (one of its training sentences)."""
    move = "rolls" if attrs["shape"] == "ball" else "slides"
    text = CANONICAL_TEMPLATE.format(
        obj=f"a {attrs['colour']} {attrs['shape']}", motion=_CANON["motion"][attrs["motion"]].format(move=move),
        ground=_CANON["ground"][attrs["ground"]], sky=_CANON["sky"][attrs["sky"]],
        weather=_CANON["weather"][attrs["weather"]])
    return text[0].upper() + text[1:]
