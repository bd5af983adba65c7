"""The UMT5 tokenizer of Wan2.1, read from the local ``google/umt5-xxl/`` folder.

Uses the ``tokenizers`` library directly on ``tokenizer.json`` (what ``transformers``'
fast T5 tokenizer wraps), so the runtime needs no ``transformers``. Prompts are cleaned like
the reference (ftfy, double HTML unescape, whitespace collapse), then tokenized with the
file's post-processor (appends ``</s>``), truncated and right-padded to ``seq_len``.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Sequence

import ftfy
import torch
from tokenizers import Tokenizer

from runtime.wan.errors import CheckpointError

TOKENIZER_FILE = "tokenizer.json"


def clean_prompt(text: str) -> str:
    """The reference's ``whitespace_clean(basic_clean(text))``."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def _pad_token(folder: Path) -> str:
    """The pad token named by the folder's config files; ``<pad>`` for T5 otherwise."""
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8")).get("pad_token")
            except (json.JSONDecodeError, AttributeError) as exc:
                raise CheckpointError(path, f"is not a JSON object ({exc})") from None
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                return value
    return "<pad>"


class UMT5Tokenizer:
    """Prompts -> (ids, mask), both int64 [B, seq_len]; mask is 1 on real tokens (EOS included)."""

    def __init__(self, folder: str | Path, seq_len: int = 512):
        self.folder = Path(folder)
        path = self.folder / TOKENIZER_FILE
        if not path.is_file():
            raise CheckpointError(path, "missing: the UMT5 tokenizer folder must hold the "
                                  "Hugging Face tokenizer.json (google/umt5-xxl)")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the library raises a bare Exception on malformed files
            raise CheckpointError(path, f"cannot be read as a tokenizers file ({exc})") from None
        pad = _pad_token(self.folder)
        pad_id = tok.token_to_id(pad)
        if pad_id is None:
            raise CheckpointError(path, f"the vocabulary has no pad token {pad!r}")
        tok.enable_truncation(max_length=seq_len)
        tok.enable_padding(length=seq_len, pad_id=pad_id, pad_token=pad)
        self.seq_len = seq_len
        self.pad_id = pad_id
        self.vocab_size = tok.get_vocab_size()
        self._tok = tok

    def __call__(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(prompts, str):
            prompts = [prompts]
        encs = self._tok.encode_batch([clean_prompt(p) for p in prompts], add_special_tokens=True)
        ids = torch.tensor([e.ids for e in encs], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encs], dtype=torch.long)
        return ids, mask
