"""Prompt encodings, made once per text and kept for a while.

The daemon encodes a prompt only when it wins its block boundary, on the generation worker
(never on the loop that reads control messages). Games alternate between a few prompts, so
a small least-recently-used cache makes most switches free; it is bounded in entries, and
so in memory (an encoding of the 1.3B model's UMT5 is about 8 MB).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class PromptCache:
    def __init__(self, encode: Callable[[str], Any], size: int = 8) -> None:
        self._encode, self.size = encode, size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()  # the worker encodes; plugins' check_prompt may run on the loop
        self.encoded = 0  # encoder calls so far (cache misses)

    def get(self, text: str) -> Any:
        """The encoding of `text`; raises what the encoder raises (PromptError for a bad text)."""
        with self._lock:
            if text in self._items:
                self._items.move_to_end(text)
                return self._items[text]
        cond = self._encode(text)
        with self._lock:
            self.encoded += 1
            self._items[text] = cond
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return cond
