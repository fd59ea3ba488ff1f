"""Reward shaping on sequence lengths.

`overlong_penalty` is DAPO's soft overlong punishment (Yu et al., 2025, eq. 13): no penalty up to
`max_length − buffer` tokens, then a linear ramp down to `−penalty` at `max_length`, and `−penalty` beyond.

`GROUP_REWARDS` holds the length rewards that need a whole group and the verdicts: Kimi k1.5's length penalty
(`length_penalty`) and open-r1's cosine-scaled reward (`cosine_length`); see the section below.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from reasoner.algorithms.registry import Registry


def overlong_penalty(lengths: torch.Tensor, *, max_length: int, buffer: int, penalty: float = 1.0) -> torch.Tensor:
    """lengths [N] (response tokens) -> additive reward [N], in [−penalty, 0]."""
    if buffer <= 0 or buffer > max_length:
        raise ValueError(f"overlong buffer must be in [1, max_length={max_length}], got {buffer}")
    lengths = lengths.to(torch.float32)
    start = max_length - buffer
    ramp = (start - lengths) / buffer
    return penalty * torch.where(lengths <= start, torch.zeros_like(lengths), ramp.clamp(min=-1.0))


# ---------------------------------------------------------------------------------------------- group rewards
# Reward terms that need more than one completion: the group's lengths and the primary verifier's verdicts.
# Each takes `lengths[N]` (response tokens), `correct[N]` (bool) and the group size G (groups contiguous) and
# returns an additive reward `[N]`; `reward.verifiers` composes them with the verifiers by name
# (reasoner/training/rewards.py), which adds the weight and the warm-up.

GroupRewardFn = Callable[..., torch.Tensor]
GROUP_REWARDS: Registry[GroupRewardFn] = Registry("group reward")


def _grouped(lengths: torch.Tensor, correct: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if lengths.dim() != 1 or lengths.shape != correct.shape or len(lengths) % group_size:
        raise ValueError(f"expected lengths and correct of one shape [N] with N divisible by the group size "
                         f"{group_size}; got {tuple(lengths.shape)} and {tuple(correct.shape)}")
    return lengths.to(torch.float64).view(-1, group_size), correct.to(torch.bool).view(-1, group_size)


@GROUP_REWARDS.register("length_penalty")
def kimi_length_reward(lengths: torch.Tensor, correct: torch.Tensor, group_size: int) -> torch.Tensor:
    """Kimi k1.5's length reward (Team Kimi 2025, §2.3.3), per group of answers to one prompt:
    `λ = 0.5 − (len − min_len) / (max_len − min_len)`; `λ` for a correct answer, `min(0, λ)` for a wrong one
    (a short wrong answer is not rewarded for being short). A group whose answers all have one length gets 0."""
    n, ok = _grouped(lengths, correct, group_size)
    low, high = n.min(dim=1, keepdim=True).values, n.max(dim=1, keepdim=True).values
    span = high - low
    lam = torch.where(span > 0, 0.5 - (n - low) / span.clamp(min=1e-12), torch.zeros_like(n))
    return torch.where(ok, lam, lam.clamp(max=0.0)).flatten()


@GROUP_REWARDS.register("cosine_length")
def cosine_length_reward(lengths: torch.Tensor, correct: torch.Tensor, group_size: int, *, max_length: int,
                         min_value_wrong: float = -1.0, max_value_wrong: float = -0.5,
                         min_value_correct: float = 0.5, max_value_correct: float = 1.0) -> torch.Tensor:
    """open-r1's cosine-scaled reward (`get_cosine_scaled_reward`, after Yeo et al. 2025), a *replacement* for the
    binary correctness reward: with `c = cos(π · len / max_length)`, a correct answer gets
    `min_c + (max_c − min_c)(1 + c)/2` (short: up to `max_value_correct`), a wrong one the same with the wrong
    values swapped (`max_w + (min_w − max_w)(1 + c)/2`: short wrong answers are punished hardest). Lengths are
    tokens here (open-r1 counts characters); `max_length` defaults to `sampling.max_new_tokens`."""
    n, ok = _grouped(lengths, correct, group_size)
    cosine = torch.cos(n / max_length * math.pi)
    low = torch.where(ok, torch.full_like(n, min_value_correct), torch.full_like(n, max_value_wrong))
    high = torch.where(ok, torch.full_like(n, max_value_correct), torch.full_like(n, min_value_wrong))
    return (low + 0.5 * (high - low) * (1.0 + cosine)).flatten()
