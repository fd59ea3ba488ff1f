"""Rollout correction: importance weights and rejection between the trainer's and the engine's log-probs.

The engine (vLLM, another kernel, precision or stale weights) samples from `π_engine`, slightly different from
the trainer's `π_old`, and the mismatch grows with answer length. With `log ρ_t = old_logprobs_t -
engine_logprobs_t` on the real tokens of a sequence, a level turns it into one ratio per token:

- `token`:     `ρ_t`                                 (biased, low variance)
- `sequence`:  `exp(Σ_t log ρ_t)` on every token     (the sequence's true ratio; unbiased, high variance)
- `geometric`: `exp(mean_t log ρ_t)` on every token  (length-normalised; what GSPO/GMPO use for the policy)

(the log is clamped to [-20, 20] before `exp`, as verl does), and then:

- importance sampling (`rollout_is`): the per-token loss is multiplied by the detached weight, `truncate`d to
  `[is_min, is_max]` (TIS; verl's `rollout_is`, TRL's `*_truncate` modes) or `mask`ed, set to 0 outside it
  and kept as is inside (TRL's `*_mask` modes); the loss denominators are unchanged;
- rejection (`rollout_rs`): tokens (level `token`) or whole sequences whose ratio is outside `[rs_min,
  rs_max]` leave the loss *and its denominators*, as if they had not been sampled (verl's `rollout_rs`; its
  `token_k1` / `seq_sum_k1` / `seq_mean_k1` options are the three levels here).

Both are computed once per step from the batch's original mask. The statistics users watch when vLLM and the
trainer disagree are `mismatch_totals`: the signed mean and the largest |log ρ|, a k3 estimate of
KL(π_engine || π_old), the weights' mean / max and the fraction truncated or masked, and the fractions of
tokens and sequences rejected.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

LEVELS = ("token", "sequence", "geometric")
IS_MODES = ("truncate", "mask")
LOG_RATIO_CLAMP = 20.0


@dataclass
class RolloutCorrection:
    """What the update applies: weights on the per-token loss, and the tokens rejection keeps."""

    weights: Tensor | None  # [N, T] detached importance weights (None: no importance sampling)
    keep: Tensor | None     # [N, T] bool, True where rejection keeps the token (None: no rejection)
    raw_weights: Tensor | None = None  # [N, T] the weights before truncation / masking (for the statistics)


def level_log_ratio(log_ratio: Tensor, mask: Tensor, level: str) -> Tensor:
    """`log_ratio[N, T]` at `level`: per token, or the sequence's sum / mean on each token; clamped to ±20."""
    if level not in LEVELS:
        raise ValueError(f"unknown rollout correction level {level!r}; valid: {', '.join(LEVELS)}")
    if level == "token":
        return log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    real = torch.where(mask != 0, log_ratio * mask, torch.zeros((), dtype=log_ratio.dtype, device=log_ratio.device))
    per_seq = real.sum(dim=-1, keepdim=True)
    if level == "geometric":
        per_seq = per_seq / mask.sum(dim=-1, keepdim=True).clamp(min=1)
    return per_seq.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).expand_as(log_ratio)


def check_options(is_level: str | None, is_mode: str, is_min: float | None, is_max: float | None,
                  rs_level: str | None, rs_min: float | None, rs_max: float | None) -> str | None:
    """The first problem with these options as `"<option>: what is wrong"`, or None when they are valid."""
    for key, level in (("rollout_is", is_level), ("rollout_rs", rs_level)):
        if level is not None and level not in LEVELS:
            return f"{key}: unknown level {level!r}; valid: {', '.join(LEVELS)} (or null: off)"
    if is_mode not in IS_MODES:
        return f"rollout_is_mode: unknown mode {is_mode!r}; valid: {', '.join(IS_MODES)}"
    if is_level is not None:
        if is_min is None and is_max is None:
            return "rollout_is_max: set rollout_is_max and/or rollout_is_min to bound the weights"
        problem = _bounds_problem("rollout_is", is_min, is_max)
        if problem:
            return problem
    if rs_level is not None:
        if rs_max is None:
            return "rollout_rs_max: rejection needs an upper ratio bound (e.g. 2.0)"
        if rs_min is None and rs_max <= 1.0:
            return f"rollout_rs_max: must be > 1 when rollout_rs_min is null (it then defaults to 1/max), got {rs_max}"
        problem = _bounds_problem("rollout_rs", rs_min, rs_max)
        if problem:
            return problem
    return None


def _bounds_problem(prefix: str, low: float | None, high: float | None) -> str | None:
    for name, value in (("min", low), ("max", high)):
        if value is not None and not (value > 0 and math.isfinite(value)):
            return f"{prefix}_{name}: must be a positive number, got {value}"
    if low is not None and high is not None and low >= high:
        return f"{prefix}_min: must be below {prefix}_max ({high}), got {low}"
    return None


