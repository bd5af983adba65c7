"""LongLive's LoRA on the causal Wan DiT: target names, PEFT key names, merge and wrapper.

LongLive v1.0 wraps every ``nn.Linear`` inside each transformer block with a PEFT LoRA of
rank 256 and alpha 256 (scaling 1.0): ``blocks.N.{self_attn,cross_attn}.{q,k,v,o}``,
``blocks.N.ffn.0`` and ``blocks.N.ffn.2``, 300 Linears on the 30-block model (spec §4.4).
``lora.pt`` stores them under PEFT names, ``base_model.model.<name>.lora_{A,B}.weight``.

Two ways to apply it, chosen explicitly by the caller:

* merged (default): W' = W + scaling * B @ A, computed in float32 from the float32 files
  and rounded once to the run dtype. Fast (no extra matmuls) but not bit-identical to the
  reference, which runs the adapter unmerged in bf16.
* unmerged: ``LoRALinear`` computes base(x) + B(A(x)) * scaling with every term in the
  weights' dtype, exactly the PEFT forward the reference runs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LORA_RANK = 256
LORA_ALPHA = 256
PEFT_PREFIX = "base_model.model."  # what peft.get_peft_model_state_dict puts before module names


def lora_targets(model: nn.Module) -> list[str]:
    """Names of the Linears LongLive adapts: every nn.Linear inside ``blocks.N`` (in module order)."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(f"{type(model).__name__} has no 'blocks' ModuleList to put LoRA on")
    return [f"blocks.{name}" for name, m in blocks.named_modules() if isinstance(m, nn.Linear)]


def lora_key(target: str, which: str) -> str:
    """PEFT file key of one adapter matrix: ``which`` is 'A' (down, [r, in]) or 'B' (up, [out, r])."""
    return f"{PEFT_PREFIX}{target}.lora_{which}.weight"


def expected_lora_shapes(model: nn.Module, rank: int = LORA_RANK) -> dict[str, tuple[int, ...]]:
    """Every key a LongLive LoRA file must hold for ``model``, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for target in lora_targets(model):
        linear = model.get_submodule(target)
        shapes[lora_key(target, "A")] = (rank, linear.in_features)
        shapes[lora_key(target, "B")] = (linear.out_features, rank)
    return shapes


def merged_weight(weight: Tensor, lora_a: Tensor, lora_b: Tensor, scaling: float) -> Tensor:
    """W + scaling * B @ A in float32 ([out, in] + [out, r] @ [r, in]); the caller rounds once."""
    w = weight.float()
    return torch.addmm(w, lora_b.float(), lora_a.float(), alpha=scaling)


class LoRALinear(nn.Module):
    """PEFT's unmerged LoRA forward: base(x) + lora_B(lora_A(x)) * scaling.

    Each matmul is rounded to the weights' dtype on its own and then summed, as the
    reference does in bf16; that is what makes this mode bit-faithful where merging is not.
    """

    def __init__(self, base_layer: nn.Linear, lora_a: Tensor, lora_b: Tensor, scaling: float):
        super().__init__()
        rank = lora_a.shape[0]
        if lora_a.shape != (rank, base_layer.in_features) or lora_b.shape != (base_layer.out_features, rank):
            raise ValueError(f"LoRA shapes A{tuple(lora_a.shape)} B{tuple(lora_b.shape)} do not fit "
                             f"Linear({base_layer.in_features}, {base_layer.out_features})")
        self.base_layer = base_layer
        dev = base_layer.weight.device
        with torch.device("meta"):  # no throwaway init; weights are assigned just below
            self.lora_A = nn.Linear(base_layer.in_features, rank, bias=False)
            self.lora_B = nn.Linear(rank, base_layer.out_features, bias=False)
        self.lora_A.weight = nn.Parameter(lora_a.to(dev), requires_grad=False)
        self.lora_B.weight = nn.Parameter(lora_b.to(dev), requires_grad=False)
        self.scaling = scaling

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def weight(self) -> Tensor:
        """The base weight, for code that reads ``.weight.dtype``/``.device`` off a Linear."""
        return self.base_layer.weight

    @property
    def bias(self) -> Tensor | None:
        return self.base_layer.bias

    def forward(self, x: Tensor) -> Tensor:
        y = self.base_layer(x)
        return y + self.lora_B(self.lora_A(x.to(self.lora_A.weight.dtype))) * self.scaling


def wrap_unmerged(model: nn.Module, adapters: dict[str, tuple[Tensor, Tensor]], scaling: float) -> None:
    """Replaces each target Linear in place by a LoRALinear around it; adapters[target] = (A, B)."""
    for target, (lora_a, lora_b) in adapters.items():
        parent_name, _, child = target.rpartition(".")
        parent = model.get_submodule(parent_name)
        base = getattr(parent, child)
        if not isinstance(base, nn.Linear):
            raise TypeError(f"{target} is a {type(base).__name__}, not an nn.Linear")
        setattr(parent, child, LoRALinear(base, lora_a, lora_b, scaling))
