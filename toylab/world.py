"""The toy world: a procedural side-view scene the embedded `toy` model is trained on.

A 64x64 RGB frame shows a sky (rows 0..43) over a ground band (rows 44..63) and one object,
the "player", that rolls, bounces or rests on a floor line inside the ground band. Weather is
sparse particles drawn behind the object, a background layer as in 2D games, so the player
sprite stays whole (a white flake on it would read as a hole). The world is horizontally
periodic (a torus in x): a rolling object leaves on one side and re-enters on the other, so
"rolls to the left" stays true for an endless stream and never bounces off a wall.

Everything is deterministic: physics is exact (parabolic arcs, no integration drift) and
particles are a function of the weather's kind and its age (frames since it began: at the stream's
spawn, or at the switch that brought it). Issue 13: particles used to come from a random per-stream
seed, so a stream's first rainy block was unpredictable and a few-step x0 generator drew their mean
(no rain at all, 0 % of rain frames); now the first block of any weather is always the same field and
every later block is its exact continuation. The attributes and the look are unchanged. Rendering is
vectorised over frames because the trainer calls `sample_clip` constantly on two cores.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np

from runtime.toy.meaning import ATTRIBUTES
from toylab.prompts import make_prompt

SIZE = 64  # frame height and width, pixels
HORIZON = 44  # first ground row; rows above it are sky
FLOOR = 55.5  # y of the object's bottom edge when it stands on the ground
GRAVITY = 0.5  # px / frame^2
BOUNCE_HEIGHT = 20.0  # apex height of a bounce above the floor, px
BOUNCE_SPEED = float(np.sqrt(2 * GRAVITY * BOUNCE_HEIGHT))  # launch speed that reaches it
ROLL_SPEED = 1.5  # px / frame for "left" / "right"
SPAWN_X = SIZE / 2  # where every stream's object appears (spawn_state)

# the attribute values are the served model's (runtime.toy.meaning reads prompts into them)
SKIES, GROUNDS, COLOURS, SHAPES, MOTIONS, WEATHERS = ATTRIBUTES.values()

# Gradient stops, top to bottom (RGB 0..255). Object colours below stay more than 60 away
# from every sky and ground row, at any shade, so the probe can separate them (tested).
SKY_STOPS = {
    "day": ((84, 156, 230), (130, 192, 242), (190, 228, 250)),
    "sunset": ((150, 85, 100), (235, 135, 80), (252, 180, 130)),
    "night": ((8, 12, 32), (18, 26, 60), (40, 52, 96)),
    "storm": ((58, 62, 76), (88, 93, 106), (128, 132, 140)),
}
GROUND_STOPS = {
    "grass": ((120, 190, 85), (60, 135, 55)),
    "snow": ((240, 244, 252), (200, 212, 232)),
    "sand": ((238, 214, 158), (205, 172, 112)),
    "water": ((70, 160, 168), (20, 95, 112)),
}
COLOUR_RGB = {
    "red": (215, 38, 48),
    "blue": (45, 70, 220),
    "yellow": (245, 225, 50),
    "purple": (145, 55, 200),
    "pink": (245, 110, 190),
}
BALL_RADIUS = 8.0
CUBE_HALF = 7.5
TRIANGLE_HALF_BASE, TRIANGLE_HEIGHT = 10.0, 18.0
# Distance from an object's area centroid to its bottom edge; (x, y) is the centroid.
BOTTOM_OFFSET = {"ball": BALL_RADIUS, "cube": CUBE_HALF, "triangle": TRIANGLE_HEIGHT / 3}

N_STARS, N_RAIN, N_SNOW = 28, 36, 44
WEATHER_AGE_MAX = 10_000  # a random start's weather has gone on for up to this many frames
_WINDOW = 28  # px square drawn around an object's centroid; every shape fits with margin


@dataclass(frozen=True)
class Attributes:
    """What a prompt says about a scene; one value from each of the tuples above."""

    sky: str
    ground: str
    colour: str
    shape: str
    motion: str
    weather: str

    def __post_init__(self) -> None:
        for name, legal in _LEGAL.items():
            if getattr(self, name) not in legal:
                raise ValueError(f"{name}={getattr(self, name)!r}; legal: {legal}")


_LEGAL = {"sky": SKIES, "ground": GROUNDS, "colour": COLOURS, "shape": SHAPES,
          "motion": MOTIONS, "weather": WEATHERS}


@dataclass(frozen=True)
class SceneState:
    """Full state of one frame: attributes, object centroid (px, y down), velocity, time.

    `weather_start` is the frame time at which the current weather began; the particles are laid
    out by the weather's age ``t - weather_start`` (see `_draw_weather`).
    """

    attrs: Attributes
    x: float
    y: float
    vx: float
    vy: float
    t: int
    weather_start: int

    @property
    def height(self) -> float:
        """Height of the object's bottom edge above the floor (>= 0)."""
        return FLOOR - BOTTOM_OFFSET[self.attrs.shape] - self.y


