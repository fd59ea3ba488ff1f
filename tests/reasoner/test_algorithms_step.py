"""The step's algebra (`reasoner.algorithms.step`), reward shaping and the per-step rollout metrics, by hand."""
from __future__ import annotations

import pytest
import torch

from reasoner.algorithms import (
    ADVANTAGE_ESTIMATORS,
    POLICY_LOSSES,
    compute_advantages,
    overlong_penalty,
    step_advantages,
    zero_variance_keep,
)
from reasoner.metrics.rollout_stats import rollout_metrics
from reasoner.training.config import AlgorithmConfig


def test_overlong_penalty_is_zero_then_a_linear_ramp_then_the_full_penalty():
    # max_length 10, buffer 4: free up to 6 tokens, -1/4 per token after, -penalty from 10 on
    lengths = torch.tensor([0, 6, 7, 8, 10, 12])
    got = overlong_penalty(lengths, max_length=10, buffer=4, penalty=2.0)
    assert got.tolist() == [0.0, 0.0, -0.5, -1.0, -2.0, -2.0]
    with pytest.raises(ValueError, match="buffer must be in"):
        overlong_penalty(lengths, max_length=10, buffer=11)


def test_zero_variance_keep_drops_groups_whose_rewards_are_all_equal():
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 0.0, 0.0])  # groups of 2: only the second is mixed
    assert zero_variance_keep(rewards, 2).tolist() == [2, 3]
    assert zero_variance_keep(rewards, 4).tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert zero_variance_keep(torch.zeros(4), 2).tolist() == []


def test_step_advantages_applies_shaping_then_kl_then_the_estimator_then_the_filter():
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0])
    lengths = torch.tensor([4, 10, 4, 4])
    seq_kl = torch.tensor([0.0, 0.0, 2.0, 0.0])
    step = step_advantages(rewards, 2, estimator="dr_grpo", lengths=lengths, max_length=10, overlong_buffer=4,
                           overlong_penalty_value=1.0, sequence_kl=seq_kl, kl_beta=0.5,
                           filter_zero_variance=True)
    # shaped: [1, 1 - 1, 0 - 0.5 * 2, 0] = [1, 0, -1, 0]; dr_grpo: r - group mean
    assert step.rewards.tolist() == [1.0, 0.0, -1.0, 0.0]
    assert step.advantages.tolist() == [0.5, -0.5, -0.5, 0.5]
    assert step.keep.tolist() == [0, 1, 2, 3] and step.groups_kept == 2
    # the filter sees the shaped rewards: without shaping both groups are constant
    plain = step_advantages(rewards, 2, estimator="grpo", filter_zero_variance=True)
    assert plain.keep.tolist() == [] and plain.groups_kept == 0 and plain.advantages.tolist() == [0.0] * 4
    assert step_advantages(rewards, 2, estimator="grpo").groups_kept is None


def test_step_advantages_passes_each_estimator_only_its_own_options():
    algo = vars(AlgorithmConfig(advantage_eps=0.5, clip_low=0.1))
    rewards = torch.tensor([1.0, 0.0, 3.0, 1.0], dtype=torch.float64)
    got = step_advantages(rewards, 2, estimator="grpo", options=algo).advantages
    assert torch.allclose(got, compute_advantages("grpo", rewards, 2, advantage_eps=0.5))
    assert not torch.allclose(got, compute_advantages("grpo", rewards, 2))  # the option took effect
    step_advantages(rewards, 2, estimator="rloo", options=algo)  # rloo takes no options: none are passed
    with pytest.raises(ValueError, match="'rloo' takes no option 'advantage_eps'"):
        compute_advantages("rloo", rewards, 2, advantage_eps=0.5)


def test_registries_name_the_options_each_function_takes():
    assert ADVANTAGE_ESTIMATORS.option_names("grpo") == ("std_unbiased", "advantage_eps")
    assert ADVANTAGE_ESTIMATORS.option_names("rloo") == ()
    assert POLICY_LOSSES.option_names("ppo_clip") == ("clip_low", "clip_high", "dual_clip")
    picked = POLICY_LOSSES.pick_options("gspo", vars(AlgorithmConfig(clip_low=0.1, dual_clip=3.0)))
    assert picked == {"clip_low": 0.1, "clip_high": None, "dual_clip": 3.0}


def test_rollout_metrics_by_hand():
    # 2 groups of 2: rewards [1, 0 | 1, 1], lengths [3, 5 | 4, 8], the last one truncated
    m = rollout_metrics(rewards=[1.0, 0.0, 1.0, 1.0], correct=[True, False, True, True], lengths=[3, 5, 4, 8],
                        truncated=[False, False, False, True], group_size=2,
                        verifier_values={"math": [1.0, 0.0, 1.0, 1.0]},
                        status_counts={"math": {"correct": 3, "wrong": 1}})
    assert m["reward/mean"] == 0.75 and m["reward/std"] == pytest.approx(0.4330127)
    assert m["reward/math/mean"] == 0.75
    assert m["status/math/correct"] == 0.75 and m["status/math/wrong"] == 0.25
    assert m["pass@1"] == 0.75 and m["pass@G"] == 1.0           # (1/2 + 1) / 2; both groups solved
    assert (m["length/mean"], m["length/min"], m["length/max"]) == (5.0, 3.0, 8.0)
    assert m["length/correct/mean"] == 5.0 and m["length/incorrect/mean"] == 5.0
    assert m["length/truncated/mean"] == 8.0 and m["truncation_ratio"] == 0.25
    assert m["zero_variance_groups"] == 0.5                       # the second group is all 1s


def test_plot_smoothing_is_a_debiased_moving_average():
    from reasoner.metrics.plots import smooth

    assert smooth([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])  # debiased: no pull towards 0
    assert smooth([0.0, 1.0], 0.5) == pytest.approx([0.0, 2 / 3])         # (0.5*0 + 0.5*1) / (1 - 0.25)
    assert smooth([3.0, 5.0], 0.0) == [3.0, 5.0]
