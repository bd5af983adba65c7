"""Admission of control events: per-client rate limits and idempotent resends.

Both are pure bookkeeping with the time passed in, so they are tested without sockets.
"""

from __future__ import annotations

from collections import OrderedDict

from protocol.messages import StreamMessage


class RateLimiter:
    """One token bucket per client name: `rate` events per second sustained, `burst` extra.
    The bucket table is bounded so that a stream of invented client names cannot grow it."""

    def __init__(self, rate: float, burst: int, max_clients: int = 1024) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, last time)

    def allow(self, client: str, now: float) -> bool:
        tokens, last = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)  # the least recently seen client starts afresh
        return allowed


PENDING = None  # an accepted event whose ack is not yet published


class RecentEvents:
    """The last `capacity` event ids and what they were answered with, so that a resent
    event is never executed twice and a lost answer can be published again."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._answers: OrderedDict[str, list[StreamMessage] | None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._answers

    def answers(self, event_id: str) -> list[StreamMessage] | None:
        """The messages that answered `event_id`, or None while it is pending."""
        return self._answers[event_id]

    def pending(self, event_id: str) -> None:
        self._set(event_id, PENDING)

    def answered(self, event_id: str, messages: list[StreamMessage]) -> None:
        self._set(event_id, messages)

    def _set(self, event_id: str, value: list[StreamMessage] | None) -> None:
        self._answers.pop(event_id, None)
        self._answers[event_id] = value
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)
