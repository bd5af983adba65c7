"""Loads plugins and calls their hooks the way ``plugins.hookspecs`` promises.

The host owns a pluggy ``PluginManager`` but calls implementations one by one itself, so that
a plugin that raises is named, logged once, unregistered, and the others still run. Observer
hooks go through one worker thread and bounded queue per observing plugin, so the daemon's
loop never waits for them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import queue
import sys
import threading
import tomllib
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pluggy

from plugins import hookspecs
from plugins.hookspecs import OBSERVER_QUEUE_BLOCKS, PromptChange, Refused

log = logging.getLogger("longlive.plugins")

BUILTIN_MODELS = "runtime.models"  # registers random-small, toy and longlive-1.3b
BUILTINS = {  # short names accepted by --plugin and the config file's `enable` list
    "recorder": "plugins.recorder",
    "composer": "plugins.composer",
    "osc": "plugins.osc",
    "metrics": "plugins.metrics",
}
OBSERVER_HOOKS = ("daemon_started", "session_opened", "session_status", "event_acked", "frames",
                  "session_closed", "daemon_stopping")  # hook names without the longlive_ prefix
PLUGIN_ATTRIBUTE = "longlive_plugin"  # a module's hook-carrying object, registered instead of the module
_STOP = object()


class PluginError(ValueError):
    """A plugin could not be found or loaded; the message names it."""


def read_config(path: str | Path | None) -> dict[str, Any]:
    """The ``--plugin-config`` TOML document (empty without a file)."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise PluginError(f"cannot read plugin config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PluginError(f"plugin config {path} is not valid TOML: {exc}") from None


class _Observer:
    """One plugin's worker thread and queue of observer notes."""

    def __init__(self, host: PluginHost, name: str, limit: int) -> None:
        self.host, self.name, self.limit = host, name, limit
        self.queue: queue.Queue = queue.Queue()
        self.frames_queued = 0  # frames notes in the queue, at most `limit`
        self.dropped = 0
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"plugin-{name}", daemon=True)
        self.thread.start()

    def put(self, hook: str, kwargs: dict[str, Any]) -> None:
        if hook == "frames":
            with self._lock:
                if self.frames_queued >= self.limit:
                    self.dropped += 1
                    return
                self.frames_queued += 1
        self.queue.put((hook, kwargs))

    def _run(self) -> None:
        while (item := self.queue.get()) is not _STOP:
            hook, kwargs = item
            if hook == "frames":
                with self._lock:
                    self.frames_queued -= 1
            self.host._call_plugin(self.name, hook, kwargs)

    def stop(self, timeout: float) -> bool:
        """Finish the queued notes (up to ``timeout`` seconds); False if the worker is stuck."""
        self.queue.put(_STOP)
        self.thread.join(timeout)
        return not self.thread.is_alive()


