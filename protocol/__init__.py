"""LongLive wire protocol: constants, typed messages and the codec (pyzmq-free).

The client (protocol.client) needs pyzmq and numpy; importing this package needs only msgpack.
"""

from protocol.codec import decode_control, decode_stream, encode, topic_of
from protocol.constants import PROTOCOL_VERSION, ErrorCode
from protocol.errors import ProtocolError
from protocol.messages import (Ack, Close, ControlMessage, Error, EventNotice, Frame, GameEvent, Heartbeat,
                               Open, Pause, Prompt, Resume, Seed, Status, StatusRequest, StreamMessage)

__all__ = [
    "PROTOCOL_VERSION", "ErrorCode", "ProtocolError", "encode", "decode_control", "decode_stream",
    "topic_of", "ControlMessage", "StreamMessage", "Open", "Close", "Prompt", "Pause", "Resume",
    "Seed", "GameEvent", "StatusRequest", "Frame", "Ack", "Error", "Status", "Heartbeat", "EventNotice",
]
