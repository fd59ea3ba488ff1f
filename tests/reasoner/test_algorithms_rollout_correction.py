"""Rollout correction: equal to TRL's and verl's code in float64, hand-computed statistics, option checks.

References, transcribed literally (metrics left out) at the commits read:
- TRL  huggingface/trl @ f2cd577, trl/trainer/grpo_trainer.py, `GRPOTrainer._generate_and_score_completions`
  (the `vllm_importance_sampling_mode` block, and the `sampling_logp_difference` metrics);
- verl volcengine/verl @ b178a3c, verl/trainer/ppo/rollout_corr_helper.py, `compute_rollout_correction_weights`
  and `compute_rollout_rejection_mask` (options token_k1 / seq_sum_k1 / seq_mean_k1); and the same file at
  2f2996b (its earlier `compute_rollout_rejection_mask` with levels token / sequence / geometric).
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from reasoner.algorithms.rollout_correction import (
    RolloutCorrection,
    check_options,
    mismatch_metrics,
    mismatch_totals,
    rollout_correction,
)

TOL = dict(atol=1e-6, rtol=1e-6)
SAFETY_BOUND = 20.0


def masked_sum(values, mask, axis=None):  # verl/utils/torch_functional.py
    valid_values = torch.where(mask.bool(), values, 0.0)
    return (valid_values * mask).sum(axis=axis)


def masked_mean(values, mask, axis=None):
    s = masked_sum(values, mask, axis)
    return s / (mask.sum(axis=axis) + 1e-8)


def trl_importance_sampling_ratio(old_per_token_logps, sampling_per_token_logps, completion_mask, mode,
                                  clip_min, clip_max):
    mask = completion_mask
    per_token_logps_diff = (old_per_token_logps - sampling_per_token_logps) * mask
    sequence_level_is = mode in ["sequence_mask", "sequence_truncate"]
    if sequence_level_is:
        per_sequence_logps_diff = per_token_logps_diff.sum(dim=-1, keepdim=True)
        logps_diff = per_sequence_logps_diff
    else:
        logps_diff = per_token_logps_diff
    vllm_importance_sampling_ratio = torch.exp(logps_diff)
    if mode in ["sequence_truncate", "token_truncate"]:
        vllm_importance_sampling_ratio = torch.clamp(vllm_importance_sampling_ratio, min=clip_min, max=clip_max)
    elif mode in ["sequence_mask", "token_mask"]:
        min_val = clip_min if clip_min is not None else -math.inf
        max_val = clip_max if clip_max is not None else math.inf
        invalid_mis_mask = (vllm_importance_sampling_ratio < min_val) | (vllm_importance_sampling_ratio > max_val)
        vllm_importance_sampling_ratio = vllm_importance_sampling_ratio.masked_fill(invalid_mis_mask, value=0.0)
    return vllm_importance_sampling_ratio


def verl_correction_weights(log_ratio, response_mask, rollout_is, rollout_is_threshold):
    """compute_rollout_correction_weights, rollout_is_batch_normalize=False."""
    if rollout_is == "token":
        log_ratio_safe = torch.clamp(log_ratio, min=-SAFETY_BOUND, max=SAFETY_BOUND)
        rollout_is_weights = torch.exp(log_ratio_safe)
    elif rollout_is == "sequence":
        log_ratio_sum = masked_sum(log_ratio, response_mask, axis=-1).unsqueeze(-1)
        log_ratio_sum_safe = torch.clamp(log_ratio_sum, min=-SAFETY_BOUND, max=SAFETY_BOUND)
        rollout_is_weights = torch.exp(log_ratio_sum_safe).expand_as(log_ratio)
    rollout_is_weights = rollout_is_weights * response_mask
    rollout_is_weights = rollout_is_weights.clamp(max=rollout_is_threshold)
    return rollout_is_weights.detach()


def verl_rejection_mask_2f2996b(log_ratio, response_mask, rollout_rs, rollout_rs_threshold,
                                rollout_rs_threshold_lower=None):
    """compute_rollout_rejection_mask as of 2f2996b: levels token / sequence / geometric."""
    upper_threshold = rollout_rs_threshold
    lower_threshold = rollout_rs_threshold_lower if rollout_rs_threshold_lower is not None else 1.0 / upper_threshold
    if rollout_rs == "token":
        log_ratio_safe = torch.clamp(log_ratio, min=-SAFETY_BOUND, max=SAFETY_BOUND)
        rollout_is_weights = torch.exp(log_ratio_safe)
    elif rollout_rs == "sequence":
        log_ratio_sum = masked_sum(log_ratio, response_mask, axis=-1).unsqueeze(-1)
        log_ratio_sum_safe = torch.clamp(log_ratio_sum, min=-SAFETY_BOUND, max=SAFETY_BOUND)
        rollout_is_weights = torch.exp(log_ratio_sum_safe).expand_as(log_ratio)
    elif rollout_rs == "geometric":
        log_ratio_mean = masked_mean(log_ratio, response_mask, axis=-1).unsqueeze(-1)
        log_ratio_mean_safe = torch.clamp(log_ratio_mean, min=-SAFETY_BOUND, max=SAFETY_BOUND)
        rollout_is_weights = torch.exp(log_ratio_mean_safe).expand_as(log_ratio)
    mask = (rollout_is_weights >= lower_threshold) & (rollout_is_weights <= upper_threshold)
    mask = mask.float()
    return response_mask * mask


def verl_rejection_mask_k1(log_ratio, response_mask, option_name, lower, upper):
    """compute_rollout_rejection_mask (HEAD) for one `*_k1` option with threshold spec "lower_upper"."""
    log_ratio_safe = torch.clamp(log_ratio, min=-SAFETY_BOUND, max=SAFETY_BOUND)
    token_k1 = -log_ratio_safe
    lower_log, upper_log = math.log(lower), math.log(upper)
    if option_name == "token_k1":
        token_keep_bool = (token_k1 >= lower_log) & (token_k1 <= upper_log)
    else:
        if option_name == "seq_sum_k1":
            seq_stat = masked_sum(token_k1, response_mask, axis=-1)
        else:  # seq_mean_k1
            seq_stat = masked_mean(token_k1, response_mask, axis=-1)
        seq_keep_bool_direct = (seq_stat >= lower_log) & (seq_stat <= upper_log)
        token_keep_bool = seq_keep_bool_direct.unsqueeze(-1).expand_as(response_mask.bool())
    combined_mask = torch.ones_like(response_mask, dtype=log_ratio.dtype) * token_keep_bool.to(log_ratio.dtype)
    return (response_mask * combined_mask).to(dtype=response_mask.dtype)


def case(seed: int):
    """`(old, engine, mask)` float64, ragged with an empty row; per-token gaps of std 0.4, per-row offsets."""
    gen = torch.Generator().manual_seed(seed)
    n, t = [(8, 12), (5, 3), (10, 20)][seed]
    engine = -torch.rand(n, t, generator=gen, dtype=torch.float64) * 4
    old = engine + 0.4 * torch.randn(n, t, generator=gen, dtype=torch.float64)
    old = old + 0.05 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    lengths = torch.randint(1, t + 1, (n,), generator=gen)
    lengths[1] = 0
    mask = (torch.arange(t) < lengths.unsqueeze(1)).double()
    return old, engine, mask


SEEDS = pytest.mark.parametrize("seed", range(3))


@SEEDS
@pytest.mark.parametrize("mode", ["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"])
@pytest.mark.parametrize("bounds", [(None, 3.0), (0.5, 2.0), (0.8, None)], ids=str)
def test_importance_weights_equal_trl(seed, mode, bounds):
    old, engine, mask = case(seed)
    clip_min, clip_max = bounds
    level, is_mode = mode.split("_")
    ours = rollout_correction(old, engine, mask, is_level=level, is_mode=is_mode, is_min=clip_min, is_max=clip_max)
    ref = trl_importance_sampling_ratio(old, engine, mask, mode, clip_min, clip_max).expand_as(old)
    real = mask != 0
    assert_close(ours.weights[real], ref[real], **TOL)
    assert ours.keep is None


@SEEDS
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("threshold", [2.0, 1.1])
def test_importance_weights_equal_verl(seed, level, threshold):
    old, engine, mask = case(seed)
    ours = rollout_correction(old, engine, mask, is_level=level, is_max=threshold)
    ref = verl_correction_weights(old - engine, mask, level, threshold)
    real = mask != 0
    assert_close(ours.weights[real], ref[real], **TOL)


@SEEDS
@pytest.mark.parametrize("level", ["token", "sequence", "geometric"])
@pytest.mark.parametrize("bounds", [(None, 1.5), (0.9, 1.2), (0.5, 4.0)], ids=str)
def test_rejection_equals_verl(seed, level, bounds):
    old, engine, mask = case(seed)
    low, high = bounds
    ours = rollout_correction(old, engine, mask, rs_level=level, rs_min=low, rs_max=high)
    ref = verl_rejection_mask_2f2996b(old - engine, mask, level, high, low)
    assert torch.equal(mask * ours.keep, ref)
    # verl's current names for the same tests: token_k1 / seq_sum_k1 / seq_mean_k1 bound π_engine / π_old in
    # log space, "lower_upper" -> our [1 / upper, 1 / lower] on π_old / π_engine
    option = {"token": "token_k1", "sequence": "seq_sum_k1", "geometric": "seq_mean_k1"}[level]
    lower = 1.0 / high
    upper = 1.0 / low if low is not None else high
    head = verl_rejection_mask_k1(old - engine, mask, option, lower, upper)
    assert torch.equal(mask * ours.keep, head)


def test_the_cases_reject_some_and_keep_some():
    """Guard against a vacuous comparison."""
    for level in ("token", "sequence", "geometric"):
        old, engine, mask = case(2)
        keep = rollout_correction(old, engine, mask, rs_level=level, rs_min=0.9, rs_max=1.2).keep
        real = mask != 0
        assert (keep & real).any() and (~keep & real).any(), level


def test_hand_computed_statistics():
    # two rows; log ρ = old - engine: row 0 [0.5, -0.1, (pad)], row 1 [2.0, 0.0, 0.1]
    old = torch.tensor([[0.5, -0.1, 9.0], [2.0, 0.0, 0.1]], dtype=torch.float64)
    engine = torch.zeros(2, 3, dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    corr = rollout_correction(old, engine, mask, is_level="token", is_max=1.5, rs_level="token", rs_max=2.0)
    # weights min(e^lr, 1.5): [1.5, e^-0.1, -, 1.5, 1, e^0.1]; two of five truncated
    assert_close(corr.weights[mask != 0], torch.tensor([1.5, math.exp(-0.1), 1.5, 1.0, math.exp(0.1)],
                                                       dtype=torch.float64))
    # rejection [1/2, 2]: e^2 = 7.39 is out: one token of five, one sequence of two
    assert corr.keep.tolist() == [[True, True, False], [False, True, True]]
    metrics = mismatch_metrics(*mismatch_totals(old, engine, mask, corr))
    lrs = [0.5, -0.1, 2.0, 0.0, 0.1]
    expected = {
        "log_ratio_mean": sum(lrs) / 5, "log_ratio_abs_max": 2.0,
        "kl_k3": sum(math.exp(x) - 1 - x for x in lrs) / 5,
        "weight_mean": (1.5 + math.exp(-0.1) + 1.5 + 1.0 + math.exp(0.1)) / 5, "weight_max": 1.5,
        "weight_clipped_fraction": 2 / 5, "rejected_token_fraction": 1 / 5, "rejected_seq_fraction": 1 / 2,
    }
    assert metrics.keys() == {f"rollout_corr/{k}" for k in expected}
    for key, value in expected.items():
        assert metrics[f"rollout_corr/{key}"] == pytest.approx(value, abs=1e-12), key
    # TRL's sampling/sampling_logp_difference/max is the same number: the largest |old - engine| on real tokens
    assert metrics["rollout_corr/log_ratio_abs_max"] == float((old - engine).abs()[mask != 0].max())


def test_mask_mode_zeroes_weights_outside_and_counts_them():
    old = torch.tensor([[0.0, 1.0, -1.0]], dtype=torch.float64)
    mask = torch.ones(1, 3, dtype=torch.float64)
    corr = rollout_correction(old, torch.zeros(1, 3, dtype=torch.float64), mask, is_level="token", is_mode="mask",
                              is_min=0.5, is_max=2.0)
    assert_close(corr.weights, torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))
    sums, _ = mismatch_totals(old, torch.zeros(1, 3), mask, corr)
    assert sums["weight_changed"] == 2


def test_geometric_weights_are_the_sequence_geometric_mean_and_extreme_sums_stay_finite():
    old = torch.tensor([[0.2, 0.4, 0.0], [30.0, 30.0, 30.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    w = rollout_correction(old, torch.zeros(2, 3, dtype=torch.float64), mask, is_level="geometric",
                           is_max=1e12).weights
    assert_close(w[0, :2], torch.full((2,), math.exp(0.3), dtype=torch.float64))
    assert_close(w[1], torch.full((3,), math.exp(20.0), dtype=torch.float64))  # the log is clamped at 20


def test_option_checks_name_the_option():
    assert check_options(None, "truncate", None, 2.0, None, None, None) is None
    assert check_options("seq", "truncate", None, 2.0, None, None, None).startswith("rollout_is:")
    assert check_options("token", "clip", None, 2.0, None, None, None).startswith("rollout_is_mode:")
    assert check_options("token", "truncate", None, None, None, None, None).startswith("rollout_is_max:")
    assert check_options("token", "truncate", 3.0, 2.0, None, None, None).startswith("rollout_is_min:")
    assert check_options(None, "truncate", None, 2.0, "token", None, None).startswith("rollout_rs_max:")
    assert check_options(None, "truncate", None, 2.0, "token", None, 0.5).startswith("rollout_rs_max:")
    assert check_options(None, "truncate", None, 2.0, "token", 0.0, 2.0).startswith("rollout_rs_min:")
    with pytest.raises(ValueError, match="rollout_rs_max"):
        rollout_correction(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), rs_level="token")


def test_off_is_nothing():
    corr = rollout_correction(torch.zeros(2, 2), torch.ones(2, 2), torch.ones(2, 2))
    assert corr == RolloutCorrection(weights=None, keep=None)
    metrics = mismatch_metrics(*mismatch_totals(torch.zeros(2, 2), torch.ones(2, 2), torch.ones(2, 2), corr))
    assert set(metrics) == {"rollout_corr/log_ratio_mean", "rollout_corr/log_ratio_abs_max", "rollout_corr/kl_k3"}
