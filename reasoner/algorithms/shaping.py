"""Reward shaping on sequence lengths.

`overlong_penalty` is DAPO's soft overlong punishment (Yu et al., 2025, eq. 13): no penalty up to
`max_length − buffer` tokens, then a linear ramp down to `−penalty` at `max_length`, and `−penalty` beyond.
"""
from __future__ import annotations

import torch


def overlong_penalty(lengths: torch.Tensor, *, max_length: int, buffer: int, penalty: float = 1.0) -> torch.Tensor:
    """lengths [N] (response tokens) -> additive reward [N], in [−penalty, 0]."""
    if buffer <= 0 or buffer > max_length:
        raise ValueError(f"overlong buffer must be in [1, max_length={max_length}], got {buffer}")
    lengths = lengths.to(torch.float32)
    start = max_length - buffer
    ramp = (start - lengths) / buffer
    return penalty * torch.where(lengths <= start, torch.zeros_like(lengths), ramp.clamp(min=-1.0))
