"""The critic's loss: PPO's clipped value loss, and the explained variance that says how good the critic is.

`value_loss(values, old_values, returns, mask, *, cliprange_value, loss_agg, ...)`, shapes `[N, T]`:

    v_clip = old_values + clamp(values - old_values, -cliprange_value, +cliprange_value)
    loss   = 0.5 * agg( max((values - returns)^2, (v_clip - returns)^2) )

as TRL's PPO trainer and verl's `compute_value_loss` (`core_algos.py`) compute it: the new prediction may not
move more than `cliprange_value` from the value it had when the rollouts were scored, by the same
pessimistic-max construction as the policy's ratio clip. `cliprange_value=None` is the plain squared error.
`vf_clipfrac` is the share of tokens where the clipped branch is the larger one. Aggregation is the policy's
(`aggregation.py`), with the same global denominators, so gradient accumulation and data parallelism give the
minibatch loss exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reasoner.algorithms.aggregation import Count, aggregate_loss

EXPLAINED_VARIANCE_EPS = 1e-5  # verl's metric: 1 - var(R - V) / (var(R) + 1e-5)


@dataclass
class ValueLossStats:
    vf_clipfrac: Tensor        # 0-dim: share of masked tokens where the clipped term was used
    vpred_mean: Tensor         # 0-dim: token mean of the new predictions


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, *,
               cliprange_value: float | None = 0.5, loss_agg: str = "token-mean", num_tokens: Count = None,
               num_seqs: Count = None, norm_length: int | float | None = None) -> tuple[Tensor, ValueLossStats]:
    """The clipped value loss (module docstring) of `values[N, T]` (gradient flows) against `returns[N, T]`.

    Args:
        old_values: `[N, T]` predictions when the rollouts were scored (the clip's centre), detached.
        returns: `[N, T]` regression targets (GAE's `A + V`), detached.
        mask: `[N, T]` 1.0 on tokens that carry loss.
        cliprange_value: the clip half-width; None: no clipping.
        loss_agg, num_tokens, num_seqs, norm_length: as `aggregate_loss`.
    """
    if not values.shape == old_values.shape == returns.shape == mask.shape or values.dim() != 2:
        raise ValueError(f"values, old_values, returns, mask must share one [N, T] shape; got "
                         f"{[tuple(x.shape) for x in (values, old_values, returns, mask)]}")
    if cliprange_value is not None and cliprange_value < 0:
        raise ValueError(f"cliprange_value must be >= 0 or None, got {cliprange_value}")
    dtype = torch.promote_types(values.dtype, torch.float32)
    v, old, ret = values.to(dtype), old_values.detach().to(dtype), returns.detach().to(dtype)
    unclipped = (v - ret) ** 2
    if cliprange_value is None:
        per_token, clipped_used = unclipped, torch.zeros_like(unclipped, dtype=torch.bool)
    else:
        v_clip = old + (v - old).clamp(-cliprange_value, cliprange_value)
        clipped = (v_clip - ret) ** 2
        per_token, clipped_used = torch.maximum(unclipped, clipped), clipped > unclipped
    loss = 0.5 * aggregate_loss(per_token, mask, loss_agg, num_tokens=num_tokens, num_seqs=num_seqs,
                                norm_length=norm_length)
    m = mask.to(dtype)
    denominator = m.sum().clamp(min=1)
    stats = ValueLossStats(vf_clipfrac=((clipped_used.to(dtype) * m).sum() / denominator).detach(),
                           vpred_mean=((v.detach() * m).sum() / denominator))
    return loss, stats


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """`1 - var(returns - values) / (var(returns) + 1e-5)` over the masked tokens (verl's `critic/vf_explained_var`,
    unbiased variances): 1 for a perfect critic, 0 for one that predicts the mean, negative for a worse one.
    NaN with fewer than two masked tokens."""
    live = mask.to(torch.bool)
    r, v = returns.detach().to(torch.float64)[live], values.detach().to(torch.float64)[live]
    if r.numel() < 2:
        return float("nan")
    return float(1.0 - torch.var(r - v) / (torch.var(r) + EXPLAINED_VARIANCE_EPS))
