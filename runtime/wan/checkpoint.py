"""Strict, low-memory loading of the official Wan2.1 / LongLive weight files.

Every loader here follows the same contract:

* every tensor the model expects is in the file, with the expected shape, and the file
  holds nothing else; otherwise a ``CheckpointError`` names the file, the key (as spelled
  in the file) and what was expected. There is no partial load.
* tensors are read lazily (``torch.load(mmap=True, weights_only=True)``, safetensors
  ``safe_open``) and converted to the run dtype/device one at a time, into a model built
  on the meta device and filled with ``load_state_dict(assign=True)``. At no point does a
  full float32 copy of a model sit in host memory.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch
from safetensors import safe_open
from torch import Tensor, nn

from runtime.wan.errors import CheckpointError

Shapes = Mapping[str, tuple[int, ...]]


class TensorFile:
    """Lazy, read-only view of the tensors of one checkpoint file under normalised key names.

    ``names`` maps each normalised key (the model's module path) to the key as stored, so
    errors can quote the file's own spelling.
    """

    def __init__(self, path: Path, tensors: Mapping[str, Tensor] | None, names: dict[str, str],
                 reader: Callable[[str], Tensor] | None = None,
                 shapes: dict[str, tuple[int, ...]] | None = None, prefix: str = ""):
        self.path = path
        self.prefix = prefix  # what was stripped from every stored key
        self._tensors = tensors
        self._reader = reader
        self._shapes = shapes
        self.names = names

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, section: str | None = None, strip: str | None = None,
             strip_required: bool = False, rename: Callable[[str], str] | None = None) -> "TensorFile":
        """Opens ``path`` (.safetensors or a torch pickle).

        section: the top-level dict entry holding the state dict (e.g. ``"generator"``);
            a pickle that is itself a flat state dict is accepted too.
        strip: key prefix removed when every key carries it (``model.``); with
            ``strip_required`` every key must carry it.
        rename: applied to each key after ``strip`` (spelling variants of one format).
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(path, "missing file")
        if path.suffix == ".safetensors":
            return cls._open_safetensors(path, strip, strip_required, rename)
        state = _torch_load(path)
        if section is not None and isinstance(state, dict) and section in state:
            state = state[section]
        if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
            top = sorted(map(str, state)) if isinstance(state, Mapping) else type(state).__name__
            want = f"a {section!r} entry or a flat state dict" if section else "a flat state dict"
            raise CheckpointError(path, f"expected {want} of tensors; top level holds {top}")
        names, prefix = _normalise(path, list(state), strip, strip_required, rename)
        return cls(path, state, names, prefix=prefix)

    @classmethod
    def _open_safetensors(cls, path: Path, strip: str | None, strip_required: bool,
                          rename: Callable[[str], str] | None) -> "TensorFile":
        try:
            handle = safe_open(str(path), framework="pt", device="cpu")
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise CheckpointError(path, f"not a readable safetensors file ({exc})") from None
        keys = list(handle.keys())
        shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in keys}
        names, prefix = _normalise(path, keys, strip, strip_required, rename)
        return cls(path, None, names, reader=handle.get_tensor, shapes=shapes, prefix=prefix)

    # -- access ----------------------------------------------------------------------------

    def __contains__(self, key: str) -> bool:
        return key in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def shape(self, key: str) -> tuple[int, ...]:
        stored = self.names[key]
        if self._shapes is not None:
            return self._shapes[stored]
        return tuple(self._tensors[stored].shape)

    def get(self, key: str) -> Tensor:
        """The tensor as stored (CPU, file dtype; memory-mapped where the format allows)."""
        stored = self.names[key]
        t = self._reader(stored) if self._reader is not None else self._tensors[stored]
        if not t.is_floating_point():
            raise CheckpointError(self.path, f"holds {t.dtype}, expected a floating-point tensor", stored)
        return t

    def check(self, expected: Shapes, what: str) -> None:
        """Exactly the keys of ``expected``, with those shapes; else a CheckpointError."""
        missing = [k for k in expected if k not in self.names]
        if missing:
            more = f" ({len(missing)} tensors missing in all)" if len(missing) > 1 else ""
            raise CheckpointError(self.path, f"missing; {what} needs it with shape "
                                  f"{list(expected[missing[0]])}{more}", self.prefix + missing[0])
        extra = [k for k in self.names if k not in expected]
        if extra:
            more = f" ({len(extra)} unexpected tensors in all)" if len(extra) > 1 else ""
            raise CheckpointError(self.path, f"unexpected tensor of shape {list(self.shape(extra[0]))}: "
                                  f"{what} has no such parameter{more}", self.names[extra[0]])
        for key, want in expected.items():
            got = self.shape(key)
            if got != tuple(want):
                raise CheckpointError(self.path, f"has shape {list(got)}, {what} expects {list(want)}",
                                      self.names[key])


def _torch_load(path: Path) -> object:
    """torch.load without executing pickled code, memory-mapped when the file allows it."""
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc) and "zip" not in str(exc):
            raise CheckpointError(path, f"cannot be read by torch.load ({exc})") from None
    # Legacy (pre-zip) pickles cannot be memory-mapped: read them whole, still weights-only.
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        raise CheckpointError(path, f"cannot be read by torch.load(weights_only=True) ({exc})") from None


def _normalise(path: Path, keys: list[str], strip: str | None, strip_required: bool,
               rename: Callable[[str], str] | None) -> tuple[dict[str, str], str]:
    """(normalised key -> stored key, prefix removed): ``strip`` goes when all keys carry it."""
    names, prefix = {k: k for k in keys}, ""
    if strip is not None:
        carrying = [k.startswith(strip) for k in keys]
        if keys and all(carrying):
            names, prefix = {k[len(strip):]: k for k in keys}, strip
        elif strip_required or any(carrying):
            odd = next(k for k, c in zip(keys, carrying) if not c)
            why = "required for this file" if strip_required else "some keys do, this one does not"
            raise CheckpointError(path, f"every key must start with {strip!r} ({why})", odd)
    if rename is not None:
        renamed: dict[str, str] = {}
        for key, stored in names.items():
            new = rename(key)
            if new in renamed:
                raise CheckpointError(path, f"two tensors both mean {new!r}", stored)
            renamed[new] = stored
        names = renamed
    return names, prefix


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """The state-dict keys and shapes of ``model`` (works on the meta device)."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def materialize(model: nn.Module, source: TensorFile, device: torch.device | str, dtype: torch.dtype,
                override: Callable[[str, Tensor], Tensor] | None = None) -> nn.Module:
    """Fills a meta-device ``model`` from ``source`` tensor by tensor; returns it in eval mode.

    ``override(key, tensor)`` may replace a tensor before conversion (the LoRA merge uses it).
    The caller has already run ``source.check``.
    """
    state: dict[str, Tensor] = {}
    for key in model.state_dict():
        t = source.get(key)
        if override is not None:
            t = override(key, t)
        state[key] = t.to(device=device, dtype=dtype)
    model.load_state_dict(state, strict=True, assign=True)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # a buffer outside the state dict would stay unallocated
        raise RuntimeError(f"{type(model).__name__} still has meta tensors after loading: {leftover[:3]}")
    return model.eval().requires_grad_(False)


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(path, "missing file")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(path, f"is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CheckpointError(path, "expected a JSON object at the top level")
    return value
