"""Policy losses where the ratio reweights the gradient instead of hard-clipping it away: CISPO and SAPO.

With `r_t = exp(logprobs_t - old_logprobs_t)`:

- `cispo` (CISPO, MiniMax-M1, arXiv 2506.13585): REINFORCE with the importance weight clipped and
  detached, `loss_t = -sg[clip(r_t, 1 - clip_low, 1 + clip_high)] * A_t * logprobs_t`. No token loses its
  gradient: a clipped weight only caps how much it counts (PPO-clip drops such tokens; MiniMax-M1's point is
  that those are often the rare "fork" tokens of a reflection). verl's `loss_mode: cispo` is this formula;
  TRL's `loss_type: cispo` caps from above only, `min(r_t, epsilon_high)` (ScaleRL's `ε_max`, recommended 5.0),
  which is `clip_low: 1.0, clip_high: ε_max - 1` here (`clip_low = 1` means no lower bound).
- `sapo` (SAPO, arXiv 2511.20347): a smooth, temperature-controlled gate instead of the clip,
  `loss_t = -A_t * σ(τ (r_t - 1)) * 4 / τ` with `τ = sapo_tau_pos` where `A_t > 0` and `sapo_tau_neg`
  elsewhere; its gradient is `4 σ(1-σ) r_t` times REINFORCE's, 1 at `r = 1` and decaying smoothly off-policy
  (faster for negative advantages, τ_neg > τ_pos). TRL's `loss_type: sapo` and verl's `loss_mode: sapo`.

The loss value of `cispo` is `-w A logprobs` (as in both peers), so its logged `pg_loss` is not a surrogate of
the return; only its gradient is meaningful.
"""
from __future__ import annotations

import torch
from torch import Tensor

from reasoner.algorithms.policy_loss import POLICY_LOSSES, PolicyLossStats, clip_range, loss_stats, token_log_ratio


@POLICY_LOSSES.register("cispo")
def cispo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float | None = None,
) -> tuple[Tensor, PolicyLossStats]:
    """CISPO: `-sg[clip(r, 1 - clip_low, 1 + clip_high)] * A * logprobs` per token. Inputs `[N, T]`.

    Stats: clip_frac_low / clip_frac_high are the tokens whose weight was raised to / capped at a bound (they
    keep their gradient).
    """
    clip_high = clip_range(clip_low, clip_high, low_inclusive=True)
    log_ratio = token_log_ratio(logprobs, old_logprobs)
    ratio = torch.exp(log_ratio)
    weight = ratio.clamp(1.0 - clip_low, 1.0 + clip_high).detach()
    loss = -weight * advantages * logprobs
    detached = ratio.detach()
    return loss, loss_stats(detached, log_ratio.detach(), mask, low=detached < 1.0 - clip_low,
                            high=detached > 1.0 + clip_high)


@POLICY_LOSSES.register("sapo")
def sapo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    sapo_tau_pos: float = 1.0,
    sapo_tau_neg: float = 1.05,
) -> tuple[Tensor, PolicyLossStats]:
    """SAPO: `-A * sigmoid(tau (r - 1)) * 4 / tau` per token, `tau` by the sign of `A`. Inputs `[N, T]`.

    Nothing is clipped (the clip fractions are 0); the defaults are the paper's (τ_pos = 1.0, τ_neg = 1.05).
    """
    if sapo_tau_pos <= 0 or sapo_tau_neg <= 0:
        raise ValueError(f"sapo_tau_pos and sapo_tau_neg must be > 0, got {sapo_tau_pos} and {sapo_tau_neg}")
    log_ratio = token_log_ratio(logprobs, old_logprobs)
    ratio = torch.exp(log_ratio)
    pos, neg = (torch.tensor(tau, dtype=ratio.dtype, device=ratio.device) for tau in (sapo_tau_pos, sapo_tau_neg))
    tau = torch.where(advantages > 0, pos, neg)
    gate = torch.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau)
    loss = -gate * advantages
    return loss, loss_stats(ratio.detach(), log_ratio.detach(), mask)
