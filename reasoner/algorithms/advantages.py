"""Advantage estimators: outcome rewards with group baselines (GRPO family) and, registered here by
`token_advantages.py`, the token-level ones (gae with a critic, reinforce_pp).

Every prompt is sampled `G` times and the `G` completions are contiguous, so the rewards `[N]` reshape to
`[N / G, G]` groups. Each estimator maps one scalar reward per sequence to one scalar advantage per sequence; the
policy loss broadcasts it over the sequence's tokens. Simplifications, on purpose:

- the estimators of this file take one reward per sequence; token-level estimators (per-token rewards, a value
  model's predictions: `gae`, `reinforce_pp`) are registered with `register_token_level`, listed in
  `TOKEN_LEVEL_ESTIMATORS`, and called through `token_advantages.compute_token_advantages`;
- the arithmetic runs in float64 (N is at most a few thousand, so this is free) and the result is float32;
- a group whose rewards are all equal gets advantages of exactly 0 (not `0 / (tiny + eps)` round-off noise),
  so "no learning signal" is visible as exact zeros in logs and costs nothing downstream.

Registered estimators take `grouped: Tensor[P, G]` (float64) plus keyword options and return `[P, G]`;
`compute_advantages` does the validation, reshaping and dtype handling around them.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from reasoner.algorithms.registry import Registry

AdvantageFn = Callable[..., Any]
ADVANTAGE_ESTIMATORS: Registry[AdvantageFn] = Registry("advantage estimator")
TOKEN_LEVEL_ESTIMATORS: dict[str, bool] = {}   # token-level estimator name -> whether it needs a critic's values


def register_token_level(name: str, *, needs_values: bool) -> Callable[[AdvantageFn], AdvantageFn]:
    """Register a token-level estimator `(token_rewards[N, T], [values[N, T],] mask[N, T], *, options) ->
    (advantages[N, T], returns[N, T])` in `ADVANTAGE_ESTIMATORS` (so `algorithm.advantage` accepts its name)."""

    def decorator(fn: AdvantageFn) -> AdvantageFn:
        TOKEN_LEVEL_ESTIMATORS[name] = needs_values
        return ADVANTAGE_ESTIMATORS.register(name)(fn)

    return decorator


def is_token_level(name: str) -> bool:
    return name in TOKEN_LEVEL_ESTIMATORS


def needs_critic(name: str) -> bool:
    """Whether the estimator `name` needs a value model's predictions (gae)."""
    return TOKEN_LEVEL_ESTIMATORS.get(name, False)


def compute_advantages(
    name: str, rewards: Tensor | Sequence[float], group_size: int, **options: object
) -> Tensor:
    """Advantages for `rewards[N]` (groups of `group_size` contiguous samples) with the estimator `name`.

    Args:
        name: one of `ADVANTAGE_ESTIMATORS.names()` (grpo, dr_grpo, rloo, reinforce_pp_baseline).
        rewards: `[N]` one scalar reward per sequence, `N = prompts * group_size`.
        group_size: `G`, samples per prompt.
        **options: estimator options (e.g. `std_unbiased`, `advantage_eps` for grpo); an option the estimator
            does not take is an error (callers holding a whole config use `ADVANTAGE_ESTIMATORS.pick_options`).

    Returns:
        `[N]` float32 advantages on the device of `rewards`.
    """
    fn = ADVANTAGE_ESTIMATORS.get(name)
    if is_token_level(name):
        raise ValueError(f"advantage estimator {name!r} is token-level (per-token rewards"
                         f"{', a critic' if needs_critic(name) else ''}): use compute_token_advantages")
    unknown = sorted(set(options) - set(ADVANTAGE_ESTIMATORS.option_names(name)))
    if unknown:
        raise ValueError(f"advantage estimator {name!r} takes no option {unknown[0]!r} "
                         f"(its options: {', '.join(ADVANTAGE_ESTIMATORS.option_names(name)) or 'none'})")
    grouped = _as_groups(rewards, group_size)
    advantages = fn(grouped, **options)
    return advantages.reshape(-1).to(torch.float32)


