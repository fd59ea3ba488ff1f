"""The reward model's loss: Bradley-Terry on preference pairs, as TRL's `RewardTrainer` computes it.

For scores `r_c = RM(prompt, chosen)` and `r_r = RM(prompt, rejected)` (`[B]` each):

    loss = -mean(log sigmoid(r_c - r_r - margin)) + center_coef * mean((r_c + r_r)^2)

`margin` (`[B]`, optional): a per-pair minimum gap, for data that grades how much better the chosen answer is
(Llama 2's margin loss; TRL's `margin` column). The centering term (TRL's `center_rewards_coefficient`,
Eisenstein et al. 2023) pulls the scores towards mean zero: the Bradley-Terry loss only sees differences, so
without it the scores drift by an arbitrary constant. `weights` (`[B]`, optional, 0 or 1) mark pairs that only
keep data-parallel ranks in step; `num_pairs` is the mean's denominator (pass the global batch's count when a
batch is split into micro-batches or ranks, so the parts sum to the batch loss).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PairStats:
    accuracy: Tensor      # 0-dim: share of (weighted) pairs with r_c > r_r
    margin: Tensor        # 0-dim: mean r_c - r_r


def bradley_terry_loss(chosen: Tensor, rejected: Tensor, *, margin: Tensor | None = None, center_coef: float = 0.0,
                       weights: Tensor | None = None, num_pairs: float | None = None) -> tuple[Tensor, PairStats]:
    """The loss (module docstring) and pair statistics for scores `chosen[B]`, `rejected[B]`."""
    if chosen.dim() != 1 or chosen.shape != rejected.shape:
        raise ValueError(f"expected chosen and rejected scores [B]; got {tuple(chosen.shape)} and "
                         f"{tuple(rejected.shape)}")
    dtype = torch.promote_types(chosen.dtype, torch.float32)
    c, r = chosen.to(dtype), rejected.to(dtype)
    w = torch.ones_like(c) if weights is None else weights.to(dtype)
    n = torch.as_tensor(num_pairs if num_pairs is not None else w.sum(), dtype=dtype).clamp(min=1)
    gap = c - r
    shifted = gap if margin is None else gap - margin.to(dtype)
    loss = -(torch.nn.functional.logsigmoid(shifted) * w).sum() / n
    if center_coef:
        loss = loss + center_coef * (((c + r) ** 2) * w).sum() / n
    live = w.sum().clamp(min=1)
    stats = PairStats(accuracy=(((gap > 0).to(dtype) * w).sum() / live).detach(),
                      margin=((gap * w).sum() / live).detach())
    return loss, stats
