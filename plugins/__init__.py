"""LongLive plugins: the hook contract (``hookspecs``), the host that loads and calls plugins
(``host``), and the built-in plugins (recorder, composer, OSC bridge, metrics).

A plugin needs only this import::

    from plugins import hookimpl, PromptChange
"""

from plugins.hookspecs import AckInfo, DaemonInfo, EventInfo, PromptChange, Refused, SessionInfo, hookimpl

__all__ = ["AckInfo", "DaemonInfo", "EventInfo", "PromptChange", "Refused", "SessionInfo", "hookimpl"]
