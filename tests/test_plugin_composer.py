"""The composer: scene composition as a library, every composed prompt encodable by the real toy
model, unknown words reported with suggestions, and the hooks through a real PluginHost."""

from __future__ import annotations

import itertools

import pytest

from plugins import hookimpl
from plugins.composer import TOY_EXAMPLE_TABLE, Composer, Scene, SceneError
from plugins.hookspecs import EventInfo, PromptChange, Refused, SessionInfo
from plugins.host import PluginHost
from runtime.pipeline import load_pipeline

TOY_ACTIONS = ["the hero rolls to the left", "The hero bounces.", "hero sits still", "the rival slides rightward",
               "a rival hops in place", "the hero keeps bouncing while the rival rests"]
TOY_SETTINGS = ["across a green field", "on a snowy plain", "over the dunes", "across the sea", ""]
TOY_STYLES = ["under a sunny daytime sky", "beneath a starry night sky in the rain", "under grey thunderclouds", ""]


@pytest.fixture(scope="module")
def toy():
    return load_pipeline("toy")


def toy_session(toy, name: str = "main") -> SessionInfo:
    return SessionInfo(name, "toy", toy.fps, toy.frame_shape, 0, toy.frames_per_block, check_prompt=toy.check_prompt)


def composer_host(table=TOY_EXAMPLE_TABLE) -> PluginHost:
    host = PluginHost({"composer": table}, builtin_models=False)
    assert host.register(Composer(), "composer") == "composer", host.disabled
    return host


# ---------------------------------------------------------------- the library


def test_compose_repeats_the_scene_around_the_action():
    scene = Scene(cast={"hero": "a red ball"}, setting="on green grass", style="under a clear sky")
    assert scene.compose("the hero jumps") == "a red ball jumps on green grass under a clear sky"
    assert scene.compose("  The HERO   jumps! ") == "a red ball jumps on green grass under a clear sky"
    assert scene.compose("hero jumps") == "a red ball jumps on green grass under a clear sky"
    assert scene.compose("the heroic ball jumps") == "the heroic ball jumps on green grass under a clear sky"
    assert scene.mentions("Hero jumps") and not scene.mentions("the heroic ball") and not scene.mentions("zero")
    assert Scene().compose("a red ball jumps") == "a red ball jumps"


def test_changes_return_a_new_scene_and_composition_is_idempotent():
    scene = Scene.from_table(TOY_EXAMPLE_TABLE)
    night = scene.changed(style="under a starry night sky", cast={"hero": "a pink orb"})
    assert scene.style == "under a sunny daytime sky" and scene.cast["hero"] == "a red ball"
    assert dict(night.cast) == {"hero": "a pink orb", "rival": "a blue cube"} and night.setting == scene.setting
    composed = night.compose("the hero chases the rival")
    assert composed == "a pink orb chases a blue cube across a green field under a starry night sky"
    assert not night.mentions(composed)  # a composed prompt is never composed again
    assert Scene.from_table(scene.to_table()) == scene


@pytest.mark.parametrize("kwargs, message", [
    ({"cast": {"red hero": "a red ball"}}, "cast name 'red hero' must be one word"),
    ({"cast": {"the": "a red ball"}}, "cast name 'the' is a determiner"),
    ({"cast": {"hero": ""}}, "cast 'hero' must be a non-empty phrase"),
    ({"cast": {"hero": 3}}, "cast 'hero' must be a non-empty phrase, not 3"),
    ({"cast": ["hero"]}, "cast must be a table of name = phrase, not list"),
    ({"setting": 5}, "setting must be a string, not 5"),
    ({"cast": {"ball": "a red ball"}}, "cast 'ball' 'a red ball' contains the cast name 'ball'"),
    ({"cast": {"hero": "a red ball"}, "style": "where the Hero lives"},
     "style 'where the Hero lives' contains the cast name 'Hero'"),
    ({"cast": {"hero": "a", "Hero": "b"}}, "cast names differ only in case"),
])
def test_malformed_scenes_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(SceneError, match=message):
        Scene(**kwargs)


