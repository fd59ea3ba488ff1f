"""Policy losses, registered by name: the PPO clipped surrogate here; the other families beside it.

`ppo_clip` is the token-level PPO objective with the ratio `r = exp(logprobs - old_logprobs)`:

    loss_t = max(-A * r, -A * clip(r, 1 - clip_low, 1 + clip_high))          (clip-higher: DAPO)
    loss_t = min(loss_t, -dual_clip * A)   where A < 0                        (dual clip, as verl)
    loss_t = loss_t * is_weights           (rollout correction / truncated importance sampling, detached)

then aggregated over tokens by `aggregate_loss` (the `loss_agg` switch). The other families register into the
same `POLICY_LOSSES` from their own modules: sequence-level ratios (`gspo`, `gspo_token`, `gmpo`) in
`sequence_losses.py`, ratio-reweighted gradients (`cispo`, `sapo`) in `reweighted_losses.py`. docs/algorithms.md
has one table of them all, with formulas, sources and the matching TRL / verl names.

Contract of a registered loss: `(logprobs, old_logprobs, advantages, mask, *, <its hyperparameters>) ->
(per-token loss [N, T], PolicyLossStats)`; inputs arrive as `[N, T]` in one float dtype (>= float32), with
`old_logprobs` and `advantages` detached. A loss defined per sequence (GSPO, GMPO) puts its sequence's value on
each of its tokens, so `seq-mean-token-mean` is its per-sequence mean.

Simplifications and guards: log-ratios are clamped to [-20, 20] before `exp` (as verl does), so a broken
batch yields a large finite loss rather than inf/NaN; beyond the clamp the gradient is 0. A KL-to-reference
term is not part of this loss: the trainer adds `beta * kl_penalty(...)`, aggregated the same way, when it
wants one. Statistics are detached 0-dim tensors (no device sync until a caller reads them).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from reasoner.algorithms.aggregation import Count, aggregate_loss
from reasoner.algorithms.kl import kl_k3
from reasoner.algorithms.registry import Registry

LOG_RATIO_CLAMP = 20.0


@dataclass
class PolicyLossStats:
    """Detached 0-dim tensors, means over the real (masked-in) tokens; 0 when there are none."""

    clip_frac_low: Tensor  # the lower clip bound is active (ppo_clip: A < 0 and ratio < 1 - clip_low)
    clip_frac_high: Tensor  # the upper clip bound is active (ppo_clip: A > 0 and ratio > 1 + clip_high)
    clip_frac_dual: Tensor  # A < 0 and ratio > dual_clip: the dual-clip cap is active (no gradient)
    approx_kl: Tensor  # k3 estimate of KL(pi_old || pi): mean of expm1(log_ratio) - log_ratio
    ratio_mean: Tensor
    ratio_max: Tensor

    def to_dict(self, prefix: str = "") -> dict[str, float]:
        """Python floats for logging (this reads the values, so on GPU it synchronises once)."""
        values = torch.stack([getattr(self, f.name).float() for f in fields(self)]).tolist()
        return {prefix + f.name: v for f, v in zip(fields(self), values)}


PolicyLossFn = Callable[..., tuple[Tensor, PolicyLossStats]]
POLICY_LOSSES: Registry[PolicyLossFn] = Registry("policy loss")


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    name: str = "ppo_clip",
    loss_agg: str = "token-mean",
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_length: int | float | None = None,
    is_weights: Tensor | None = None,
    **options: Any,
) -> tuple[Tensor, PolicyLossStats]:
    """The policy-gradient loss `name`, aggregated, and its statistics.

    Args:
        logprobs: `[N, T]` log-probs of the sampled tokens under the policy being trained (gradient flows).
        old_logprobs: `[N, T]` the same under the policy that sampled them (constant).
        advantages: `[N]` (broadcast over tokens) or `[N, T]`.
        mask: `[N, T]` 1.0 on real response tokens.
        name: one of `POLICY_LOSSES.names()`.
        loss_agg, num_tokens, num_seqs, norm_length: see `aggregate_loss`.
        is_weights: `[N, T]` rollout-correction weights multiplying the per-token loss (detached; see
            `rollout_correction`).
        **options: the loss's own hyperparameters (its keyword-only parameters), e.g. for the clipped losses
            `clip_low` / `clip_high` (the ratio is clipped to `[1 - clip_low, 1 + clip_high]`; `clip_high=None`
            means `clip_low`, DAPO's clip-higher uses 0.2 / 0.28) and `dual_clip` (`c > 1` caps the loss of
            negative-advantage tokens at `-c * A`). An option the loss does not take is an error; callers holding
            a whole config section use `POLICY_LOSSES.pick_options(name, values)`.

    Returns:
        `(loss, stats)`: 0-dim loss, `PolicyLossStats`.
    """
    fn = POLICY_LOSSES.get(name)
    unknown = sorted(set(options) - set(POLICY_LOSSES.option_names(name)))
    if unknown:
        raise ValueError(f"policy loss {name!r} takes no option {unknown[0]!r} "
                         f"(its options: {', '.join(POLICY_LOSSES.option_names(name)) or 'none'})")
    advantages = _check_inputs(logprobs, old_logprobs, advantages, mask, is_weights)
    dtype = torch.promote_types(logprobs.dtype, torch.float32)
    per_token, stats = fn(
        logprobs.to(dtype),
        old_logprobs.detach().to(dtype),
        advantages.detach().to(dtype),
        mask.to(dtype),
        **options,
    )
    if is_weights is not None:
        per_token = per_token * is_weights.detach().to(dtype)
    loss = aggregate_loss(
        per_token, mask, loss_agg, num_tokens=num_tokens, num_seqs=num_seqs, norm_length=norm_length
    )
    return loss, stats


def _check_inputs(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    is_weights: Tensor | None,
) -> Tensor:
    """Validate shapes; return advantages as `[N, T]` (a broadcast view for `[N]`)."""
    shape = tuple(logprobs.shape)
    if len(shape) != 2:
        raise ValueError(f"logprobs must be [N, T], got {shape}")
    for label, t in (("old_logprobs", old_logprobs), ("mask", mask), ("is_weights", is_weights)):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"{label} has shape {tuple(t.shape)}, expected {shape} like logprobs")
    if tuple(advantages.shape) == shape[:1]:
        advantages = advantages.unsqueeze(-1).expand(shape)
    elif tuple(advantages.shape) != shape:
        raise ValueError(f"advantages has shape {tuple(advantages.shape)}, expected [N]={shape[:1]} or [N, T]={shape}")
    return advantages


def clip_range(clip_low: float, clip_high: float | None, dual_clip: float | None = None, *,
               low_max: float = 1.0, low_inclusive: bool = False) -> float:
    """Validate the clipped losses' hyperparameters; returns `clip_high` (`clip_low` when None).

    Ratio clipping to `[1 - clip_low, 1 + clip_high]` needs `0 <= clip_low < 1`; CISPO also allows `clip_low = 1`
    (`low_inclusive`: no lower bound); GMPO clips log-ratios, where any `clip_low >= 0` is a bound
    (`low_max=inf`).
    """
    clip_high = clip_low if clip_high is None else clip_high
    if not (0.0 <= clip_low < low_max or (low_inclusive and clip_low == low_max)):
        bracket = "]" if low_inclusive else ")"
        raise ValueError(f"clip_low must be in [0, {low_max:g}{bracket}, got {clip_low}")
    if clip_high < 0.0:
        raise ValueError(f"clip_high must be >= 0, got {clip_high}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (e.g. 3.0) or None, got {dual_clip}")
    return clip_high


def clipped_surrogate(
    ratio: Tensor, advantages: Tensor, clip_low: float, clip_high: float, dual_clip: float | None
) -> Tensor:
    """Per-token `max(-A r, -A clip(r))`, capped at `-c A` where `A < 0` when `dual_clip=c`. All `[N, T]`."""
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        loss = torch.where(advantages < 0, torch.minimum(loss, -dual_clip * advantages), loss)
    return loss


def clip_indicators(
    ratio: Tensor, advantages: Tensor, clip_low: float, clip_high: float, dual_clip: float | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Where each bound of the clipped surrogate is active (no gradient there): `(low, high, dual)` bool `[N, T]`."""
    low = (advantages < 0) & (ratio < 1.0 - clip_low)
    high = (advantages > 0) & (ratio > 1.0 + clip_high)
    dual = (advantages < 0) & (ratio > dual_clip) if dual_clip is not None else None
    return low, high, dual


