"""Admission of control events: per-client rate limits and idempotent resends.

Both are pure bookkeeping with the time passed in, so they are tested without sockets.
"""

from __future__ import annotations

from collections import OrderedDict


class RateLimiter:
    """One token bucket per sender, holding at most `burst` tokens and refilled at `rate` per
    second; a message costs one. The sender key is the CURVE key when there is one, else the
    connection the message came on (SPEC.md section 6).
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


Encoded = list[bytes]  # a daemon message as sent: [topic, body]


class RecentEvents:
    """Event ids and what they were answered with, so that a resent event is never executed
    twice and a lost answer can be sent again. Pending ids (accepted, not yet finally
    answered) are kept until answered, whatever their number (the daemon bounds them per
    session); of the answered ones, the last `capacity` are kept. Each unanswered id also
    knows the connection its answers go to: the one that sent it last (a controller that
    reconnected resends on its new connection)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._pending: dict[str, list[Encoded]] = {}  # id -> its `accepted` ack (or nothing yet)
        self._answers: OrderedDict[str, list[Encoded]] = OrderedDict()
        self._routes: dict[str, bytes] = {}  # unanswered id -> connection of its latest sender

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._pending or event_id in self._answers

    def __len__(self) -> int:
        return len(self._pending) + len(self._answers)

    def answers(self, event_id: str) -> list[Encoded]:
        """What to publish again for a resend: the final answer, or the `accepted` ack."""
        if event_id in self._pending:
            return self._pending[event_id]
        return self._answers[event_id]

    def admitted(self, event_id: str, route: bytes) -> None:
        """A new event from connection `route`: its answers go there until it is answered."""
        self._routes[event_id] = route

    def resent(self, event_id: str, route: bytes) -> None:
        """A resend: a still unanswered event's answers follow it to its new connection."""
        if event_id in self._routes:
            self._routes[event_id] = route

    def route(self, event_id: str) -> bytes | None:
        return self._routes.get(event_id)

    def pending(self, event_id: str, accepted: Encoded | None = None) -> None:
        self._pending[event_id] = [] if accepted is None else [accepted]

    def answered(self, event_id: str, messages: list[Encoded]) -> None:
        self._pending.pop(event_id, None)
        self._routes.pop(event_id, None)
        self._answers.pop(event_id, None)
        self._answers[event_id] = messages
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)