# ---------------------------------------------------------------- the toy model's vocabulary


def test_every_composed_example_prompt_encodes_for_the_toy_model(toy):
    scene = Scene.from_table(TOY_EXAMPLE_TABLE)
    scene.check(toy.check_prompt)
    count = 0
    for setting, style, action in itertools.product(TOY_SETTINGS, TOY_STYLES, TOY_ACTIONS):
        text = scene.changed(setting=setting, style=style).compose(action)
        toy.check_prompt(text)  # raises PromptError naming any unknown word
        count += 1
    assert count == len(TOY_SETTINGS) * len(TOY_STYLES) * len(TOY_ACTIONS)
    with pytest.raises(ValueError, match="'hero'"):  # negative control: the uncomposed action does not encode
        toy.check_prompt(TOY_ACTIONS[0])


def test_a_planted_unknown_word_is_named_with_suggestions(toy):
    scene = Scene(cast={"hero": "a crimson knight"}, setting="across a green feild", style="under a sunny sky")
    with pytest.raises(SceneError) as caught:
        scene.check(toy.check_prompt)
    message = str(caught.value)
    assert "cast 'hero' 'a crimson knight'" in message and "'knight'" in message
    assert "setting 'across a green feild'" in message and "'feild' (read as 'field')" in message
    assert "style" not in message and "crimson'" not in message  # what the model knows is not reported


# ---------------------------------------------------------------- the plugin through the host


class StyleSuffix:
    """An inline plugin registered before the composer: the chain gives it the composed text."""

    @hookimpl
    def longlive_rewrite_prompt(self, text: str) -> str:
        return f"{text} in clear weather"


def test_rewrite_chain_through_the_host(toy):
    host = PluginHost({"composer": TOY_EXAMPLE_TABLE}, builtin_models=False)
    host.register(StyleSuffix(), "suffix")
    host.register(Composer(), "composer")  # registered last: runs first
    info = toy_session(toy)
    opened = host.rewrite_prompt(info, "the hero rests on the ground", EventInfo("o-1", "open"))
    assert opened == "a red ball rests on the ground across a green field under a sunny daytime sky in clear weather"
    free = "a yellow wedge slides leftward across the sea under a stormy sky"
    assert host.rewrite_prompt(info, free, EventInfo("p-2", "prompt")) == f"{free} in clear weather"  # no cast name
    toy.check_prompt(opened)
    assert host.disabled == {}
    host.close()


def test_action_and_scene_events(toy):
    host = composer_host()
    info = toy_session(toy)
    host.rewrite_prompt(info, "a red ball rests", EventInfo("o-1", "open"))
    # no action yet: the scene changes, nothing to re-show
    assert host.game_event(info, "scene", {"style": "under a starry night sky"}) == (None, None)
    change, plugin = host.game_event(info, "action", {"text": "the hero bounces", "transition": "cut"})
    assert plugin == "composer"
    assert change == PromptChange("a red ball bounces across a green field under a starry night sky", "cut")
    change, _ = host.game_event(info, "scene", {"setting": "over the dunes", "cast": {"hero": "a pink orb"}})
    assert change == PromptChange("a pink orb bounces over the dunes under a starry night sky")  # re-shows the action
    change, _ = host.game_event(info, "scene", {"style": "under a sunny daytime sky", "action": "the rival rests",
                                                "at_frame": 30})
    assert change == PromptChange("a blue cube rests over the dunes under a sunny daytime sky", at_frame=30)
    toy.check_prompt(change.text)
    # a scene the model cannot take: refused with the reason, the old scene stays
    with pytest.raises(Refused) as refused:
        host.game_event(info, "scene", {"setting": "in the castle"})
    assert "setting 'in the castle'" in str(refused.value) and "'castle'" in str(refused.value)
    change, _ = host.game_event(info, "action", {"text": "the hero rests"})
    assert change.text == "a pink orb rests over the dunes under a sunny daytime sky"
    # malformed payloads are refused, other events declined, and the composer stays enabled
    for name, payload in (("action", {"text": 5}), ("scene", {"cast": ["hero"]}), ("scene", {})):
        with pytest.raises(Refused, match=f"plugin composer refused: {name} event"):
            host.game_event(info, name, payload)
    assert host.game_event(info, "explode", {"text": "the hero"}) == (None, None)
    assert host.disabled == {}
    host.close()


