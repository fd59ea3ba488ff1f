"""GRPO-family algorithms as pure functions over tensors, each family in a registry keyed by name.

Shapes: `N` sequences (prompts x group size, the G completions of a prompt contiguous), `T` response tokens
(padded), `V` vocabulary; `mask[N, T]` is 1.0 on real response tokens.

    compute_advantages(name, rewards[N], group_size, **options) -> [N]     ADVANTAGE_ESTIMATORS
    kl_penalty(name, logprobs[N,T], ref_logprobs[N,T]) -> [N,T]            KL_ESTIMATORS
    apply_kl_to_rewards(rewards[N], kl[N,T], mask, beta) -> [N]             sequence_kl(kl, mask) -> [N]
    step_advantages(rewards[N], G, estimator=..., ...) -> StepAdvantages    (shaping, KL, estimator, filter)
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
from reasoner.algorithms.advantages import ADVANTAGE_ESTIMATORS, compute_advantages
from reasoner.algorithms.aggregation import LOSS_AGGREGATIONS, aggregate_loss, global_counts
from reasoner.algorithms.entropy import entropy_from_logits, token_logprobs
from reasoner.algorithms.kl import KL_ESTIMATORS, apply_kl_to_rewards, kl_penalty, sequence_kl
from reasoner.algorithms.linear_logprobs import linear_token_logprobs
from reasoner.algorithms.policy_loss import POLICY_LOSSES, PolicyLossStats, policy_loss
from reasoner.algorithms.registry import Registry, UnknownNameError
from reasoner.algorithms.rollout_correction import RolloutCorrection, rollout_correction
from reasoner.algorithms.shaping import overlong_penalty
from reasoner.algorithms.step import StepAdvantages, step_advantages, zero_variance_keep

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "KL_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "POLICY_LOSSES",
    "PolicyLossStats",
    "Registry",
    "RolloutCorrection",
    "StepAdvantages",
    "UnknownNameError",
    "aggregate_loss",
    "apply_kl_to_rewards",
    "compute_advantages",
    "entropy_from_logits",
    "global_counts",
    "kl_penalty",
    "linear_token_logprobs",
    "overlong_penalty",
    "policy_loss",
    "rollout_correction",
    "sequence_kl",
    "step_advantages",
    "token_logprobs",
    "zero_variance_keep",
]