def _as_groups(rewards: Tensor | Sequence[float], group_size: int) -> Tensor:
    """Validate and reshape `rewards[N]` to float64 `[N / G, G]`."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    r = torch.as_tensor(rewards)
    if r.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(r.shape)}")
    r = r.detach().to(torch.float64)
    n = r.numel()
    if n == 0:
        raise ValueError("rewards is empty (N = 0)")
    if n % group_size != 0:
        raise ValueError(
            f"number of rewards N={n} is not a multiple of group_size={group_size} "
            f"({n} = {n // group_size} * {group_size} + {n % group_size})"
        )
    bad = (~torch.isfinite(r)).nonzero().flatten()
    if bad.numel() > 0:
        rows = bad[:5].tolist()
        raise ValueError(
            f"{bad.numel()} non-finite reward(s), first at index {rows} "
            f"(group {[i // group_size for i in rows]}): {r[bad[:5]].tolist()}"
        )
    return r.reshape(n // group_size, group_size)


def _zero_spread(grouped: Tensor) -> Tensor:
    """`[P, 1]` bool: groups whose rewards are all equal (no learning signal)."""
    return (grouped.amax(dim=1, keepdim=True) == grouped.amin(dim=1, keepdim=True))


def _warn_singleton(name: str) -> None:
    warnings.warn(
        f"{name} with group_size=1: each sequence is its own group baseline, so every advantage is 0 and "
        f"nothing is learned; use group_size >= 2 (or reinforce_pp_baseline, which has a batch baseline)",
        UserWarning,
        stacklevel=4,
    )


@ADVANTAGE_ESTIMATORS.register("grpo")
def grpo_advantages(grouped: Tensor, *, std_unbiased: bool = True, advantage_eps: float = 1e-6) -> Tensor:
    """GRPO: `(r - group mean) / (group std + advantage_eps)`.

    `std_unbiased=True` (Bessel's correction) matches `torch.std` as used by TRL and verl. `grouped`: `[P, G]`.
    G = 1: the group mean is the reward itself, so the advantage is 0 (with a warning).
    """
    if grouped.shape[1] == 1:
        _warn_singleton("grpo")
        return torch.zeros_like(grouped)
    centered = grouped - grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True, correction=1 if std_unbiased else 0)
    return torch.where(_zero_spread(grouped), 0.0, centered / (std + advantage_eps))


@ADVANTAGE_ESTIMATORS.register("dr_grpo")
def dr_grpo_advantages(grouped: Tensor) -> Tensor:
    """Dr. GRPO: `r - group mean`, no std normalisation (it biases towards easy/hard prompts). `[P, G]`."""
    if grouped.shape[1] == 1:
        _warn_singleton("dr_grpo")
        return torch.zeros_like(grouped)
    centered = grouped - grouped.mean(dim=1, keepdim=True)
    return torch.where(_zero_spread(grouped), 0.0, centered)


@ADVANTAGE_ESTIMATORS.register("rloo")
def rloo_advantages(grouped: Tensor) -> Tensor:
    """RLOO: `r_i - mean of the other G-1 rewards of the group` (= `G/(G-1) * (r_i - group mean)`). `[P, G]`.

    Needs G >= 2: with one sample there is no "other" sample to form the baseline.
    """
    g = grouped.shape[1]
    if g < 2:
        raise ValueError(f"rloo needs group_size >= 2 (a leave-one-out baseline of G-1 others), got {g}")
    others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (g - 1)
    return torch.where(_zero_spread(grouped), 0.0, grouped - others_mean)


@ADVANTAGE_ESTIMATORS.register("reinforce_pp_baseline")
def reinforce_pp_baseline_advantages(
    grouped: Tensor, *, std_unbiased: bool = True, advantage_eps: float = 1e-6
) -> Tensor:
    """REINFORCE++ with a group baseline: subtract the group mean, then divide by the std over the whole batch.

    As verl's `reinforce_plus_plus_baseline`, but at sequence level (verl whitens token-level copies, which
    weights each sequence by its length; with one reward per sequence the sequence level is the natural unit).
    verl's whitening also re-subtracts the batch mean; after a group baseline that mean is exactly 0 in exact
    arithmetic, so we skip it and keep all-equal groups at exactly 0. G = 1 follows verl's convention for
    singleton groups (no group baseline), which makes this plain REINFORCE++: rewards whitened over the batch,
    `(r - batch mean) / (batch std + advantage_eps)`. A batch of one sequence gets advantage 0. `[P, G]`.
    """
    if grouped.numel() < 2:
        return torch.zeros_like(grouped)
    correction = 1 if std_unbiased else 0
    if grouped.shape[1] == 1:
        flat = grouped.reshape(-1)
        if flat.amax() == flat.amin():
            return torch.zeros_like(grouped)
        return ((flat - flat.mean()) / (flat.std(correction=correction) + advantage_eps)).reshape(grouped.shape)
    centered = grouped - grouped.mean(dim=1, keepdim=True)
    centered = torch.where(_zero_spread(grouped), 0.0, centered)
    return centered / (centered.reshape(-1).std(correction=correction) + advantage_eps)
