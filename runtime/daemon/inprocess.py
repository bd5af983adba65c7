"""A daemon on a background thread, for tests and notebooks that need a live one quickly.

`longlive serve` runs the loop on the main thread; this helper exists because starting a
process per test costs seconds of imports and model loading. The daemon still runs its one
loop on one thread; the caller's thread only asks it to stop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from plugins.host import PluginHost
from runtime.daemon.daemon import Daemon, DaemonConfig
from runtime.pipeline import Pipeline


@contextmanager
def serve_in_thread(pipe: Pipeline, config: DaemonConfig = DaemonConfig(),
                    plugins: PluginHost | None = None) -> Iterator[Daemon]:
    """Yields the running daemon; `daemon.endpoints` are the bound endpoints (tcp ports
    resolved when the config asked for `tcp://127.0.0.1:*`). The daemon closes ``plugins`` when it stops."""
    daemon = Daemon(pipe, config, plugins=plugins)
    thread = threading.Thread(target=daemon.run, name="longlive-daemon", daemon=True)
    thread.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        thread.join(timeout=60)
        if thread.is_alive():
            raise RuntimeError("the daemon thread did not stop within 60 s")
