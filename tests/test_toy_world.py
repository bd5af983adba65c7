"""Toy world: physics, rendering, clip sampling, held-out split, prompts and vocabulary."""

import dataclasses
import itertools
import re

import numpy as np
import pytest

from runtime.toy import vocab
from toylab import prompts, world
from toylab.world import Attributes, SceneState


def attrs(**kw: str) -> Attributes:
    base = dict(sky="day", ground="grass", colour="red", shape="ball", motion="rest", weather="clear")
    return Attributes(**(base | kw))


def rest_y(shape: str) -> float:
    return world.FLOOR - world.BOTTOM_OFFSET[shape]


def wrapped(d: np.ndarray) -> np.ndarray:
    return (d + world.SIZE / 2) % world.SIZE - world.SIZE / 2


# ----------------------------------------------------------------------------- physics

@pytest.mark.parametrize("motion, speed", [("left", -world.ROLL_SPEED), ("right", world.ROLL_SPEED), ("rest", 0.0)])
def test_rolling_and_resting_stay_on_the_floor_at_constant_speed(motion, speed):
    states = world.trajectory(SceneState(attrs(motion=motion), 60.0, rest_y("ball"), 0, 0, 0, 1), 100)
    x = np.array([s.x for s in states])
    assert np.allclose(wrapped(np.diff(x)), speed)
    assert np.all((x >= 0) & (x < world.SIZE))  # wraps around instead of leaving
    assert all(s.y == rest_y("ball") for s in states)


@pytest.mark.parametrize("shape", world.SHAPES)
def test_bounce_is_an_exact_periodic_arc(shape):
    states = world.trajectory(SceneState(attrs(shape=shape, motion="bounce"), 10.0, rest_y(shape), 0, 0, 0, 1), 400)
    h = np.array([s.height for s in states])
    assert h.min() >= -1e-9
    apexes = [h[i] for i in range(1, len(h) - 1) if h[i] >= h[i - 1] and h[i] >= h[i + 1]]
    assert len(apexes) > 15
    # Discrete sampling of the arc only ever misses the apex by under g/8 * (1 frame)^2.
    assert np.all(np.array(apexes) > world.BOUNCE_HEIGHT - world.GRAVITY / 8 - 1e-9)
    assert np.all(np.array(apexes) <= world.BOUNCE_HEIGHT + 1e-9)
    assert len({s.x for s in states}) == 1


def test_switch_mid_air_to_rest_falls_and_lands():
    up = world.trajectory(SceneState(attrs(motion="bounce"), 5.0, rest_y("ball"), 0, 0, 0, 1), 6)[-1]
    assert up.height > 10
    states = world.trajectory(world.with_attributes(up, attrs(motion="rest")), 30)
    h = np.array([s.height for s in states])
    assert np.all(np.diff(h[h > 0]) < world.BOUNCE_SPEED)
    landed = int(np.argmax(h == 0))
    assert 0 < landed < 15 and np.all(h[landed:] == 0)


def test_shape_switch_keeps_contact_with_the_floor():
    ball = SceneState(attrs(), 20.0, rest_y("ball"), 0, 0, 0, 1)
    cube = world.with_attributes(ball, attrs(shape="triangle"))
    assert cube.height == 0 and cube.y == rest_y("triangle") and cube.x == ball.x


@pytest.mark.parametrize("motion", world.MOTIONS)
def test_streams_spawn_at_the_spawn_point_and_move_from_there(motion):
    a = attrs(motion=motion, shape="cube")
    clip = world.sample_clip(np.random.default_rng(3), 12, switch_prob=0.0, spawn=True)
    assert tuple(clip.positions[0]) == (world.SPAWN_X, clip.positions[0][1])
    states = world.trajectory(world.spawn_state(a), 12)
    assert states[0].x == world.SPAWN_X and states[0].height == 0 and states[0].vy == 0
    x, h = np.array([s.x for s in states]), np.array([s.height for s in states])
    assert np.allclose(wrapped(np.diff(x)), world._vx(motion))
    assert (h.max() > 10) == (motion == "bounce")  # a bounce launches from the floor at once


# ----------------------------------------------------------------------------- rendering

def test_object_colours_stay_far_from_every_background_row():
    rows = np.concatenate([world.sky_rows(s) for s in world.SKIES] + [world.ground_rows(g) for g in world.GROUNDS])
    for name, rgb in world.COLOUR_RGB.items():
        for shade in (0.88, 1.0, 1.12):  # the lighting range across an object
            distance = np.linalg.norm(rows - np.clip(np.array(rgb) * shade, 0, 255), axis=1).min()
            assert distance > 60, (name, shade, distance)


