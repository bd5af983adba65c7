"""The plugin contract: every hook a LongLive plugin may implement.

This module *is* the documented contract (docs/PLUGINS.md explains it with examples). A
plugin is any module or object with functions named like the hooks below and marked with
``@hookimpl``; it implements only the hooks it needs and may ask for any subset of a hook's
arguments, by name. A module whose hooks are methods of one object names that object
``longlive_plugin``; the host registers it instead of the module.

Every hook is named ``longlive_<what>`` (greppable, no clash with other pluggy projects);
calls are keyword-only.

Two kinds of hooks, and the thread each runs on:

* **Decision hooks** (``longlive_configure``, ``longlive_register_models``,
  ``longlive_rewrite_prompt``, ``longlive_game_event``) run synchronously on the daemon's loop thread, between two blocks, because their answer
  decides what the stream shows. They must return quickly (well under a block, ~100 ms for
  the toy model): a slow decision hook delays the next block of every session.
* **Observer hooks** (``longlive_daemon_started``, ``longlive_session_opened``,
  ``longlive_session_status``, ``longlive_event_acked``, ``longlive_frames``,
  ``longlive_session_closed``, ``longlive_daemon_stopping``) never run on the loop.
  Each observing plugin has its own worker thread and queue; its notes arrive there in the
  order they happened. Generation never waits for an observer: when a plugin falls more than
  ``OBSERVER_QUEUE_BLOCKS`` blocks of frames behind, further ``longlive_frames`` notes for it are
  dropped (counted per plugin and reported in status as ``observations_dropped``); lifecycle
  notes (opened, acked, closed, stopping) are never dropped.

Failure: a plugin that fails to import, or raises in any hook, is logged once with its name
and traceback, unregistered, and listed as disabled; the daemon and every session carry on.
A decision hook that raised counts as having declined (the prompt is kept as it was, the game
event is acknowledged without a frame). To say *no* on purpose, raise ``Refused``: the sender
gets an error with its message (``EVENT_REFUSED`` for a game event, ``BAD_PROMPT`` for a
rewrite) and the plugin stays enabled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import numpy as np

PROJECT = "longlive"
ENTRY_POINT_GROUP = "longlive.plugins"
OBSERVER_QUEUE_BLOCKS = 64  # frames notes one observer may fall behind before its notes are dropped

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Refused(ValueError):
    """Raised by a decision hook to refuse an event with a reason the sender should see."""


@dataclass(frozen=True)
class SessionInfo:
    """What a plugin may know of a session. Immutable: plugins steer through return values
    and the protocol, never by reaching into the daemon."""

    name: str
    model: str
    fps: float
    frame_shape: tuple[int, int]  # (height, width) of the frames
    seed: int
    frames_per_block: int
    # Raises ValueError naming the problem when the model cannot take a prompt or would read only
    # part of it (the toy model serves prompts with unknown words ignored; this names them), so a
    # plugin can check its output before returning it.
    check_prompt: Callable[[str], None] = field(default=lambda text: None, compare=False, repr=False)


@dataclass(frozen=True)
class EventInfo:
    """The controller event a prompt comes from (for ``longlive_rewrite_prompt``)."""

    id: str
    type: str  # 'open', 'prompt' or 'event'
    client: str | None = None
    name: str | None = None  # the game event's name, for type 'event'
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptChange:
    """A game event's effect: switch to ``text`` with ``transition`` at the first block boundary
    at or after ``at_frame`` (None: the next one). ``blend_blocks`` is required for 'blend'."""

    text: str
    transition: str = "recache"
    at_frame: int | None = None
    blend_blocks: int | None = None


@dataclass(frozen=True)
class AckInfo:
    """An event's final answer, as sent to controllers, plus what it changed.

    ``frame`` is the first frame that reflects the event (None when it shows in no frame);
    for a prompt change ``text`` (after rewriting), ``transition`` and ``source`` ('prompt',
    'event' or 'open') say what took effect there."""

    event_id: str
    event_type: str
    status: str  # 'applied' or 'superseded', as on the wire
    frame: int | None
    text: str | None = None
    transition: str | None = None
    source: str | None = None
    latency_ms: float | None = None  # receipt -> due time of `frame`, for prompt changes


@dataclass(frozen=True)
class DaemonInfo:
    """The daemon as plugins see it at start: where it listens and what it serves."""

    model: str
    control: str
    stream: str
    plugins: tuple[str, ...]


# ---------------------------------------------------------------- decision hooks (loop thread)


@hookspec
def longlive_configure(config: Mapping[str, Any]) -> None:
    """Called once, right after the plugin is registered, with the whole ``--plugin-config``
    TOML document (empty without one). By convention a plugin reads the table named after it
    (``config.get("recorder", {})``). Raise ``ValueError`` with a clear message to refuse a
    bad setting: the plugin is then disabled and the daemon starts without it."""


@hookspec
def longlive_register_models(registry: Any) -> None:
    """Add models with ``registry.add(name, builder)``, where ``builder(device=, dtype=,
    weights=, max_streams=, **options)`` returns a ``runtime.pipeline.Pipeline``. Called when
    a model is first looked up; the built-in models register through this hook too."""


@hookspec
def longlive_rewrite_prompt(session: SessionInfo, text: str, event: EventInfo) -> str | None:
    """Rewrite a prompt before it is encoded. Chained: each plugin receives the previous
    plugin's result (most recently registered first); return None to leave the text as it is.
    The result must be a non-empty string the model can encode, or the event is refused with
    BAD_PROMPT naming the plugin."""


@hookspec(firstresult=True)
def longlive_game_event(session: SessionInfo, name: str, payload: Mapping[str, Any]) -> PromptChange | str | None:
    """Turn a named game event into a prompt change (a ``PromptChange``, or a plain string
    meaning a ``recache`` switch at the next boundary), or return None to decline. The first
    plugin that answers wins. The event's ack then carries the frame the change took effect
    at, exactly as for a ``prompt``; when every plugin declines it is acked with no frame."""


# ---------------------------------------------------------------- observer hooks (worker threads)


@hookspec
def longlive_daemon_started(daemon: DaemonInfo) -> None:
    """The daemon is bound and about to serve."""


@hookspec
def longlive_session_opened(session: SessionInfo, prompt: str) -> None:
    """A session exists; its first frame will be frame 0 under ``prompt``."""


@hookspec
def longlive_session_status(session: SessionInfo, status: Mapping[str, Any]) -> None:
    """About once per status period: the session's figures (fps_measured, frames_late,
    cache_fill, latency_ms, frame, pending_events, observations_dropped, ...), the same as
    the protocol's status message."""


@hookspec
def longlive_event_acked(session: SessionInfo, ack: AckInfo) -> None:
    """An event of this session got its final answer (after any frames it names were
    delivered to ``longlive_frames``)."""


@hookspec
def longlive_frames(session: SessionInfo, first_index: int, frames: np.ndarray, prompt_id: str | None) -> None:
    """A block of decoded frames, uint8 ``[n, H, W, 3]``, numbered from ``first_index``;
    ``prompt_id`` is the event whose prompt was in effect. The array is the plugin's own
    (read-only) copy. May be dropped when this plugin falls behind (see module docstring)."""


@hookspec
def longlive_session_closed(session: SessionInfo, frames: int) -> None:
    """The session ended after ``frames`` frames (closed by a client, or the daemon stopping)."""


@hookspec
def longlive_daemon_stopping() -> None:
    """The daemon is stopping (signal or ``stop()``); flush and close. Sessions still open
    have already been reported closed."""
