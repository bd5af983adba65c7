"""Protocol constants: the single source for every number and name that SPEC.md states.

SPEC.md quotes these values; tests/test_protocol_spec.py checks that the two agree, so a
change here without a matching change in the spec fails the suite.
"""

from __future__ import annotations

from enum import IntEnum

PROTOCOL_VERSION = 3
# Control bodies of these versions are accepted: version 2 changed only the daemon's answers
# (two acks instead of one) and version 3 only the control socket's type (answers come back
# on it), so an event body of an older version means the same thing (SPEC.md, Versions).
ACCEPTED_VERSIONS = (1, 2, 3)

DEFAULT_CONTROL_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_STREAM_ENDPOINT = "tcp://127.0.0.1:5556"
DEFAULT_SESSION = "main"

# Limits. A control message body above MAX_MESSAGE_BYTES is answered with TOO_LARGE; the
# socket itself refuses (and disconnects) senders above HARD_MESSAGE_BYTES so a hostile peer
# cannot make the daemon allocate without bound.
MAX_MESSAGE_BYTES = 64 * 1024
HARD_MESSAGE_BYTES = 1024 * 1024
MAX_PROMPT_CHARS = 2000
MAX_ID_CHARS = 128
MAX_NAME_CHARS = 64
MAX_WARNING_CHARS = 1000  # an ack's `warning`
MAX_EVENT_NAME_CHARS = 128
MAX_PAYLOAD_DEPTH = 16  # containers nested in an event payload, the payload map included
MAX_NESTING = 32  # containers nested in a whole body, the body map included; checked before any field
MAX_SEED = 2**63 - 1
MAX_BLEND_BLOCKS = 64
MAX_SIDE = 4096
MAX_FPS = 240.0
EVENTS_PER_SECOND = 100.0
EVENT_BURST = 200
MAX_SESSIONS = 8
MAX_PENDING_EVENTS = 64  # accepted events of one session not yet applied (scheduled prompts included)
MAX_SCHEDULE_FRAMES = 10_000  # at_frame may lie at most this many frames after the session's next frame
MAX_PLUGINS = 64  # names listed in a status message

# A session name becomes part of a topic, so it is restricted to characters that cannot
# collide with the topic separator.
NAME_PATTERN = r"[A-Za-z0-9_-]+"

HEARTBEAT_PERIOD_S = 1.0
HEARTBEAT_LIVENESS = 3  # heartbeats missed before a client may consider the daemon gone
STATUS_PERIOD_S = 2.0  # unsolicited status per session; also sent at once to new subscribers
CONTROL_READS_PER_TURN = 256  # control messages the daemon reads between two blocks at most
ANSWER_HWM = 10_000  # answers queued per controller connection before the daemon drops one
# The resend schedule SPEC section 6 recommends (the Python Controller, the OSC bridge and the
# soak's controllers follow it): first resend after RESEND_S, the wait doubling up to
# ACCEPTED_RESEND_S until `accepted`, then every ACCEPTED_RESEND_S until the final answer.
RESEND_S = 1.0
ACCEPTED_RESEND_S = 2.0
DUPLICATE_MEMORY = 65_536  # answered event ids remembered for resends; pending ids are kept until answered

TRANSITIONS = ("recache", "cut", "none", "blend")
IDLE_POLICIES = ("keep", "pause", "close")  # what a session does with no frame subscriber (open.idle)
IDLE_AFTER_S = 10.0  # default open.idle_after_s
ENCODINGS = ("raw", "jpeg")

# Stream topics (first frame of every message on the stream socket).
TOPIC_FRAME = "frame"
TOPIC_ACK = "ack"
TOPIC_ERROR = "error"
TOPIC_STATUS = "status"
TOPIC_HEARTBEAT = "heartbeat"
TOPIC_EVENT = "event"  # event.<session>: game events the daemon accepted, for listeners such as stories


class ErrorCode(IntEnum):
    """Numeric error codes: 1xx the message itself is bad, 2xx it does not fit the daemon's
    state, 3xx a capacity limit was hit, 5xx the daemon failed."""

    MALFORMED = 100
    BAD_VERSION = 101
    UNKNOWN_TYPE = 102
    MISSING_FIELD = 103
    BAD_FIELD = 104
    TOO_LARGE = 105
    PROMPT_TOO_LONG = 106
    UNKNOWN_SESSION = 200
    SESSION_EXISTS = 201
    BAD_PROMPT = 202
    UNKNOWN_MODEL = 203
    UNSUPPORTED = 204
    EVENT_REFUSED = 205
    TOO_MANY_SESSIONS = 300
    RATE_LIMITED = 301
    TOO_MANY_PENDING = 302
    TOO_FAR_AHEAD = 303
    INTERNAL = 500