@dataclass
class Clip:
    """A training clip; every list/array is indexed by frame."""

    frames: np.ndarray  # [T, 64, 64, 3] uint8
    prompts: list[str]  # [T], the prompt in effect at each frame
    attrs: list[Attributes]  # [T]
    positions: np.ndarray  # [T, 2] float32 object centroid (x, y)
    switch_frame: int | None  # first frame of the second prompt, None without a switch


# ----------------------------------------------------------------------------- held-out split

def is_held_out(attrs: Attributes) -> bool:
    """True for the (sky, ground, colour, shape) tuples reserved for evaluation (24 of 240).

    The rule is a weighted sum of indices modulo 10. Each weight keeps its attribute's values
    distinct modulo 10, so fixing any three attributes holds out at most one value of the
    fourth: every combination of three still occurs in training and only the four-way
    composition is new. The weights also spread the 24 tuples evenly over every value.
    """
    total = (3 * SKIES.index(attrs.sky) + GROUNDS.index(attrs.ground)
             + 2 * COLOURS.index(attrs.colour) + 7 * SHAPES.index(attrs.shape))
    return total % 10 == 0


Split = Literal["train", "held_out"]


def _in_split(attrs: Attributes, split: Split) -> bool:
    return is_held_out(attrs) == (split == "held_out")


def sample_attributes(rng: np.random.Generator, split: Split = "train") -> Attributes:
    """Uniform attributes from one side of the held-out split."""
    while True:
        attrs = Attributes(*(str(rng.choice(_LEGAL[name])) for name in _LEGAL))
        if _in_split(attrs, split):
            return attrs


# Probability that a prompt switch changes each attribute: mostly the scene, sometimes the
# object's colour or motion, rarely its shape (the object keeps its identity in most clips).
SWITCH_CHANGE_PROB = {"sky": 0.6, "ground": 0.6, "weather": 0.5, "colour": 0.25,
                      "motion": 0.35, "shape": 0.1}


def switched_attributes(rng: np.random.Generator, attrs: Attributes,
                        split: Split = "train", change_prob: dict[str, float] | None = None) -> Attributes:
    """Attributes after a prompt switch: at least one change, same split as requested.
    `change_prob` overrides some of SWITCH_CHANGE_PROB."""
    probs = {**SWITCH_CHANGE_PROB, **(change_prob or {})}
    while True:
        changes = {}
        for name, prob in probs.items():
            if rng.random() < prob:
                others = [v for v in _LEGAL[name] if v != getattr(attrs, name)]
                changes[name] = str(rng.choice(others))
        new = dataclasses.replace(attrs, **changes)
        if changes and _in_split(new, split):
            return new


# ----------------------------------------------------------------------------- physics

def initial_state(rng: np.random.Generator, attrs: Attributes) -> SceneState:
    """A random start consistent with the motion (a bounce starts at a random phase) and a weather
    that has been going on for a random while (a piece of a longer stream)."""
    weather_start = -int(rng.integers(WEATHER_AGE_MAX))
    y_rest = FLOOR - BOTTOM_OFFSET[attrs.shape]
    y, vy = y_rest, 0.0
    if attrs.motion == "bounce":
        tau = rng.uniform(0, 2 * BOUNCE_SPEED / GRAVITY)  # time since the last launch
        y = y_rest - (BOUNCE_SPEED * tau - GRAVITY * tau**2 / 2)
        vy = -(BOUNCE_SPEED - GRAVITY * tau)
    x = float(rng.uniform(0, SIZE))
    return SceneState(attrs, x, float(y), _vx(attrs.motion), float(vy), 0, weather_start)


