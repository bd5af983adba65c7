"""Field checks: each turns a decoded msgpack value into a typed Python value or raises.

A check is declared once, beside the field it guards (see messages.py), and runs both when
a message is decoded and when one is encoded, so nothing invalid is ever sent either.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from protocol.constants import ErrorCode
from protocol.errors import ProtocolError

Check = Callable[[str, Any], Any]  # (field name, raw value) -> normalized value

_PLAIN_SCALARS = (type(None), bool, int, float, str, bytes)


def _kind(value: Any) -> str:
    """msgpack's name for a Python value, used in error messages."""
    names = {type(None): "nil", bool: "boolean", int: "integer", float: "float", str: "string",
             bytes: "binary", list: "array", tuple: "array", dict: "map"}
    return names.get(type(value), type(value).__name__)


def _bad(name: str, expected: str, value: Any, code: ErrorCode = ErrorCode.BAD_FIELD) -> ProtocolError:
    return ProtocolError(code, f"field '{name}' must be {expected}, got {_kind(value)} {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def text(max_chars: int, *, pattern: str | None = None, allow_empty: bool = False,
         too_long: ErrorCode = ErrorCode.BAD_FIELD) -> Check:
    """A UTF-8 string of at most `max_chars` characters, optionally matching `pattern`."""
    compiled = re.compile(pattern) if pattern else None

    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise _bad(name, "a string", value)
        if not value and not allow_empty:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"field '{name}' must not be empty")
        if len(value) > max_chars:
            raise ProtocolError(too_long, f"field '{name}' has {len(value)} characters; the limit is {max_chars}")
        if compiled is not None and not compiled.fullmatch(value):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"field '{name}' must match {pattern}, got {_short(value)}")
        return value

    return check


def integer(lo: int, hi: int) -> Check:
    """An integer in [lo, hi]; booleans are refused although Python treats them as ints."""

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(name, f"an integer in [{lo}, {hi}]", value)
        if not lo <= value <= hi:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"field '{name}' must be in [{lo}, {hi}], got {value}")
        return value

    return check


def number(lo: float, hi: float) -> Check:
    """A finite number in [lo, hi]; integers are accepted and become floats."""

    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(name, f"a number in [{lo}, {hi}]", value)
        result = float(value)
        if not math.isfinite(result) or not lo <= result <= hi:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"field '{name}' must be a finite number in [{lo}, {hi}], got {value}")
        return result

    return check


def boolean() -> Check:
    def check(name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _bad(name, "a boolean", value)
        return value

    return check


def choice(options: Sequence[str]) -> Check:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise _bad(name, "one of " + ", ".join(repr(o) for o in options), value)
        return value

    return check


def plain_map(max_depth: int) -> Check:
    """A map with string keys whose values are plain msgpack data (no extension types), at
    most `max_depth` containers deep counting the map itself (scalars add no level); game
    payloads are forwarded to plugins as-is. The codec has already bounded the nesting of
    the whole body (MAX_NESTING), so this recursion is shallow."""

    def walk(name: str, value: Any, depth: int) -> None:
        if isinstance(value, dict) or type(value) in (list, tuple):  # exact: msgpack's ExtType is a namedtuple
            if depth > max_depth:
                raise ProtocolError(ErrorCode.BAD_FIELD, f"field '{name}' is nested deeper than {max_depth} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise ProtocolError(ErrorCode.MALFORMED, f"field '{name}' has a non-string map key {_short(key)}")
                    walk(name, item, depth + 1)
            else:
                for item in value:
                    walk(name, item, depth + 1)
        elif not isinstance(value, _PLAIN_SCALARS) or (isinstance(value, float) and not math.isfinite(value)):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"field '{name}' holds a value msgpack plain data cannot carry: {_short(value)}")

    def check(name: str, value: Any) -> dict:
        if not isinstance(value, dict):
            raise _bad(name, "a map", value)
        walk(name, value, 1)
        return value

    return check


def int_list(length: int, lo: int, hi: int) -> Check:
    """A fixed-length array of bounded integers (frame shapes); returned as a tuple."""
    item = integer(lo, hi)

    def check(name: str, value: Any) -> tuple[int, ...]:
        if not isinstance(value, (list, tuple)) or len(value) != length:
            raise _bad(name, f"an array of {length} integers", value)
        return tuple(item(name, v) for v in value)

    return check


def text_list(max_items: int, item: Check) -> Check:
    """An array of strings, each checked by `item`; returned as a tuple."""

    def check(name: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)) or len(value) > max_items:
            raise _bad(name, f"an array of at most {max_items} strings", value)
        return tuple(item(name, v) for v in value)

    return check


def optional(inner: Check) -> Check:
    """nil, or a value `inner` accepts."""

    def check(name: str, value: Any) -> Any:
        return None if value is None else inner(name, value)

    return check


def spec(check: Check, default: Any = dataclasses.MISSING) -> Any:
    """Declare a message field with its check; a field without a default is required."""
    if isinstance(default, (dict, list)):
        frozen = default
        return dataclasses.field(default_factory=lambda: type(frozen)(frozen), metadata={"check": check})
    return dataclasses.field(default=default, metadata={"check": check})