def test_render_draws_the_object_at_its_centroid_and_wraps_in_x():
    a = attrs(colour="blue", shape="cube", ground="sand")
    centre, edge = world.render([SceneState(a, 32.0, 40.0, 0, 0, 0, 1), SceneState(a, 0.0, 40.0, 0, 0, 0, 1)])
    blue = lambda f: np.linalg.norm(f.astype(float) - world.COLOUR_RGB["blue"], axis=-1) < 60  # noqa: E731
    ys, xs = np.nonzero(blue(centre))
    assert abs(xs.mean() - 32) < 0.5 and abs(ys.mean() - 40) < 0.5
    assert blue(edge)[:, :8].any() and blue(edge)[:, -8:].any() and not blue(edge)[:, 12:52].any()
    assert abs(int(blue(edge).sum()) - int(blue(centre).sum())) <= 2


def test_weather_is_sparse_and_moves_with_its_age():
    a = attrs(sky="night", ground="snow", weather="rain")
    # (t, weather_start): ages -1, 0, -1, -2, and age 0 again at a later time
    f = world.render([SceneState(a, 32.0, rest_y("ball"), 0, 0, t, start)
                      for t, start in ((0, 1), (1, 1), (0, 1), (0, 2), (40, 40))])
    dry = world.render([SceneState(dataclasses.replace(a, weather="clear"), 32.0, rest_y("ball"), 0, 0, 0, 1)])[0]
    wet = np.any(f[0] != dry, axis=-1).mean()
    assert 0.01 < wet < 0.1
    assert np.array_equal(f[0], f[2]) and not np.array_equal(f[0], f[1]) and not np.array_equal(f[0], f[3])
    assert np.array_equal(f[1], f[4])  # the same age shows the same field, whenever it is


@pytest.mark.parametrize("kind", ["rain", "snow"])
def test_every_stream_starts_its_weather_with_the_same_field(kind):
    """Issue 13: a stream's first block of weather is determined, so a few-step x0 generator can
    learn to draw it (a random field per stream averaged to no particles at all)."""
    starts = [world.sample_clip(np.random.default_rng(s), 6, switch_prob=0.0, spawn=True) for s in range(40)]
    # the particles (pixels that differ from the same scene without weather) are the same field
    masks = []
    for c in starts:
        a = c.attrs[0]
        if a.weather == kind:
            clear = world.render(world.trajectory(world.spawn_state(dataclasses.replace(a, weather="clear")), 3))
            masks.append(np.any(c.frames[:3] != clear, axis=-1))
    assert len(masks) >= 4 and min(m.mean() for m in masks) > 0.005
    overlap = [m[masks[0]].mean() for m in masks[1:]]
    assert min(overlap) > 0.6  # only the object (drawn in front) hides some particles


def test_a_switch_starts_a_new_weather_and_keeps_a_running_one():
    rain, snow = attrs(weather="rain"), attrs(weather="snow")
    running = world.trajectory(SceneState(rain, 20.0, rest_y("ball"), 0, 0, 0, 0), 30)[-1]
    assert world.with_attributes(running, dataclasses.replace(rain, sky="night")).weather_start == 0
    switched = world.with_attributes(running, snow)
    assert switched.weather_start == running.t == 29
    fresh = world.spawn_state(snow)
    scene = lambda s: world.render([s], objects=False)[0]  # noqa: E731
    assert np.array_equal(scene(switched), scene(fresh))  # snow starts with its first field


def test_float_conversion_round_trips():
    frames = world.sample_clip(np.random.default_rng(0), 3).frames
    x = world.to_float(frames)
    assert x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(world.to_uint8(x), frames)
    assert world.to_uint8(np.array([-3.0, 3.0])).tolist() == [0, 255]


# ----------------------------------------------------------------------------- clips

def test_sample_clip_is_deterministic_and_well_formed():
    a, b = (world.sample_clip(np.random.default_rng(7), 20, switch_prob=1.0) for _ in range(2))
    assert np.array_equal(a.frames, b.frames) and a.prompts == b.prompts and a.attrs == b.attrs
    assert a.frames.shape == (20, 64, 64, 3) and a.frames.dtype == np.uint8
    assert len(a.prompts) == len(a.attrs) == len(a.positions) == 20


@pytest.mark.parametrize("seed", range(30))
def test_switch_changes_the_prompt_once_and_keeps_the_object_continuous(seed):
    clip = world.sample_clip(np.random.default_rng(seed), 24, switch_prob=1.0, switch_align=3)
    k = clip.switch_frame
    assert k is not None and k % 3 == 0 and 0 < k < 24
    assert len(set(clip.prompts[:k])) == len(set(clip.prompts[k:])) == 1 and clip.prompts[k - 1] != clip.prompts[k]
    assert len(set(clip.attrs[:k])) == len(set(clip.attrs[k:])) == 1 and clip.attrs[k - 1] != clip.attrs[k]
    step = np.abs(np.diff(clip.positions, axis=0))
    step[:, 0] = np.abs(wrapped(np.diff(clip.positions[:, 0])))
    assert step[:, 0].max() <= world.ROLL_SPEED + 1e-5
    assert step[:, 1].max() <= world.BOUNCE_SPEED + 3  # +3: a shape switch moves the centroid


