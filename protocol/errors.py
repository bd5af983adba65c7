"""The one exception the codec raises: everything a peer can get wrong maps to an error code."""

from __future__ import annotations

from protocol.constants import ErrorCode


class ProtocolError(Exception):
    """A message could not be accepted. `code` is what the daemon reports on the wire;
    `event_id` is the offending event's id when it could be read, so the sender can match
    the error to its request."""

    def __init__(self, code: ErrorCode, message: str, event_id: str | None = None) -> None:
        super().__init__(f"{code.name} ({int(code)}): {message}")
        self.code = ErrorCode(code)
        self.message = message
        self.event_id = event_id