@torch.no_grad()
def loss_stats(
    ratio: Tensor,
    log_ratio: Tensor,
    mask: Tensor,
    low: Tensor | None = None,
    high: Tensor | None = None,
    dual: Tensor | None = None,
) -> PolicyLossStats:
    """Masked token means of the clip indicators (bool `[N, T]`, None -> 0), k3 KL and the ratio `[N, T]`."""
    real = mask != 0
    count = real.sum().clamp(min=1).to(ratio.dtype)
    zero = torch.zeros((), dtype=ratio.dtype, device=ratio.device)

    def frac(indicator: Tensor | None) -> Tensor:
        return zero if indicator is None else (indicator & real).sum().to(ratio.dtype) / count

    k3 = kl_k3(-log_ratio)  # KL(old || new) from samples of old: (r - 1) - log r
    ratio_max = torch.where(real, ratio, torch.full_like(ratio, -torch.inf)).amax() if ratio.numel() else zero
    return PolicyLossStats(
        clip_frac_low=frac(low),
        clip_frac_high=frac(high),
        clip_frac_dual=frac(dual),
        approx_kl=torch.where(real, k3, zero).sum() / count,
        ratio_mean=torch.where(real, ratio, zero).sum() / count,
        ratio_max=torch.where(torch.isfinite(ratio_max), ratio_max, zero),
    )


def token_log_ratio(logprobs: Tensor, old_logprobs: Tensor) -> Tensor:
    """`logprobs - old_logprobs`, clamped to `[-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP]`. `[N, T]`."""
    return (logprobs - old_logprobs).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)


def sequence_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over each row's real tokens, `[N, 1]` (0 for an empty row); padding values never leak in."""
    real = torch.where(mask != 0, values * mask, torch.zeros((), dtype=values.dtype, device=values.device))
    return real.sum(dim=-1, keepdim=True) / mask.sum(dim=-1, keepdim=True).clamp(min=1)


@POLICY_LOSSES.register("ppo_clip")
def ppo_clip_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    dual_clip: float | None = None,
) -> tuple[Tensor, PolicyLossStats]:
    """Token-level PPO clipped surrogate: per-token loss `[N, T]` and stats. Inputs `[N, T]`."""
    clip_high = clip_range(clip_low, clip_high, dual_clip)
    log_ratio = token_log_ratio(logprobs, old_logprobs)
    ratio = torch.exp(log_ratio)
    loss = clipped_surrogate(ratio, advantages, clip_low, clip_high, dual_clip)
    indicators = clip_indicators(ratio, advantages, clip_low, clip_high, dual_clip)
    return loss, loss_stats(ratio, log_ratio, mask, *indicators)
