"""Swap transformers' RMSNorm modules for `torch.nn.functional.rms_norm` (one fused kernel, forward and backward).

transformers writes RMSNorm as five tensor operations (cast, pow, mean, rsqrt-multiply, weight-multiply), each a
pass over the activations with its own backward. On CPU that is ~5% of a GRPO update on
`scripts/bench_grpo_vs_trl.py`'s model; the fused kernel gives bit-identical float32 values and gradients
(tested). Only the classes listed below are swapped, whose formula is exactly `weight * x / rms(x)` (Gemma's
`1 + weight` variant is not), and only for float32 inputs; anything else runs the module's own forward.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

FUSABLE = ("LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm")


def _fused_forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    if hidden_states.dtype != torch.float32 or self.weight.dtype != torch.float32:
        return type(self).forward(self, hidden_states)
    return F.rms_norm(hidden_states, (hidden_states.shape[-1],), self.weight, self.variance_epsilon)


def fuse_rms_norms(model: nn.Module) -> int:
    """Patch every RMSNorm of a listed class in `model` (instance attribute; the class is untouched).
    Returns how many were patched."""
    count = 0
    for module in model.modules():
        if type(module).__name__ in FUSABLE and not getattr(module, "_reasoner_fused", False):
            module.forward = types.MethodType(_fused_forward, module)   # bound: deepcopy rebinds it
            module._reasoner_fused = True
            count += 1
    return count