def rollout_correction(
    old_logprobs: Tensor,
    engine_logprobs: Tensor,
    mask: Tensor,
    *,
    is_level: str | None = None,
    is_mode: str = "truncate",
    is_min: float | None = None,
    is_max: float | None = None,
    rs_level: str | None = None,
    rs_min: float | None = None,
    rs_max: float | None = None,
) -> RolloutCorrection:
    """Importance weights and the rejection mask from `old_logprobs` / `engine_logprobs` / `mask`, all `[N, T]`.

    `is_level` / `rs_level` None turn each part off. `rs_min` defaults to `1 / rs_max`. Everything is detached.
    """
    problem = check_options(is_level, is_mode, is_min, is_max, rs_level, rs_min, rs_max)
    if problem:
        raise ValueError(problem)
    log_ratio = (old_logprobs - engine_logprobs).detach()
    weights = raw = keep = None
    if is_level is not None:
        raw = torch.exp(level_log_ratio(log_ratio, mask, is_level))
        if is_mode == "truncate":
            weights = raw.clamp(min=is_min, max=is_max)
        else:
            weights = torch.where(_inside(raw, is_min, is_max), raw, torch.zeros_like(raw))
    if rs_level is not None:
        assert rs_max is not None  # check_options
        ratio = torch.exp(level_log_ratio(log_ratio, mask, rs_level))
        keep = _inside(ratio, 1.0 / rs_max if rs_min is None else rs_min, rs_max)
    return RolloutCorrection(weights=weights, keep=keep, raw_weights=raw)


def _inside(x: Tensor, low: float | None, high: float | None) -> Tensor:
    inside = torch.ones_like(x, dtype=torch.bool)
    if low is not None:
        inside &= x >= low
    if high is not None:
        inside &= x <= high
    return inside


@torch.no_grad()
def mismatch_totals(old_logprobs: Tensor, engine_logprobs: Tensor, mask: Tensor,
                    correction: RolloutCorrection) -> tuple[dict[str, float], dict[str, float]]:
    """`(sums, maxima)` over the real tokens of `[N, T]` inputs, to be summed / maxed over ranks and then turned
    into means by `mismatch_metrics`. One device read."""
    real = mask != 0
    dtype = torch.promote_types(old_logprobs.dtype, torch.float32)
    zero = torch.zeros((), dtype=dtype, device=old_logprobs.device)
    log_ratio = torch.where(real, (old_logprobs - engine_logprobs).to(dtype), zero)
    rows = real.any(dim=-1)
    clamped = log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    sums = {"tokens": real.sum().to(dtype), "seqs": rows.sum().to(dtype), "log_ratio": log_ratio.sum(),
            # k3 estimate of KL(π_engine || π_old) from the engine's samples: ρ - 1 - log ρ
            "kl_k3": torch.where(real, torch.expm1(clamped) - clamped, zero).sum()}
    maxima = {"log_ratio_abs_max": log_ratio.abs().amax() if log_ratio.numel() else zero}
    if correction.weights is not None and correction.raw_weights is not None:
        weights = correction.weights.to(dtype)
        sums["weight"] = torch.where(real, weights, zero).sum()
        sums["weight_changed"] = (real & (weights != correction.raw_weights.to(dtype))).sum().to(dtype)
        maxima["weight_max"] = torch.where(real, weights, zero).amax() if weights.numel() else zero
    if correction.keep is not None:
        rejected = real & ~correction.keep
        sums["rejected_tokens"] = rejected.sum().to(dtype)
        sums["rejected_seqs"] = rejected.any(dim=-1).sum().to(dtype)
    keys_s, keys_m = list(sums), list(maxima)
    values = torch.stack([sums[k] for k in keys_s] + [maxima[k] for k in keys_m]).tolist()
    return dict(zip(keys_s, values[:len(keys_s)])), dict(zip(keys_m, values[len(keys_s):]))


def mismatch_metrics(sums: dict[str, float], maxima: dict[str, float],
                     prefix: str = "rollout_corr/") -> dict[str, float]:
    """Means from `mismatch_totals`' sums (over every rank's tokens / sequences) and the maxima, named for logs."""
    tokens, seqs = max(sums["tokens"], 1.0), max(sums["seqs"], 1.0)
    out = {"log_ratio_mean": sums["log_ratio"] / tokens, "log_ratio_abs_max": maxima["log_ratio_abs_max"],
           "kl_k3": sums["kl_k3"] / tokens}
    if "weight" in sums:
        out.update(weight_mean=sums["weight"] / tokens, weight_max=maxima["weight_max"],
                   weight_clipped_fraction=sums["weight_changed"] / tokens)
    if "rejected_tokens" in sums:
        out.update(rejected_token_fraction=sums["rejected_tokens"] / tokens,
                   rejected_seq_fraction=sums["rejected_seqs"] / seqs)
    return {prefix + key: value for key, value in out.items()}
