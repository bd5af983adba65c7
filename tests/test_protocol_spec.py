"""SPEC.md and protocol/constants.py state the same numbers (one source of truth, checked)."""

from __future__ import annotations

import re
from pathlib import Path

from protocol import constants as C
from protocol.constants import ErrorCode

SPEC = (Path(C.__file__).parent / "SPEC.md").read_text()


def test_version_is_the_shared_constant():
    assert f"**`PROTOCOL_VERSION = {C.PROTOCOL_VERSION}`**" in SPEC
    assert SPEC.startswith(f"# LongLive Runtime wire protocol — version {C.PROTOCOL_VERSION}\n")


def test_error_table_matches_codes():
    rows = dict(re.findall(r"^\| (\d{3}) \| `([A-Z_]+)` \|", SPEC, flags=re.M))
    assert {int(code): name for code, name in rows.items()} == {int(e): e.name for e in ErrorCode}


def test_limits_table_matches_constants():
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([\d.]+) \|", SPEC, flags=re.M)
    assert len(rows) >= 10
    for name, value in rows:
        assert float(getattr(C, name)) == float(value), name


def test_inline_constants_match():
    for name in ("DEFAULT_CONTROL_ENDPOINT", "DEFAULT_STREAM_ENDPOINT", "HEARTBEAT_PERIOD_S", "HEARTBEAT_LIVENESS",
                 "DUPLICATE_MEMORY", "NAME_PATTERN", "STATUS_PERIOD_S", "MAX_NESTING", "IDLE_AFTER_S",
                 "CONTROL_READS_PER_TURN", "ANSWER_HWM", "RESEND_S", "ACCEPTED_RESEND_S"):
        assert f"`{name} = {getattr(C, name)}`" in SPEC, name
    assert "`MAX_PROMPT_CHARS`" in SPEC


def test_every_limit_and_error_code_is_stated():
    """Each bound the daemon enforces has its own row (a constant without one fails here)."""
    limits = {name for name, _ in re.findall(r"^\| `([A-Z_]+)` \| ([\d.]+) \|", SPEC, flags=re.M)}
    assert {"MAX_PENDING_EVENTS", "MAX_SCHEDULE_FRAMES", "MAX_NESTING", "MAX_SESSIONS", "MAX_MESSAGE_BYTES",
            "MAX_PROMPT_CHARS", "EVENT_BURST", "EVENTS_PER_SECOND", "CONTROL_READS_PER_TURN", "ANSWER_HWM"} <= limits
    *first, last = map(str, C.ACCEPTED_VERSIONS)
    assert f"accepts `v` = {', '.join(first)} and {last}" in SPEC