class PluginHost:
    """The daemon's (or a pipeline's) set of plugins. Not thread-safe: call it from one thread
    (the daemon's loop); observer hooks are dispatched to the plugins' own threads."""

    def __init__(self, config: Mapping[str, Any] | None = None, *, builtin_models: bool = True,
                 observer_queue_blocks: int = OBSERVER_QUEUE_BLOCKS) -> None:
        self.config: Mapping[str, Any] = config or {}
        self.observer_queue_blocks = observer_queue_blocks
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.disabled: dict[str, str] = {}  # plugin name -> why
        self._observers: dict[str, _Observer] = {}
        self._retired_drops = 0  # drops of observers since stopped or disabled
        self._lock = threading.Lock()  # observer threads may disable a plugin concurrently
        if builtin_models:
            self.load(BUILTIN_MODELS, name="models")

    # ------------------------------------------------------------ loading

    @property
    def names(self) -> tuple[str, ...]:
        """Active plugins, in registration order."""
        return tuple(name for name, _ in self.pm.list_name_plugin())

    def load(self, spec: str, name: str | None = None) -> str | None:
        """Load a plugin by built-in short name, importable module name, or ``.py`` file path,
        register it and call its ``configure``. Returns its name, or None when it failed (the
        failure is logged and listed in ``disabled``)."""
        if name is None:
            name = Path(spec).stem if spec.endswith(".py") else spec
        try:
            plugin = _plugin_object(_import(BUILTINS.get(spec, spec)))
        except Exception as exc:
            self._disable(name, f"failed to load: {exc}", exc)
            return None
        return self.register(plugin, name)

    def load_entry_points(self) -> list[str]:
        """Load every plugin installed under the ``longlive.plugins`` entry-point group."""
        loaded = []
        for entry in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            try:
                plugin = _plugin_object(entry.load())
            except Exception as exc:
                self._disable(entry.name, f"entry point {entry.value} failed to load: {exc}", exc)
                continue
            if (name := self.register(plugin, entry.name)) is not None:
                loaded.append(name)
        return loaded

    def enable_from_config(self) -> list[str]:
        """Load the plugins listed in the config's ``[plugins] enable = [...]``."""
        enable = self.config.get("plugins", {}).get("enable", [])
        if not isinstance(enable, list) or not all(isinstance(s, str) for s in enable):
            raise PluginError("[plugins] enable must be a list of plugin names, modules or files")
        return [n for spec in enable if (n := self.load(spec)) is not None]

    def register(self, plugin: object, name: str) -> str | None:
        if self.pm.has_plugin(name) or self.pm.is_registered(plugin):
            log.info("plugin %s is already loaded", name)
            return name
        try:
            self.pm.register(plugin, name)
        except Exception as exc:  # e.g. a hook with an argument the spec does not have
            self._disable(name, f"is not a valid plugin: {exc}", exc)
            return None
        if not self._call_plugin(name, "configure", {"config": self.config}):
            return None
        if any(self._impl(name, hook) for hook in OBSERVER_HOOKS):
            self._observers[name] = _Observer(self, name, self.observer_queue_blocks)
        log.info("plugin %s loaded", name)
        return name

    # ------------------------------------------------------------ decision hooks

    def register_models(self, registry: Any) -> None:
        self._call_all("register_models", {"registry": registry})

    def rewrite_prompt(self, session: hookspecs.SessionInfo, text: str, event: hookspecs.EventInfo) -> str:
        """The prompt after every ``rewrite_prompt`` in turn; a plugin's bad result is a ValueError
        naming it, a plugin's ``Refused`` passes through."""
        for name, impl in self._impls("rewrite_prompt"):
            ok, result = self._invoke(name, impl, {"session": session, "text": text, "event": event})
            if not ok or result is None:
                continue
            if not isinstance(result, str) or not result.strip():
                raise ValueError(f"plugin {name} rewrote the prompt to {result!r}, not a non-empty string")
            text = result
        return text

    def game_event(self, session: hookspecs.SessionInfo, name: str,
                   payload: Mapping[str, Any]) -> tuple[PromptChange | None, str | None]:
        """(the change the first answering plugin asks for, that plugin's name), or (None, None);
        a plugin's ``Refused`` passes through."""
        for plugin, impl in self._impls("game_event"):
            ok, result = self._invoke(plugin, impl, {"session": session, "name": name, "payload": payload})
            if not ok or result is None:
                continue
            if isinstance(result, str):
                result = PromptChange(result)
            if not isinstance(result, PromptChange):
                raise ValueError(f"plugin {plugin} answered event {name!r} with {type(result).__name__}, "
                                 f"not a PromptChange, a string or None")
            return result, plugin
        return None, None

    # ------------------------------------------------------------ observer hooks

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Queue an observer note for every plugin implementing ``hook``; returns at once."""
        for name, observer in list(self._observers.items()):
            if self._impl(name, hook) is not None:
                observer.put(hook, kwargs)

    def observes(self, hook: str) -> bool:
        """Whether any active plugin implements observer ``hook`` (so the caller may skip building its arguments)."""
        return any(self._impl(name, hook) is not None for name in list(self._observers))

    def observations_dropped(self) -> int:
        """Frames notes dropped so far, over every observer this host has had."""
        return self._retired_drops + sum(o.dropped for o in list(self._observers.values()))

    def close(self, timeout: float = 10.0) -> None:
        """Tell observers the daemon stops, let them finish their queues, and stop their threads."""
        self.notify("daemon_stopping")
        for name, observer in list(self._observers.items()):
            if not observer.stop(timeout):
                log.error("plugin %s did not finish its observer queue within %.0f s; abandoned", name, timeout)
            self._retired_drops += observer.dropped
        self._observers.clear()

    # ------------------------------------------------------------ calling, with isolation

    def _impl(self, name: str, hook: str) -> pluggy.HookImpl | None:
        plugin = self.pm.get_plugin(name)
        if plugin is None:
            return None
        return next((i for i in _caller(self.pm, hook).get_hookimpls() if i.plugin is plugin), None)

    def _impls(self, hook: str) -> list[tuple[str, pluggy.HookImpl]]:
        """(plugin name, implementation) in pluggy's call order (last registered first)."""
        return [(impl.plugin_name, impl) for impl in reversed(_caller(self.pm, hook).get_hookimpls())]

    def _call_all(self, hook: str, kwargs: dict[str, Any]) -> None:
        for name, impl in self._impls(hook):
            self._invoke(name, impl, kwargs)

    def _call_plugin(self, name: str, hook: str, kwargs: dict[str, Any]) -> bool:
        """Call one plugin's hook if it has one; False if the plugin raised (and is now disabled)."""
        impl = self._impl(name, hook)
        return impl is None or self._invoke(name, impl, kwargs)[0]

    def _invoke(self, name: str, impl: pluggy.HookImpl, kwargs: dict[str, Any]) -> tuple[bool, Any]:
        try:
            return True, impl.function(*(kwargs[arg] for arg in impl.argnames))
        except Refused as exc:  # a deliberate no: the caller answers the sender, the plugin stays
            raise Refused(f"plugin {name} refused: {exc}") from None
        except Exception as exc:
            self._disable(name, f"raised in {impl.function.__name__}: {type(exc).__name__}: {exc}", exc)
            return False, None

    def _disable(self, name: str, why: str, exc: BaseException) -> None:
        with self._lock:
            if name in self.disabled:
                return
            self.disabled[name] = why
            plugin = self.pm.get_plugin(name)
            if plugin is not None:
                self.pm.unregister(plugin, name)
            observer = self._observers.pop(name, None)
            if observer is not None:
                self._retired_drops += observer.dropped
        log.error("plugin %s %s; disabled, the daemon carries on without it\n%s", name, why,
                  "".join(traceback.format_exception(exc)).rstrip())
        if observer is not None:
            observer.queue.put(_STOP)  # its worker drains what is queued (now no-ops) and ends


def _caller(pm: pluggy.PluginManager, hook: str) -> pluggy.HookCaller:
    """The caller of ``longlive_<hook>``; the host's methods name hooks without the prefix."""
    return getattr(pm.hook, f"{hookspecs.PROJECT}_{hook}")


def _plugin_object(loaded: object) -> object:
    """What to register for a loaded module or entry point: its ``longlive_plugin`` object when it
    has one (a plugin whose hooks are methods of one instance), else the module itself."""
    return getattr(loaded, PLUGIN_ATTRIBUTE, loaded)


def _import(spec: str) -> object:
    """A module by dotted name, or a ``.py`` file by path."""
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec)
        if not path.is_file():
            raise PluginError(f"no plugin file {path}")
        module_name = f"longlive_plugin_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module
    return importlib.import_module(spec)
