"""Make a float64 Hugging Face model compute in float64 throughout, for exactness tests.

transformers' RMSNorm (Llama, Qwen2, Qwen3, Mistral, ...) computes `hidden.to(torch.float32)` whatever the model
dtype, and eager attention takes its softmax in float32: a "float64" model is float32-accurate there. Two
computations that are equal in exact arithmetic but round differently (a prompt encoded once for G completions vs
G times, packed vs padded) then differ by ~1e-7 relative in their gradients, which hides real bugs below that
level and fails 1e-6 checks for no reason. `upcast_norms(model)` rebinds each such norm's `forward` to the same
formula computed in `promote_types(dtype, float32)` (float64 for float64, unchanged for float32/bf16). Use sdpa
attention (not eager) in float64 tests. Rotary tables stay float32-computed: they depend on positions only, so
they are the same in every layout.
"""
from __future__ import annotations

import types

import torch


def _rms_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    dtype = torch.promote_types(hidden_states.dtype, torch.float32)
    h = hidden_states.to(dtype)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
    return self.weight * h.to(hidden_states.dtype)


def upcast_norms(model: torch.nn.Module) -> int:
    """Rebind the forward of every Llama-style RMSNorm (`weight * x / rms(x)`, attribute `variance_epsilon`) of
    `model`; returns how many. Other norms (Gemma's `1 + weight`, LayerNorm) are left as they are."""
    count = 0
    for module in model.modules():
        name = type(module).__name__
        if name.endswith("RMSNorm") and not name.startswith("Gemma") and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_rms_forward, module)
            count += 1
    return count