def spawn_state(attrs: Attributes) -> SceneState:
    """How every stream starts, as in a game: the object at the spawn point (the middle of the
    floor), at rest; a bouncing object launches from there on the first step.

    A stream's first block has no context, so whatever the start leaves open (where the object
    is) a few-step generator can only average; a fixed spawn and a weather that starts with the
    stream leave nothing open.
    """
    y = FLOOR - BOTTOM_OFFSET[attrs.shape]
    return SceneState(attrs, SPAWN_X, float(y), _vx(attrs.motion), 0.0, 0, 0)


def _vx(motion: str) -> float:
    return {"left": -ROLL_SPEED, "right": ROLL_SPEED}.get(motion, 0.0)


def step(state: SceneState) -> SceneState:
    """Advance one frame. Exact ballistic arcs: an airborne object always falls; on landing
    it relaunches at BOUNCE_SPEED if its motion is "bounce", otherwise it stops on the floor."""
    vx = _vx(state.attrs.motion)
    h, u = state.height, -state.vy  # height above floor and upward speed
    bounce = state.attrs.motion == "bounce"
    if h <= 0 and u <= 0 and not bounce:
        h_new, u_new = 0.0, 0.0  # resting or rolling on the floor
    else:
        if h <= 0 and u <= 0:  # standing on the floor: launch now
            h, u = 0.0, BOUNCE_SPEED
        h_new, u_new = h + u - GRAVITY / 2, u - GRAVITY
        if h_new < 0:  # touched the floor during this frame
            impact = (u + np.sqrt(u * u + 2 * GRAVITY * h)) / GRAVITY
            if bounce:
                rest = 1.0 - impact
                h_new = BOUNCE_SPEED * rest - GRAVITY * rest**2 / 2
                u_new = BOUNCE_SPEED - GRAVITY * rest
            else:
                h_new, u_new = 0.0, 0.0
    y = FLOOR - BOTTOM_OFFSET[state.attrs.shape] - h_new
    return dataclasses.replace(state, x=(state.x + vx) % SIZE, y=float(y), vx=vx,
                               vy=float(-u_new), t=state.t + 1)


def with_attributes(state: SceneState, attrs: Attributes) -> SceneState:
    """Apply a prompt switch: the object keeps its x, height above the floor and velocity; a new
    weather begins at this frame (a kept one goes on)."""
    y = FLOOR - BOTTOM_OFFSET[attrs.shape] - state.height
    start = state.weather_start if attrs.weather == state.attrs.weather else state.t
    return dataclasses.replace(state, attrs=attrs, y=y, vx=_vx(attrs.motion), weather_start=start)


def trajectory(state: SceneState, n_frames: int) -> list[SceneState]:
    """`state` followed by n_frames - 1 physics steps."""
    states = [state]
    for _ in range(n_frames - 1):
        states.append(step(states[-1]))
    return states


def simulate(state: SceneState, n_frames: int) -> tuple[np.ndarray, list[SceneState]]:
    """Frames [n_frames, 64, 64, 3] uint8 and the states they show, starting at `state`."""
    states = trajectory(state, n_frames)
    return render(states), states


# ----------------------------------------------------------------------------- rendering

_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


