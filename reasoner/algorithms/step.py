"""One step's algebra, from sequence rewards to the rows and advantages the update trains on.

    rewards [N]  (verifier totals)
      + overlong shaping            DAPO's soft overlong punishment on response lengths (`shaping.py`)
      - beta * KL(pi || pi_ref)     "KL in the reward": the per-sequence KL sums (`kl.sequence_kl`)
      -> advantage estimator        by name from `ADVANTAGE_ESTIMATORS`, with the options it takes
      -> zero-variance filter       DAPO's dynamic sampling: groups whose rewards are all equal are dropped

A pure function over the whole step's `[N]` tensors (every rank calls it on the same gathered inputs), so the
trainer's step reads: collate, log-probs, `step_advantages`, shard. Token-level estimators (gae, reinforce_pp)
take `TokenInputs` (the step's `[N, T]` masks, per-token KL, a critic's values) instead: the shaped sequence
reward goes on each row's last token, the KL term onto every token (`token_level_rewards`), and the result is
`[N, T]` advantages plus the returns a critic regresses on.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from reasoner.algorithms.advantages import ADVANTAGE_ESTIMATORS, compute_advantages, is_token_level
from reasoner.algorithms.shaping import overlong_penalty
from reasoner.algorithms.token_advantages import compute_token_advantages, token_level_rewards


@dataclass
class StepAdvantages:
    rewards: Tensor            # [N] float32: what the estimator saw (totals + shaping - beta * KL)
    advantages: Tensor         # [N] float32; [N, T] for token-level estimators
    keep: Tensor               # [K] long: rows (global indices, whole groups) that go into the update
    groups_kept: int | None    # with the zero-variance filter: how many groups survived; else None
    returns: Tensor | None = None   # [N, T] float32, token-level estimators: returns (a critic's targets)


@dataclass
class TokenInputs:
    """The step's per-token inputs of a token-level estimator (every rank holds the whole step's rows)."""

    mask: Tensor                    # [N, T] 1.0 on tokens that carry loss
    kl: Tensor | None = None        # [N, T] per-token KL estimates of the sampling policy vs the reference
    values: Tensor | None = None    # [N, T] the critic's V(s_t) when the rollouts were scored (gae)


def zero_variance_keep(rewards: Tensor, group_size: int) -> Tensor:
    """`[K]` indices of the rows of groups whose rewards are not all equal (DAPO's dynamic-sampling filter).

    `rewards` `[N]` with groups of `group_size` contiguous rows; whole groups are kept, in order."""
    grouped = rewards.view(-1, group_size)
    keep_groups = (grouped.max(dim=1).values > grouped.min(dim=1).values).nonzero().flatten().cpu()
    return (keep_groups[:, None] * group_size + torch.arange(group_size)).flatten()


def step_advantages(
    rewards: Tensor,
    group_size: int,
    *,
    estimator: str,
    options: Mapping[str, Any] | None = None,
    lengths: Tensor | None = None,
    max_length: int | None = None,
    overlong_buffer: int = 0,
    overlong_penalty_value: float = 1.0,
    sequence_kl: Tensor | None = None,
    kl_beta: float = 0.0,
    filter_zero_variance: bool = False,
    tokens: TokenInputs | None = None,
) -> StepAdvantages:
    """Shape the rewards, estimate advantages and pick the rows to train on, for one step.

    Args:
        rewards: `[N]` sequence rewards, groups of `group_size` contiguous rows.
        estimator: a name in `ADVANTAGE_ESTIMATORS`; `options` may hold more keys than it takes (e.g. every
            field of the algorithm section): only the estimator's own options are passed on.
        lengths, max_length, overlong_buffer, overlong_penalty_value: DAPO's overlong shaping of `[N]` response
            lengths (off when `overlong_buffer` is 0).
        sequence_kl, kl_beta: KL in the reward: `rewards - kl_beta * sequence_kl` (`[N]`, off when None).
        filter_zero_variance: keep only groups whose shaped rewards are not all equal.
        tokens: per-token inputs, needed by (and only by) token-level estimators; their KL term is
            `kl_beta * tokens.kl` per token (`sequence_kl` is then not taken).
    """
    rewards = rewards.to(torch.float32)
    if overlong_buffer > 0:
        if lengths is None or max_length is None:
            raise ValueError("overlong shaping needs the response lengths and max_length")
        rewards = rewards + overlong_penalty(lengths, max_length=max_length, buffer=overlong_buffer,
                                             penalty=overlong_penalty_value).to(rewards.device)
    picked = ADVANTAGE_ESTIMATORS.pick_options(estimator, options or {})
    returns = None
    if is_token_level(estimator):
        if tokens is None or sequence_kl is not None:
            raise ValueError(f"advantage estimator {estimator!r} is token-level: pass `tokens` (with the KL per "
                             "token in tokens.kl), not `sequence_kl`")
        token_rewards = token_level_rewards(rewards, tokens.mask, kl=tokens.kl, kl_beta=kl_beta)
        rewards = token_rewards.sum(dim=1).to(torch.float32)
        advantages, returns = compute_token_advantages(estimator, token_rewards, tokens.mask, values=tokens.values,
                                                       **picked)
    else:
        if tokens is not None:
            raise ValueError(f"advantage estimator {estimator!r} is sequence-level: it takes no `tokens`")
        if sequence_kl is not None and kl_beta > 0:
            rewards = rewards - kl_beta * sequence_kl.to(rewards.device, torch.float32)
        advantages = compute_advantages(estimator, rewards, group_size, **picked)
    if filter_zero_variance:
        keep = zero_variance_keep(rewards, group_size)
        groups_kept: int | None = len(keep) // group_size
    else:
        keep, groups_kept = torch.arange(len(rewards)), None
    return StepAdvantages(rewards=rewards, advantages=advantages, keep=keep, groups_kept=groups_kept,
                          returns=returns)