def test_sessions_keep_their_own_scene(toy):
    host = composer_host()
    main, other = toy_session(toy, "main"), toy_session(toy, "other")
    for s in (main, other):
        host.rewrite_prompt(s, "the hero rests", EventInfo(f"o-{s.name}", "open"))
    host.game_event(main, "scene", {"setting": "across the sea", "action": "the hero rests"})
    assert host.rewrite_prompt(other, "the hero rests", EventInfo("p", "prompt")).endswith(
        "across a green field under a sunny daytime sky")
    assert host.rewrite_prompt(main, "the hero rests", EventInfo("p", "prompt")).endswith(
        "across the sea under a sunny daytime sky")
    host.rewrite_prompt(main, "the hero rests", EventInfo("o-2", "open"))  # reopened: back to the configured scene
    assert host.rewrite_prompt(main, "the hero rests", EventInfo("p", "prompt")).endswith("across a green field "
                                                                                          "under a sunny daytime sky")
    host.close()


def test_a_configured_scene_the_model_cannot_take_disables_the_composer_at_the_first_session(toy):
    host = composer_host({"cast": {"hero": "a red ball"}, "setting": "on the lawnn"})
    info = toy_session(toy)
    assert host.rewrite_prompt(info, "the hero rests", EventInfo("o-1", "open")) == "the hero rests"  # kept as is
    assert "composer" not in host.names
    assert "setting 'on the lawnn'" in host.disabled["composer"] and "'lawnn' (try 'lawn')" in host.disabled["composer"]
    host.close()


@pytest.mark.parametrize("table, message", [
    ("a red ball", "[composer] must be a table, not str"),
    ({"cast": {"hero": "a red ball"}, "mood": "calm"}, "[composer] unknown scene settings mood"),
    ({"cast": {"two words": "x"}}, "[composer] bad scene: cast name 'two words' must be one word"),
])
def test_bad_config_is_refused_at_configure(table, message):
    host = PluginHost({"composer": table}, builtin_models=False)
    assert host.register(Composer(), "composer") is None
    assert message in host.disabled["composer"]
    host.close()


def test_the_builtin_name_loads_the_composer(toy):
    host = PluginHost({"composer": TOY_EXAMPLE_TABLE}, builtin_models=False)
    assert host.load("composer") == "composer"
    assert host.rewrite_prompt(toy_session(toy), "the rival rests", EventInfo("o", "open")) == \
        "a blue cube rests across a green field under a sunny daytime sky"
    host.close()


def test_daemon_composes_events_end_to_end():
    """A real daemon (toy model) on loopback: an `action` event is acked with a frame, and the
    session's status then shows the composed prompt; a prompt naming the hero is composed too."""
    from protocol.client import Controller
    from runtime.daemon.daemon import DaemonConfig
    from runtime.daemon.inprocess import serve_in_thread

    pipe = load_pipeline("toy", max_streams=1)
    host = PluginHost({"composer": TOY_EXAMPLE_TABLE}, builtin_models=False)
    assert host.load("composer") == "composer", host.disabled
    config = DaemonConfig(control="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*", default_prompt="the hero rests")
    with serve_in_thread(pipe, config, host) as daemon, Controller(daemon.endpoints[0]) as ctl:
        assert ctl.status("main")[0].prompt == "a red ball rests across a green field under a sunny daytime sky"
        ack = ctl.event("action", {"text": "the rival hops in place"}).result(timeout=20)
        assert ack.status == "applied" and ack.frame is not None
        status = ctl.status("main")[0]
        assert status.prompt == "a blue cube hops in place across a green field under a sunny daytime sky"
        assert "composer" in status.plugins
        ctl.send_prompt("the hero bounces").result(timeout=20)
        assert ctl.status("main")[0].prompt.startswith("a red ball bounces across a green field")
