"""What the viewers want, as seen through the stream XPUB socket.

With ZMQ_XPUB_VERBOSER the socket reports every subscribe and every unsubscribe (including
the ones ZeroMQ generates when a subscriber disconnects), so a count per prefix is exact.
The daemon uses it to encode only the frame encodings someone subscribed to, and to greet
new status subscribers with the current state.
"""

from __future__ import annotations

from collections import Counter


class Subscriptions:
    def __init__(self) -> None:
        self._count: Counter[bytes] = Counter()

    def update(self, event: bytes) -> bytes | None:
        """Apply one XPUB event (b'\\x01' + prefix or b'\\x00' + prefix); returns the prefix
        if it was a new subscription, else None."""
        if not event:
            return None
        kind, prefix = event[0], event[1:]
        if kind == 1:
            self._count[prefix] += 1
            return prefix
        if kind == 0 and self._count[prefix] > 0:
            self._count[prefix] -= 1
            if not self._count[prefix]:
                del self._count[prefix]
        return None

    def wants(self, topic: bytes) -> bool:
        """True if some subscriber would receive a message with this topic."""
        return any(topic.startswith(prefix) for prefix in self._count)
