"""Policy losses whose ratio is a sequence's, not a token's: GSPO, GSPO-token and GMPO.

With `r_t = exp(logprobs_t - old_logprobs_t)` on the real tokens of sequence i (|y_i| of them):

- `gspo` (GSPO, arXiv 2507.18071): the length-normalised sequence ratio `s_i = exp(mean_t log r_t)` in
  the clipped surrogate `max(-A s_i, -A clip(s_i, 1 - clip_low, 1 + clip_high))`, the gradient flowing through
  the mean (each token gets `s_i / |y_i|` of it). This is TRL's `importance_sampling_level: sequence`.
- `gspo_token` (the paper's GSPO-token): `s_{i,t} = sg[s_i] * r_t / sg[r_t]`, so the value is `s_i`
  and token t's gradient is `s_i * grad logprobs_t`; it admits per-token advantages. This is verl's
  `loss_mode: gspo`. With one advantage per sequence and the shared aggregations (which weigh a sequence's
  tokens equally) the two have the same value and gradient; they differ with `[N, T]` advantages or per-token
  importance weights (rollout correction at token level).
- `gmpo` (GMPO, arXiv 2507.20673; verl's `loss_mode: geo_mean`): the geometric mean of the token ratios, clipped
  per token in log space: `log r'_t = min(log r_t, clip_high)` where `A > 0`, `max(log r_t, -clip_low)` where
  `A < 0`, then `loss_i = -mean_t(A) * exp(mean_t log r'_t)`. The paper uses `clip_low = clip_high = 0.4`
  (the range (e^-0.4, e^0.4)).

The paper's GSPO clips much tighter than PPO (clip_low=3e-4, clip_high=4e-4) and pairs with
`seq-mean-token-mean`; for GSPO and GMPO that aggregation is the paper's per-sequence mean (each sequence's value
sits on each of its tokens), while `token-mean` weighs sequences by their length.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from reasoner.algorithms.policy_loss import (
    LOG_RATIO_CLAMP,
    POLICY_LOSSES,
    PolicyLossStats,
    clip_indicators,
    clip_range,
    clipped_surrogate,
    loss_stats,
    sequence_mean,
    token_log_ratio,
)


@POLICY_LOSSES.register("gspo")
def gspo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    dual_clip: float | None = None,
) -> tuple[Tensor, PolicyLossStats]:
    """GSPO: the clipped surrogate with `s_i = exp(mean_t log r_t)` on every token, gradient through the mean.

    Inputs `[N, T]`; per-token loss `[N, T]` (sequence i's value on each of its tokens when `A` is per sequence).
    Stats: clip fractions and ratios use `s_i` (counted per token of the sequence); approx_kl is per token.
    """
    clip_high = clip_range(clip_low, clip_high, dual_clip)
    log_ratio = token_log_ratio(logprobs, old_logprobs)
    ratio = torch.exp(sequence_mean(log_ratio, mask)).expand_as(logprobs)
    loss = clipped_surrogate(ratio, advantages, clip_low, clip_high, dual_clip)
    detached = ratio.detach()
    indicators = clip_indicators(detached, advantages, clip_low, clip_high, dual_clip)
    return loss, loss_stats(detached, log_ratio.detach(), mask, *indicators)


@POLICY_LOSSES.register("gspo_token")
def gspo_token_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    dual_clip: float | None = None,
) -> tuple[Tensor, PolicyLossStats]:
    """GSPO-token: `log s_{i,t} = sg[log s_i] + logprobs_t - sg[logprobs_t]` in the clipped surrogate.

    The value is `s_i` and the gradient of token t is `s_i * grad logprobs_t`; clipping is decided per sequence
    (per token when advantages are `[N, T]`). Inputs `[N, T]`. Stats as `gspo`.
    """
    clip_high = clip_range(clip_low, clip_high, dual_clip)
    log_ratio = (logprobs - old_logprobs).detach()
    seq_log_ratio = sequence_mean(log_ratio, mask)
    combined = (seq_log_ratio + logprobs - logprobs.detach()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(combined)
    loss = clipped_surrogate(ratio, advantages, clip_low, clip_high, dual_clip)
    detached = ratio.detach()
    indicators = clip_indicators(detached, advantages, clip_low, clip_high, dual_clip)
    return loss, loss_stats(detached, log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP), mask, *indicators)


@POLICY_LOSSES.register("gmpo")
def gmpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float | None = None,
) -> tuple[Tensor, PolicyLossStats]:
    """GMPO: `loss_i = -mean_t(A) * exp(mean_t clip(log r_t))`, the clip one-sided by the sign of `A_t`.

    `clip_low` / `clip_high` bound the log-ratio (`[-clip_low, clip_high]`), not the ratio. Inputs `[N, T]`;
    sequence i's loss on each of its tokens. Stats: clip fractions per token (`A > 0` and `log r > clip_high`:
    high; `A < 0` and `log r < -clip_low`: low); ratios are the sequences' geometric means.
    """
    clip_high = clip_range(clip_low, clip_high, low_max=math.inf)
    log_ratio = token_log_ratio(logprobs, old_logprobs)
    zero = torch.zeros((), dtype=log_ratio.dtype, device=log_ratio.device)
    clipped = torch.where(advantages > 0, log_ratio.clamp(max=clip_high),
                          torch.where(advantages < 0, log_ratio.clamp(min=-clip_low), zero))
    ratio = torch.exp(sequence_mean(clipped, mask))                       # [N, 1]
    loss = (-sequence_mean(advantages, mask) * ratio).expand_as(logprobs)
    detached = log_ratio.detach()
    low = (advantages < 0) & (detached < -clip_low)
    high = (advantages > 0) & (detached > clip_high)
    return loss, loss_stats(ratio.detach().expand_as(logprobs), detached, mask, low, high)
