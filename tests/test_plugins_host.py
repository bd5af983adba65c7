"""The plugin host on its own: loading from names, files, entry points and config; the
rewrite chain and game-event answers; failures that disable one plugin and nothing else;
observers on their own threads with bounded, counted drops."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from plugins import PromptChange, SessionInfo, hookimpl
from plugins.hookspecs import OBSERVER_QUEUE_BLOCKS, EventInfo
from plugins.host import PluginError, PluginHost, read_config
from runtime.pipeline import ModelRegistry, model_registry

SESSION = SessionInfo("main", "toy", 16.0, (64, 64), 0, 3)
EVENT = EventInfo("ev-1", "prompt")


def host_with(*plugins: object) -> PluginHost:
    host = PluginHost(builtin_models=False)
    for i, plugin in enumerate(plugins):
        assert host.register(plugin, f"p{i}") == f"p{i}"
    return host


class Suffix:
    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    @hookimpl
    def longlive_rewrite_prompt(self, text: str) -> str:
        return text + self.suffix


def test_rewrite_chain_runs_last_registered_first_and_none_keeps_the_text():
    class Declines:
        @hookimpl
        def longlive_rewrite_prompt(self, text):
            return None

    host = host_with(Suffix(" one"), Declines(), Suffix(" two"))
    assert host.rewrite_prompt(SESSION, "a ball", EVENT) == "a ball two one"


def test_a_bad_rewrite_result_is_an_error_naming_the_plugin():
    class Empty:
        @hookimpl
        def longlive_rewrite_prompt(self):
            return "  "

    host = host_with(Empty())
    with pytest.raises(ValueError, match="plugin p0 rewrote the prompt to '  '"):
        host.rewrite_prompt(SESSION, "a ball", EVENT)


def test_game_event_first_answer_wins_and_strings_mean_recache():
    class Never:
        @hookimpl
        def longlive_game_event(self):
            return None

    class Jump:
        @hookimpl
        def longlive_game_event(self, name):
            return "a ball bounces" if name == "jump" else None

    host = host_with(Jump(), Never())
    assert host.game_event(SESSION, "jump", {}) == (PromptChange("a ball bounces", "recache"), "p0")
    assert host.game_event(SESSION, "duck", {}) == (None, None)


def test_a_raising_plugin_is_disabled_once_and_the_others_keep_working(caplog):
    calls = []

    class Boom:
        @hookimpl
        def longlive_rewrite_prompt(self, text):
            calls.append(text)
            raise RuntimeError("kaput")

    host = host_with(Suffix("!"), Boom())
    assert host.rewrite_prompt(SESSION, "a", EVENT) == "a!"  # Boom counts as having declined
    assert host.rewrite_prompt(SESSION, "b", EVENT) == "b!"
    assert calls == ["a"]
    assert host.names == ("p0",) and "RuntimeError: kaput" in host.disabled["p1"]
    reports = [r for r in caplog.records if "p1" in r.getMessage()]
    assert len(reports) == 1 and "Traceback" in reports[0].getMessage()


def test_observers_run_on_their_own_threads_in_order():
    seen: list[tuple[str, str, object]] = []

    class Watcher:
        @hookimpl
        def longlive_session_opened(self, session, prompt):
            seen.append((threading.current_thread().name, "opened", prompt))

        @hookimpl
        def longlive_frames(self, first_index):
            seen.append((threading.current_thread().name, "frames", first_index))

        @hookimpl
        def longlive_session_closed(self, frames):
            seen.append((threading.current_thread().name, "closed", frames))

    host = host_with(Watcher())
    host.notify("session_opened", session=SESSION, prompt="a ball")
    for i in range(5):
        host.notify("frames", session=SESSION, first_index=3 * i, frames=None, prompt_id=None)
    host.notify("session_closed", session=SESSION, frames=15)
    host.close()
    assert [s[1:] for s in seen] == [("opened", "a ball")] + [("frames", 3 * i) for i in range(5)] + [("closed", 15)]
    assert {s[0] for s in seen} == {"plugin-p0"}


def test_a_stuck_observer_loses_frames_notes_but_never_lifecycle_notes_and_never_blocks():
    release = threading.Event()
    seen = []

    class Stuck:
        @hookimpl
        def longlive_frames(self, first_index):
            release.wait()
            seen.append(first_index)

        @hookimpl
        def longlive_session_closed(self, frames):
            seen.append(("closed", frames))

    host = host_with(Stuck())
    start = time.monotonic()
    for i in range(OBSERVER_QUEUE_BLOCKS + 50):
        host.notify("frames", session=SESSION, first_index=i, frames=None, prompt_id=None)
    host.notify("session_closed", session=SESSION, frames=999)
    assert time.monotonic() - start < 1.0  # notify never waits for the observer
    assert host.observations_dropped() >= 49  # the first note may already be in the plugin's hands
    release.set()
    host.close()
    assert seen[-1] == ("closed", 999) and len(seen) == OBSERVER_QUEUE_BLOCKS + 50 - host.observations_dropped() + 1


def test_an_observer_that_raises_is_disabled_and_its_queue_drained():
    class Bad:
        @hookimpl
        def longlive_frames(self):
            raise ValueError("cannot write")

    host = host_with(Bad())
    for i in range(3):
        host.notify("frames", session=SESSION, first_index=i, frames=None, prompt_id=None)
    deadline = time.monotonic() + 5
    while "p0" not in host.disabled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "ValueError: cannot write" in host.disabled["p0"] and host.names == ()
    host.notify("frames", session=SESSION, first_index=3, frames=None, prompt_id=None)  # nobody listens: fine
    host.close(timeout=5)


def test_load_by_file_module_and_builtin_name_and_failures_are_listed(tmp_path):
    (tmp_path / "rules.py").write_text(textwrap.dedent("""
        from plugins import hookimpl

        @hookimpl
        def longlive_game_event(name):
            return "a ball bounces" if name == "door" else None
    """))
    (tmp_path / "broken.py").write_text("raise ImportError('missing dependency foo')\n")
    (tmp_path / "wrongarg.py").write_text(textwrap.dedent("""
        from plugins import hookimpl

        @hookimpl
        def longlive_game_event(nonsense):
            return None
    """))
    host = PluginHost(builtin_models=False)
    assert host.load(str(tmp_path / "rules.py")) == "rules"
    assert host.load("plugins.examples.arcade_rules") == "plugins.examples.arcade_rules"
    assert host.load(str(tmp_path / "broken.py")) is None
    assert host.load(str(tmp_path / "wrongarg.py")) is None
    assert host.load(str(tmp_path / "absent.py")) is None
    assert host.names == ("rules", "plugins.examples.arcade_rules")
    assert "missing dependency foo" in host.disabled["broken"]
    assert "nonsense" in host.disabled["wrongarg"]
    assert "no plugin file" in host.disabled["absent"]
    assert host.game_event(SESSION, "door", {}) == (PromptChange("a ball bounces"), "rules")
    assert host.game_event(SESSION, "jump", {})[1] == "plugins.examples.arcade_rules"  # last loaded answers first


def test_configure_gets_the_config_and_a_refusal_disables(tmp_path):
    config = tmp_path / "plugins.toml"
    config.write_text('[plugins]\nenable = ["plugins.examples.arcade_rules"]\n[style]\nsuffix = " at night"\n')
    got = {}

    class Style:
        @hookimpl
        def longlive_configure(self, config):
            got.update(config)
            if "suffix" not in config.get("style", {}):
                raise ValueError("[style] needs suffix")

    host = PluginHost(read_config(config), builtin_models=False)
    assert host.register(Style(), "style") == "style" and got["style"] == {"suffix": " at night"}
    assert host.enable_from_config() == ["plugins.examples.arcade_rules"]
    refusing = PluginHost({}, builtin_models=False)
    assert refusing.register(Style(), "style") is None and "[style] needs suffix" in refusing.disabled["style"]


def test_a_bad_config_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[plugins\n")
    with pytest.raises(PluginError, match="not valid TOML"):
        read_config(bad)
    with pytest.raises(PluginError, match="cannot read plugin config"):
        read_config(tmp_path / "missing.toml")
    with pytest.raises(PluginError, match="must be a list"):
        PluginHost({"plugins": {"enable": "recorder"}}, builtin_models=False).enable_from_config()


def test_entry_point_plugins_load_and_can_register_models(tmp_path, monkeypatch):
    """A real installed distribution (a dist-info folder on sys.path), not a mocked lookup."""
    (tmp_path / "mygame_models.py").write_text(textwrap.dedent("""
        from plugins import hookimpl

        def build(**kwargs):
            from runtime.random_model import build as random_build
            return random_build(**kwargs)

        @hookimpl
        def longlive_register_models(registry):
            registry.add("mygame-world", build)
    """))
    info = tmp_path / "mygame-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mygame\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[longlive.plugins]\nmygame = mygame_models\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost()
    assert "mygame" in host.load_entry_points()
    registry = model_registry(host)
    assert {"toy", "random-small", "longlive-1.3b", "mygame-world"} <= set(registry.names)
    assert registry.build("mygame-world", device="cpu", dtype=None, weights=None, max_streams=1).frame_shape


def test_registry_errors_are_clear():
    registry = ModelRegistry()
    with pytest.raises(ValueError, match="non-empty string"):
        registry.add("", lambda **_: None)
    with pytest.raises(ValueError, match=r"unknown model 'nope'; available: \[\]"):
        registry.build("nope")


def test_the_pipeline_names_no_model_and_importing_it_loads_none():
    """The registry circle is gone: runtime.pipeline imports no concrete model; they arrive
    through longlive_register_models only when a model is looked up."""
    code = ("import sys, runtime.pipeline, runtime.daemon.daemon; "
            "print(sorted(m for m in sys.modules if m.startswith(('runtime.toy', 'runtime.wan', "
            "'runtime.random_model', 'runtime.models'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from pathlib import Path

    import runtime.pipeline
    source = Path(runtime.pipeline.__file__).read_text()
    assert not any(name in source for name in ("random_model", "runtime.toy", "runtime.wan"))


def test_longlive_plugins_lists_hooks_models_and_failures(tmp_path, capsys):
    from runtime.cli import main

    (tmp_path / "broken.py").write_text("import no_such_dependency\n")
    assert main(["plugins", "--no-entry-points", "--plugin", "plugins/examples/arcade_rules.py"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "arcade_rules: game_event (decision), rewrite_prompt (decision)" in out
    assert "models: longlive-1.3b, random-small, toy" in out
    assert main(["plugins", "--no-entry-points", "--plugin", str(tmp_path / "broken.py")]) == 1
    assert "broken: DISABLED, failed to load: No module named 'no_such_dependency'" in capsys.readouterr().out


def test_refused_reaches_the_caller_with_the_reason_and_the_plugin_stays():
    from plugins import Refused

    class Gate:
        @hookimpl
        def longlive_game_event(self, name):
            if name == "teleport":
                raise Refused("no teleporting in this level")
            return None

    host = host_with(Gate())
    with pytest.raises(Refused, match="plugin p0 refused: no teleporting in this level"):
        host.game_event(SESSION, "teleport", {})
    assert host.names == ("p0",) and not host.disabled
    assert host.game_event(SESSION, "walk", {}) == (None, None)


def test_arcade_rules_keep_a_world_per_session_reset_when_it_reopens():
    host = PluginHost(builtin_models=False)
    host.load("plugins.examples.arcade_rules")
    other = SessionInfo("other", "toy", 16.0, (64, 64), 0, 3)
    assert "rolls to the left" in host.game_event(SESSION, "move", {"direction": "left"})[0].text
    assert "in the rain" in host.game_event(SESSION, "weather", {"kind": "rain"})[0].text
    assert host.game_event(other, "time", {"of_day": "night"})[0].text == (
        "a red ball rests on the ground across a grassy meadow under a starry night sky")
    assert host.game_event(SESSION, "teleport", {}) == (None, None)
    host.rewrite_prompt(SESSION, "anything", EventInfo("o", "open"))
    assert host.game_event(SESSION, "jump", {})[0].text == (
        "a red ball bounces up and down across a grassy meadow under a sunny daytime sky")


def test_a_module_naming_its_plugin_object_registers_that_object(tmp_path):
    (tmp_path / "stateful.py").write_text(textwrap.dedent("""
        from plugins import hookimpl

        class Counter:
            def __init__(self):
                self.seen = 0

            @hookimpl
            def longlive_game_event(self, name):
                self.seen += 1
                return f"a ball bounces {self.seen}" if name == "jump" else None

        longlive_plugin = Counter()
    """))
    host = PluginHost(builtin_models=False)
    assert host.load(str(tmp_path / "stateful.py")) == "stateful"
    assert type(host.pm.get_plugin("stateful")).__name__ == "Counter"
    assert host.game_event(SESSION, "jump", {})[0].text == "a ball bounces 1"
    assert host.game_event(SESSION, "jump", {})[0].text == "a ball bounces 2"