def test_switch_probability_and_alignment():
    rng = np.random.default_rng(1)
    assert all(world.sample_clip(rng, 12, switch_prob=0.0).switch_frame is None for _ in range(20))
    switches = [world.sample_clip(rng, 12, switch_prob=0.5, switch_align=4).switch_frame for _ in range(200)]
    assert 60 < sum(s is not None for s in switches) < 140
    assert {s for s in switches if s is not None} == {4, 8}
    assert world.sample_clip(rng, 3, switch_prob=1.0, switch_align=3).switch_frame is None


# ----------------------------------------------------------------------------- held-out split

def all_tuples():
    return [attrs(sky=s, ground=g, colour=c, shape=h)
            for s, g, c, h in itertools.product(world.SKIES, world.GROUNDS, world.COLOURS, world.SHAPES)]


def test_held_out_rule_keeps_every_three_way_combination_in_training():
    held = [a for a in all_tuples() if world.is_held_out(a)]
    assert len(held) == 24
    fields = ("sky", "ground", "colour", "shape")
    train = [a for a in all_tuples() if not world.is_held_out(a)]
    for drop in fields:
        keep = [f for f in fields if f != drop]
        seen = {tuple(getattr(a, f) for f in keep) for a in train}
        assert len(seen) == np.prod([len(world._LEGAL[f]) for f in keep])
    # Weather and motion are not part of the rule.
    assert world.is_held_out(dataclasses.replace(held[0], weather="snow", motion="left"))


@pytest.mark.parametrize("split", ["train", "held_out"])
def test_sampler_respects_the_split(split):
    rng = np.random.default_rng(3)
    for _ in range(60):
        clip = world.sample_clip(rng, 6, switch_prob=1.0, split=split)
        assert all(world.is_held_out(a) == (split == "held_out") for a in clip.attrs)


# ----------------------------------------------------------------------------- prompts and vocabulary

def template_words() -> set[str]:
    found = set(prompts.DETERMINERS)
    for table in prompts.phrase_tables().values():
        for phrases in table.values():
            found.update(w for p in phrases for w in vocab.words(p))
    for template in prompts.TEMPLATES:
        found.update(vocab.words(re.sub(r"\{\w+\}", " ", template)))
    return found


def test_vocab_is_exactly_the_generator_words():
    assert vocab.VOCAB[vocab.PAD_ID] == vocab.PAD
    assert len(set(vocab.VOCAB)) == vocab.VOCAB_SIZE
    assert set(vocab.VOCAB[1:]) == template_words()


def test_attributes_do_not_share_content_words():
    function_words = {"a", "at", "in", "of", "the"}
    owner: dict[str, str] = {}
    for category, table in prompts.phrase_tables().items():
        for phrases in table.values():
            for word in {w for p in phrases for w in vocab.words(p)} - function_words:
                assert owner.setdefault(word, category) == category, word


def test_every_attribute_value_has_phrasings():
    tables = prompts.phrase_tables()
    for category, legal in world._LEGAL.items():
        assert set(tables[category]) == set(legal)


def test_longest_possible_prompt_fits():
    tables = prompts.phrase_tables()
    longest = {cat: max(len(vocab.words(p)) for ps in t.values() for p in ps) for cat, t in tables.items()}
    obj = 1 + longest["colour"] + longest["shape"]
    for template in prompts.TEMPLATES:
        fixed = len(vocab.words(re.sub(r"\{\w+\}", " ", template)))
        worst = fixed + obj + sum(longest[s] for s in ("motion", "ground", "sky", "weather"))
        assert worst <= vocab.MAX_TOKENS


def test_generated_prompts_tokenize_and_vary():
    rng = np.random.default_rng(0)
    texts = {prompts.make_prompt(attrs(), rng) for _ in range(200)}
    assert len(texts) > 50
    for text in texts:
        ids = vocab.tokenize(text)
        assert len(ids) == vocab.MAX_TOKENS and ids[0] != vocab.PAD_ID
        assert [vocab.VOCAB[i] for i in ids if i != vocab.PAD_ID] == vocab.words(text)


def test_tokenize_normalises_pads_and_truncates():
    assert vocab.tokenize("A RED ball; rolls!") == vocab.tokenize("a red ball rolls")
    assert vocab.tokenize("red ball", max_len=4)[2:] == [vocab.PAD_ID] * 2
    assert vocab.tokenize("red ball red ball red", max_len=3) == [vocab.WORD_TO_ID[w] for w in ("red", "ball", "red")]


def test_unknown_words_are_reported_with_suggestions():
    with pytest.raises(vocab.UnknownWordsError) as err:
        vocab.tokenize("a green circle rollz over the pond, circle")
    assert isinstance(err.value, ValueError)
    assert err.value.words == ["circle", "rollz", "pond"]
    assert err.value.suggestions["circle"] == ["ball"] and "rolls" in err.value.suggestions["rollz"]
    message = str(err.value)
    assert "'circle' (try 'ball')" in message and "'pond' (try 'lake')" in message


def test_synonyms_point_from_unknown_to_known_words():
    for unknown, known in vocab.SYNONYMS.items():
        assert unknown not in vocab.WORD_TO_ID and known in vocab.WORD_TO_ID, unknown
