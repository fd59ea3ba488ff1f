"""GRPO-family algorithms as pure functions over tensors, each family in a registry keyed by name.

Shapes: `N` sequences (prompts x group size, the G completions of a prompt contiguous), `T` response tokens
(padded), `V` vocabulary; `mask[N, T]` is 1.0 on real response tokens.

    compute_advantages(name, rewards[N], group_size, **options) -> [N]     ADVANTAGE_ESTIMATORS
    kl_penalty(name, logprobs[N,T], ref_logprobs[N,T]) -> [N,T]            KL_ESTIMATORS
    apply_kl_to_rewards(rewards[N], kl[N,T], mask, beta) -> [N]             sequence_kl(kl, mask) -> [N]
    compute_token_advantages(name, token_rewards[N,T], mask, values=...) -> ([N,T], [N,T])   gae, reinforce_pp
    token_level_rewards(rewards[N], mask[N,T], kl=[N,T], kl_beta) -> [N,T]
    step_advantages(rewards[N], G, estimator=..., tokens=TokenInputs) -> StepAdvantages   (shaping, KL, estimator,
                                                                                           filter)
    value_loss(values, old_values, returns, mask[N,T], cliprange_value=...) -> (scalar, ValueLossStats)
    preference_loss(name, PairLogps([B] x 6), ...) -> (scalar, PreferenceStats)   PREFERENCE_LOSSES (DPO, IPO)
    pair_indices(rewards[N], lengths[N], groups[N], rule=...) -> [K, 2]   (chosen, rejected) within prompts
    GROUP_REWARDS[name](lengths[N], correct[N], G, **options) -> [N]   length_penalty (Kimi), cosine_length
    aggregate_loss(loss[N,T], mask[N,T], mode, ...) -> scalar              LOSS_AGGREGATIONS
    policy_loss(logprobs, old_logprobs, advantages, mask, ...) -> (scalar, PolicyLossStats)   POLICY_LOSSES
        (ppo_clip; gspo, gspo_token, gmpo in sequence_losses; cispo, sapo in reweighted_losses)
    rollout_correction(old_logprobs[N,T], engine_logprobs[N,T], mask, ...) -> RolloutCorrection
    token_logprobs(logits[N,T,V], token_ids[N,T], temperature) -> [N,T]
    entropy_from_logits(logits[N,T,V]) -> [N,T]

GRPO, DAPO and Dr. GRPO are then configurations, e.g. DAPO = grpo advantages + clip_high=0.28 + token-mean;
Dr. GRPO = dr_grpo advantages + seq-mean-token-sum-norm.
"""
from reasoner.algorithms import reweighted_losses, sequence_losses  # noqa: F401  (they register their losses)
from reasoner.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    TOKEN_LEVEL_ESTIMATORS,
    compute_advantages,
    is_token_level,
    needs_critic,
)
from reasoner.algorithms.aggregation import LOSS_AGGREGATIONS, aggregate_loss, global_counts
from reasoner.algorithms.entropy import entropy_from_logits, token_logprobs
from reasoner.algorithms.kl import KL_ESTIMATORS, apply_kl_to_rewards, kl_penalty, sequence_kl
from reasoner.algorithms.linear_logprobs import linear_token_logprobs
from reasoner.algorithms.policy_loss import POLICY_LOSSES, PolicyLossStats, policy_loss
from reasoner.algorithms.preference import (
    PAIR_RULES,
    PREFERENCE_LOSSES,
    PairLogps,
    PreferenceStats,
    pair_indices,
    preference_loss,
)
from reasoner.algorithms.registry import Registry, UnknownNameError
from reasoner.algorithms.rollout_correction import RolloutCorrection, rollout_correction
from reasoner.algorithms.shaping import GROUP_REWARDS, overlong_penalty
from reasoner.algorithms.step import StepAdvantages, TokenInputs, step_advantages, zero_variance_keep
from reasoner.algorithms.token_advantages import compute_token_advantages, masked_whiten, token_level_rewards
from reasoner.algorithms.value_loss import ValueLossStats, explained_variance, value_loss

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "GROUP_REWARDS",
    "KL_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "PAIR_RULES",
    "POLICY_LOSSES",
    "PREFERENCE_LOSSES",
    "PairLogps",
    "PolicyLossStats",
    "PreferenceStats",
    "Registry",
    "RolloutCorrection",
    "StepAdvantages",
    "TOKEN_LEVEL_ESTIMATORS",
    "TokenInputs",
    "UnknownNameError",
    "ValueLossStats",
    "aggregate_loss",
    "apply_kl_to_rewards",
    "compute_advantages",
    "compute_token_advantages",
    "entropy_from_logits",
    "explained_variance",
    "global_counts",
    "is_token_level",
    "kl_penalty",
    "linear_token_logprobs",
    "masked_whiten",
    "needs_critic",
    "overlong_penalty",
    "pair_indices",
    "policy_loss",
    "preference_loss",
    "rollout_correction",
    "sequence_kl",
    "step_advantages",
    "token_level_rewards",
    "token_logprobs",
    "value_loss",
    "zero_variance_keep",
]