def _gradient(stops: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """[n, 3] float32 piecewise-linear gradient through the stops."""
    stops_a = np.asarray(stops, np.float32)
    s = np.linspace(0, 1, n, dtype=np.float32) * (len(stops_a) - 1)
    i = np.minimum(s.astype(int), len(stops_a) - 2)
    f = (s - i)[:, None]
    return stops_a[i] * (1 - f) + stops_a[i + 1] * f


@lru_cache(maxsize=None)
def sky_rows(sky: str) -> np.ndarray:
    """[HORIZON, 3] float32 colour of each sky row (the sky is uniform along x)."""
    rows = _gradient(SKY_STOPS[sky], HORIZON)
    rows.flags.writeable = False  # cached and shared
    return rows


@lru_cache(maxsize=None)
def ground_rows(ground: str) -> np.ndarray:
    """[SIZE - HORIZON, 3] float32 mean colour of each ground row, before texture."""
    rows = _gradient(GROUND_STOPS[ground], SIZE - HORIZON)
    rows[0] = np.minimum(rows[0] + 18, 255)  # a lit rim makes the horizon read as an edge
    rows.flags.writeable = False  # cached and shared
    return rows


def _ground_texture(ground: str, t: np.ndarray) -> np.ndarray:
    """[len(t) or 1, SIZE-HORIZON, SIZE] brightness offset; periods divide 64 (torus)."""
    y = _YY[HORIZON:, :][None] - HORIZON
    x = _XX[HORIZON:, :][None]
    two_pi = np.float32(2 * np.pi)
    if ground == "grass":  # tufts
        return 6 * np.sin(two_pi * x / 16 + 0.9 * y)
    if ground == "snow":  # soft drifts
        return 5 * np.sin(two_pi * x / 32 + y / 3)
    if ground == "sand":  # diagonal ripples
        return 6 * np.sin(two_pi * (x + 2 * y) / 8)
    # water: ripples drifting with time, deeper rows calmer
    tt = t.astype(np.float32)[:, None, None]
    return (9 - 0.3 * y) * np.sin(two_pi * (x - 0.5 * tt) / 16 + 1.3 * y)


def stars() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Night-sky star rows, columns and opacities [N_STARS, 1]: the same constellation every night."""
    star_rng = np.random.default_rng(7)
    ys = star_rng.integers(0, HORIZON - 10, N_STARS)
    xs = star_rng.integers(0, SIZE, N_STARS)
    return ys, xs, star_rng.uniform(0.4, 0.9, N_STARS)[:, None].astype(np.float32)


@lru_cache(maxsize=None)
def _static_background(sky: str, ground: str) -> np.ndarray:
    """[64, 64, 3] float32 background without water motion or weather (cached)."""
    img = np.empty((SIZE, SIZE, 3), np.float32)
    img[:HORIZON] = sky_rows(sky)[:, None]
    if sky == "night":
        ys, xs, alpha = stars()
        img[ys, xs] = img[ys, xs] * (1 - alpha) + np.float32(250) * alpha
    img[HORIZON:] = ground_rows(ground)[:, None]
    if ground != "water":
        img[HORIZON:] += _ground_texture(ground, np.zeros(1))[0][..., None]
    img.flags.writeable = False
    return img


def shape_depth(shape: str, dx: np.ndarray, dy: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Signed distance inside the shape (px, > 0 inside) of offsets (dx, dy) from the
    centroid; `scale` resizes the shape (the probe fits templates to the observed area)."""
    dx, dy = dx / scale, dy / scale
    if shape == "ball":
        depth = BALL_RADIUS - np.sqrt(dx * dx + dy * dy)
    elif shape == "cube":
        depth = CUBE_HALF - np.maximum(np.abs(dx), np.abs(dy))
    else:  # triangle, apex up; the centroid sits a third of the height above the base
        b, h = TRIANGLE_HALF_BASE, TRIANGLE_HEIGHT
        norm = np.float32(np.hypot(b, h))
        slant = (b * (dy + 2 * h / 3) - h * np.abs(dx)) / norm  # inside the two sides
        depth = np.minimum(slant, h / 3 - dy)
    return depth * scale


def _draw_objects(img: np.ndarray, states: Sequence[SceneState]) -> None:
    """Composite each frame's object in place: antialiased, lit from the upper left, with a
    darker rim so it reads as a sprite when scaled up."""
    # Work in a window around each object: a full frame would cost 5x more for nothing.
    xs = np.array([s.x for s in states], np.float32)[:, None, None]
    ys = np.array([s.y for s in states], np.float32)[:, None, None]
    span = np.arange(_WINDOW)
    left = np.floor(xs).astype(int) - _WINDOW // 2
    cols = (left + span[None, None, :]) % SIZE  # [T, 1, W], wraps in x
    top = np.clip(np.floor(ys).astype(int) - _WINDOW // 2, 0, SIZE - _WINDOW)
    rows = top + span[None, :, None]  # [T, W, 1]
    frame = np.arange(len(states))[:, None, None]
    dx = (cols - xs + SIZE / 2) % SIZE - SIZE / 2  # [T, 1, W]
    dy = rows - ys  # [T, W, 1]
    dx, dy = np.broadcast_arrays(dx, dy)
    depth = np.empty(dx.shape, np.float32)
    shapes = np.array([s.attrs.shape for s in states])
    for shape in set(shapes.tolist()):
        sel = shapes == shape
        depth[sel] = shape_depth(shape, dx[sel], dy[sel])
    cover = np.clip(depth + 0.5, 0, 1)[..., None]
    light = np.clip(1 - 0.06 * (dx + dy) / BALL_RADIUS, 0.88, 1.12)
    light = light * (1 - 0.3 * np.clip(1.6 - depth, 0, 1))  # rim
    base = np.array([COLOUR_RGB[s.attrs.colour] for s in states], np.float32)[:, None, None]
    colour = base * light[..., None]
    is_ball = (shapes == "ball")[:, None, None, None]
    shine = 0.45 * np.exp(-((dx + 3) ** 2 + (dy + 3) ** 2) / 5)[..., None] * is_ball
    colour = colour + shine * (255 - colour)
    patch = img[frame, rows, cols]
    img[frame, rows, cols] = patch + cover * (np.clip(colour, 0, 255) - patch)


@lru_cache(maxsize=None)
def _particles(kind: str) -> tuple[np.ndarray, ...]:
    """Per-particle start x, start y, fall speed and phase: one fixed field per kind (at age 0)."""
    rng = np.random.default_rng(1 if kind == "rain" else 2)
    n = N_RAIN if kind == "rain" else N_SNOW
    lo, hi = (2.5, 3.5) if kind == "rain" else (0.5, 1.0)
    return (rng.uniform(0, SIZE, n), rng.uniform(0, SIZE, n), rng.uniform(lo, hi, n),
            rng.uniform(0, 2 * np.pi, n))


def _draw_weather(img: np.ndarray, states: Sequence[SceneState]) -> None:
    """Rain: slanted 4-px streaks. Snow: 1-px flakes, every third one 2x2, swaying. Positions
    depend on the weather's age only, so every rain (snow) starts with the same field."""
    for kind in {s.attrs.weather for s in states if s.attrs.weather != "clear"}:
        frames = [i for i, s in enumerate(states) if s.attrs.weather == kind]
        x0, y0, speed, phase = _particles(kind)
        t = np.array([states[i].t - states[i].weather_start for i in frames], np.float64)[:, None]
        fy = y0 + speed * t
        if kind == "rain":
            fx = x0 - 0.35 * speed * t
            offsets, alpha, rgb = ((0, 0), (1, 0), (2, -1), (3, -1)), 0.5, (205, 215, 235)
        else:
            fx = x0 + 1.2 * np.sin(0.15 * t + phase)
            offsets, alpha, rgb = ((0, 0),), 0.9, (252, 252, 255)
        fi = np.repeat(np.array(frames), x0.size).reshape(len(frames), -1)
        cells = [(oy, ox, slice(None)) for oy, ox in offsets]
        if kind == "snow":  # big flakes: three more pixels
            cells += [(oy, ox, slice(0, None, 3)) for oy, ox in ((0, 1), (1, 0), (1, 1))]
        for oy, ox, which in cells:
            py = (np.floor(fy[:, which]).astype(int) + oy) % SIZE
            px = (np.floor(fx[:, which]).astype(int) + ox) % SIZE
            f = fi[:, which]
            img[f, py, px] += alpha * (np.float32(rgb) - img[f, py, px])


def render(states: Sequence[SceneState], objects: bool = True) -> np.ndarray:
    """Frames [T, 64, 64, 3] uint8 showing each state (without the object: the scene alone)."""
    n = len(states)
    img = np.empty((n, SIZE, SIZE, 3), np.float32)
    for i, s in enumerate(states):
        img[i] = _static_background(s.attrs.sky, s.attrs.ground)
    water = [i for i, s in enumerate(states) if s.attrs.ground == "water"]
    if water:
        t = np.array([states[i].t for i in water])
        img[water, HORIZON:] += _ground_texture("water", t)[..., None]
    _draw_weather(img, states)
    if objects:
        _draw_objects(img, states)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def to_float(frames: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] in 0..255 -> float32 in [-1, 1], the model's pixel range."""
    return frames.astype(np.float32) / 127.5 - 1.0


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """float in [-1, 1] -> uint8, clipping what a generator overshoots."""
    return np.clip((np.asarray(frames, np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- training clips

def sample_clip(rng: np.random.Generator, n_frames: int, switch_prob: float = 0.5,
                switch_align: int = 1, split: Split = "train", spawn: bool = False,
                switch_at: int | None = None, change_prob: dict[str, float] | None = None) -> Clip:
    """A random clip, with one mid-clip prompt switch with probability `switch_prob`.

    The switch lands on a multiple of `switch_align` (pass the model's block size so that
    switches fall on block boundaries, as in the runtime). At the switch the scene changes
    but the object keeps its position and momentum, as in LongLive's interactive videos.
    Every segment's attributes are on the `split` side of `is_held_out`. With `spawn` the clip is
    the start of a stream (`spawn_state`), otherwise a piece of one from a random state.
    `switch_at` forces the switch onto that frame; `change_prob` is passed to `switched_attributes`.
    """
    first = sample_attributes(rng, split)
    state = spawn_state(first) if spawn else initial_state(rng, first)
    boundaries = range(switch_align, n_frames, switch_align)
    switch = None
    if switch_at is not None:
        if not 0 < switch_at < n_frames:
            raise ValueError(f"switch_at must lie inside the clip (1..{n_frames - 1}), got {switch_at}")
        switch = switch_at
    elif len(boundaries) and rng.random() < switch_prob:
        switch = int(rng.choice(boundaries))
    if switch is None:
        states = trajectory(state, n_frames)
        prompts = [make_prompt(first, rng)] * n_frames
    else:
        second = switched_attributes(rng, first, split, change_prob)
        states = trajectory(state, switch)
        states += trajectory(with_attributes(step(states[-1]), second), n_frames - switch)
        prompts = [make_prompt(first, rng)] * switch
        prompts += [make_prompt(second, rng)] * (n_frames - switch)
    positions = np.array([(s.x, s.y) for s in states], np.float32)
    return Clip(render(states), prompts, [s.attrs for s in states], positions, switch)


def contact_sheet(frames: np.ndarray, per_row: int = 12, scale: int = 2,
                  gap: int = 2) -> np.ndarray:
    """Frames [T, H, W, 3] uint8 tiled row by row, scaled by `scale`, on a white grid."""
    n, h, w, _ = frames.shape
    rows = -(-n // per_row)
    tile_h, tile_w = h * scale + gap, w * scale + gap
    sheet = np.full((rows * tile_h - gap, per_row * tile_w - gap, 3), 255, np.uint8)
    big = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    for i, frame in enumerate(big):
        r, c = divmod(i, per_row)
        sheet[r * tile_h:r * tile_h + h * scale, c * tile_w:c * tile_w + w * scale] = frame
    return sheet


if __name__ == "__main__":  # python -m toylab.world OUT.png [SEED]: the docs' sheet
    import sys

    from PIL import Image

    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    clip = sample_clip(np.random.default_rng(seed), 48, switch_prob=1.0, switch_align=12)
    Image.fromarray(contact_sheet(clip.frames)).save(sys.argv[1])
    print(f"switch at frame {clip.switch_frame}\n  {clip.prompts[0]}\n  {clip.prompts[-1]}")
