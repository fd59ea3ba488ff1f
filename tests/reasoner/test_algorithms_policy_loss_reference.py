"""Every registered policy loss equals its peers' code (TRL, verl) on random ragged batches, in float64.

The reference functions below are literal transcriptions of the peers' loss code (metrics left out), cited by
file and function at the commits read:
- TRL  huggingface/trl @ f2cd577, trl/trainer/grpo_trainer.py, `GRPOTrainer._compute_loss`;
- verl volcengine/verl @ b178a3c, verl/trainer/ppo/core_algos.py, the `@register_policy_loss` functions and
  `agg_loss`; verl/utils/torch_functional.py `masked_sum` / `masked_mean`.

Each check compares (1) the per-token loss on real tokens, (2) the aggregated loss under each shared mode and
(3) its gradient with respect to the log-probs, to 1e-6, on batches with an empty row, a one-token row, a
zero-advantage row, advantages of both signs (per sequence and per token), ratios far outside the clip range,
and (seed 2) importance weights on the per-token loss.
"""
from __future__ import annotations

import pytest
import torch

from reasoner.algorithms import POLICY_LOSSES, policy_loss

TOL = dict(atol=1e-6, rtol=1e-6)
MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]


# ---- verl/utils/torch_functional.py ----

def masked_sum(values, mask, axis=None):
    valid_values = torch.where(mask.bool(), values, 0.0)
    return (valid_values * mask).sum(axis=axis)


def masked_mean(values, mask, axis=None):
    s = masked_sum(values, mask, axis)
    return s / (mask.sum(axis=axis) + 1e-8)


# ---- the shared aggregations, as the peers write them ----

def verl_agg_loss(loss_mat, loss_mask, loss_agg_mode):
    """verl `agg_loss` (dp_size=1, local counts) for token-mean and seq-mean-token-mean."""
    if loss_agg_mode == "token-mean":
        batch_num_tokens = loss_mask.sum()
        return masked_sum(loss_mat, loss_mask) / batch_num_tokens
    if loss_agg_mode == "seq-mean-token-mean":
        seq_mask = torch.sum(loss_mask, dim=-1)
        seq_losses = torch.sum(loss_mat * loss_mask, dim=-1) / (seq_mask + 1e-8)
        seq_mask = (seq_mask > 0).float()
        global_batch_size = seq_mask.sum()
        return masked_sum(seq_losses, seq_mask) / global_batch_size
    raise ValueError(loss_agg_mode)


def trl_dr_grpo(per_token_loss, mask, max_completion_length):
    """TRL `loss_type == "dr_grpo"`. (verl's `seq-mean-token-sum-norm` is `sum / loss_scale_factor`, without the
    division by the number of sequences that Dr. GRPO and TRL have; reasoner follows TRL.)"""
    return (per_token_loss * mask).sum() / (per_token_loss.size(0) * max_completion_length)


def reference_aggregate(per_token_loss, mask, mode):
    if mode == "seq-mean-token-sum-norm":
        return trl_dr_grpo(per_token_loss, mask, max_completion_length=mask.shape[1])
    return verl_agg_loss(per_token_loss, mask, mode)


def our_counts(mask, mode):
    """The denominators the peers use, passed to ours: TRL's dr_grpo counts every row, empty ones included."""
    return {"num_seqs": mask.shape[0], "norm_length": mask.shape[1]} if mode == "seq-mean-token-sum-norm" else {}


# ---- TRL: GRPOTrainer._compute_loss, from `log_ratio = ...` to the `loss_type` branches ----

def trl_per_token_loss(per_token_logps, old_per_token_logps, advantages, mask, *, loss_type,
                       importance_sampling_level="token", epsilon_low=0.2, epsilon_high=0.2, delta=None,
                       sapo_temperature_pos=1.0, sapo_temperature_neg=1.05):
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    log_ratio = per_token_logps - old_per_token_logps
    if importance_sampling_level == "token":
        log_importance_weights = log_ratio
    elif importance_sampling_level == "sequence":
        log_importance_weights = (log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        log_importance_weights = log_importance_weights.unsqueeze(-1)
    coef_1 = torch.exp(log_importance_weights)
    if loss_type == "cispo":
        clamped_ratios = torch.clamp(coef_1, max=epsilon_high).detach()
        per_token_loss = -clamped_ratios * advantages * per_token_logps
    elif loss_type in ["grpo", "bnpo", "dr_grpo", "dapo", "luspo"]:
        coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
        if delta is not None:
            coef_1 = torch.clamp(coef_1, max=delta)
        per_token_loss1 = coef_1 * advantages
        per_token_loss2 = coef_2 * advantages
        per_token_loss = -torch.min(per_token_loss1, per_token_loss2)
    elif loss_type == "sapo":
        temperatures = torch.where(advantages > 0, sapo_temperature_pos, sapo_temperature_neg)
        soft_coef_1 = torch.sigmoid(temperatures * (coef_1 - 1)) * 4 / temperatures
        per_token_loss = -soft_coef_1 * advantages
    return per_token_loss


# ---- verl: core_algos.py, each loss up to its `pg_losses` (rollout_is_weights applied as verl does) ----

def verl_vanilla(old_log_prob, log_prob, advantages, response_mask, *, cliprange_low, cliprange_high,
                 clip_ratio_c, rollout_is_weights=None):
    """compute_policy_loss_vanilla"""
    negative_approx_kl = log_prob - old_log_prob
    negative_approx_kl = torch.clamp(negative_approx_kl, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1 - cliprange_low, 1 + cliprange_high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_losses3 = -advantages * clip_ratio_c
    clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
    pg_losses = torch.where(advantages < 0, clip_pg_losses2, clip_pg_losses1)
    if rollout_is_weights is not None:
        pg_losses = pg_losses * rollout_is_weights
    return pg_losses


def verl_gspo(old_log_prob, log_prob, advantages, response_mask, *, clip_ratio_low, clip_ratio_high,
              rollout_is_weights=None):
    """compute_policy_loss_gspo"""
    negative_approx_kl = log_prob - old_log_prob
    seq_lengths = torch.sum(response_mask, dim=-1).clamp(min=1)
    negative_approx_kl_seq = torch.sum(negative_approx_kl * response_mask, dim=-1) / seq_lengths
    log_seq_importance_ratio = log_prob - log_prob.detach() + negative_approx_kl_seq.detach().unsqueeze(-1)
    log_seq_importance_ratio = torch.clamp(log_seq_importance_ratio, max=10.0)
    seq_importance_ratio = torch.exp(log_seq_importance_ratio)
    pg_losses1 = -advantages * seq_importance_ratio
    pg_losses2 = -advantages * torch.clamp(seq_importance_ratio, 1 - clip_ratio_low, 1 + clip_ratio_high)
    pg_losses = torch.maximum(pg_losses1, pg_losses2)
    if rollout_is_weights is not None:
        pg_losses = pg_losses * rollout_is_weights
    return pg_losses


def verl_sapo(old_log_prob, log_prob, advantages, response_mask, *, tau_pos, tau_neg, rollout_is_weights=None):
    """compute_policy_loss_sapo"""
    tau_pos = torch.as_tensor(tau_pos, dtype=advantages.dtype, device=advantages.device)
    tau_neg = torch.as_tensor(tau_neg, dtype=advantages.dtype, device=advantages.device)

    def gate_function(x, tau):
        return torch.sigmoid(tau * (x - 1.0)) * (4.0 / tau)

    negative_approx_kl = log_prob - old_log_prob
    negative_approx_kl = torch.clamp(negative_approx_kl, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    taus = torch.where(condition=advantages > 0, input=tau_pos, other=tau_neg)
    gates = gate_function(ratio, taus)
    pg_losses = -gates * advantages
    if rollout_is_weights is not None:
        pg_losses = pg_losses * rollout_is_weights
    return pg_losses


def verl_cispo(old_log_prob, log_prob, advantages, response_mask, *, clip_ratio_low, clip_ratio_high,
               rollout_is_weights=None):
    """compute_policy_loss_cispo"""
    negative_approx_kl = log_prob - old_log_prob
    negative_approx_kl = torch.clamp(negative_approx_kl, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    clipped_ratio = torch.clamp(ratio, 1 - clip_ratio_low, 1 + clip_ratio_high)
    clipped_ratio_sg = clipped_ratio.detach()
    pg_losses = -clipped_ratio_sg * advantages * log_prob
    if rollout_is_weights is not None:
        pg_losses = pg_losses * rollout_is_weights
    return pg_losses


def verl_geo_mean(old_log_prob, log_prob, advantages, response_mask, *, cliprange_low, cliprange_high,
                  rollout_is_weights=None):
    """compute_policy_loss_geo_mean: per-sequence `pg_losses` [B] (verl then takes `torch.mean(pg_losses)`)."""
    negative_approx_kl = log_prob - old_log_prob
    sgn_advantage = torch.sign(advantages)
    negative_approx_kl_clamp = torch.clamp(negative_approx_kl, -cliprange_low, cliprange_high)
    negative_approx_kl_min = torch.min(sgn_advantage * negative_approx_kl, sgn_advantage * negative_approx_kl_clamp)
    negative_approx_kl_min = sgn_advantage * negative_approx_kl_min
    response_mask_sum = response_mask.sum(dim=-1)
    ratio = torch.exp((negative_approx_kl_min * response_mask).sum(dim=-1) / (response_mask_sum + 1e-8))
    advantage = (advantages * response_mask).sum(dim=-1) / (response_mask_sum + 1e-8)
    pg_losses = -advantage * ratio
    if rollout_is_weights is not None:
        seq_is_weights = torch.exp(
            (torch.log(rollout_is_weights + 1e-10) * response_mask).sum(dim=-1) / (response_mask_sum + 1e-8)
        )
        pg_losses = pg_losses * seq_is_weights
    return pg_losses


# ---- random ragged batches ----

def ragged_case(seed: int, token_advantages: bool, *, seq_constant_weights: bool = False):
    """`(logprobs, old, advantages, mask, is_weights)`, float64; row 1 empty, row 2 one token, row 0 A = 0."""
    gen = torch.Generator().manual_seed(100 + seed)
    n, t = [(7, 13), (9, 5), (6, 21)][seed]
    old = -torch.rand(n, t, generator=gen, dtype=torch.float64) * 3
    # token log-ratios of std 1.2 plus a per-row shift: ratios far outside every clip range, per token and
    # per sequence, but inside the ±10 / ±20 clamps of the peers and ours
    logprobs = old + 1.2 * torch.randn(n, t, generator=gen, dtype=torch.float64)
    logprobs = logprobs + 0.8 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    lengths = torch.randint(2, t + 1, (n,), generator=gen)
    lengths[1], lengths[2] = 0, 1
    mask = (torch.arange(t) < lengths.unsqueeze(1)).double()
    if token_advantages:
        adv = torch.randn(n, t, generator=gen, dtype=torch.float64)
        adv[0] = 0.0
    else:
        adv = torch.randn(n, generator=gen, dtype=torch.float64)
        adv[0] = 0.0
    weights = None
    if seed == 2:
        weights = torch.rand(n, t, generator=gen, dtype=torch.float64) * 2
        if seq_constant_weights:
            weights = weights[:, :1].expand(n, t).clone()
    return logprobs, old, adv, mask, weights


def check(name: str, options: dict, reference, seed: int, token_advantages: bool, *,
          seq_constant_weights: bool = False) -> None:
    """Ours vs `reference(logprobs, old, adv_2d, mask, weights) -> per-token loss [N, T] (or [N, 1])`."""
    logprobs, old, adv, mask, weights = ragged_case(seed, token_advantages, seq_constant_weights=seq_constant_weights)
    n, t = logprobs.shape
    adv_2d = adv if adv.dim() == 2 else adv.unsqueeze(1).expand(n, t)
    real = mask != 0
    assert real.sum() > 10 and (adv_2d[real] > 0).any() and (adv_2d[real] < 0).any()

    ref_lp = logprobs.clone().requires_grad_(True)
    ref_tokens = reference(ref_lp, old, adv, mask, weights).expand(n, t)
    ours_tokens, _ = POLICY_LOSSES.get(name)(logprobs, old, adv_2d, mask, **options)
    if weights is not None:
        ours_tokens = ours_tokens * weights
    torch.testing.assert_close(ours_tokens[real], ref_tokens[real].detach(), **TOL)

    for mode in MODES:
        lp = logprobs.clone().requires_grad_(True)
        ours, _ = policy_loss(lp, old, adv, mask, name=name, loss_agg=mode, is_weights=weights,
                              **our_counts(mask, mode), **options)
        (ours_grad,) = torch.autograd.grad(ours, lp)
        ref = reference_aggregate(reference(ref_lp, old, adv, mask, weights).expand(n, t), mask, mode)
        (ref_grad,) = torch.autograd.grad(ref, ref_lp)
        torch.testing.assert_close(ours, ref.detach(), **TOL, msg=lambda m, mode=mode: f"{mode}: {m}")
        torch.testing.assert_close(ours_grad, ref_grad, **TOL, msg=lambda m, mode=mode: f"{mode} gradient: {m}")
        assert ref_grad.abs().sum() > 0


SEEDS = [0, 1, 2]
ADV = pytest.mark.parametrize("token_advantages", [False, True], ids=["A[N]", "A[N,T]"])


@pytest.mark.parametrize("seed", SEEDS)
@ADV
@pytest.mark.parametrize("clip", [(0.2, 0.2, None), (0.2, 0.28, 3.0), (0.1, 0.5, 1.5)], ids=str)
def test_ppo_clip_equals_verl_vanilla_and_trl_token_level(seed, token_advantages, clip):
    low, high, dual = clip
    ours = {"clip_low": low, "clip_high": high, "dual_clip": dual}
    c = dual if dual is not None else 1e30  # verl always caps at clip_ratio_c; a huge c is no cap
    check("ppo_clip", ours, lambda lp, old, a, m, w: verl_vanilla(
        old, lp, a if a.dim() == 2 else a.unsqueeze(1), m, cliprange_low=low, cliprange_high=high, clip_ratio_c=c,
        rollout_is_weights=w), seed, token_advantages)
    # TRL's `delta` is the same cap when delta > 1 + epsilon_high (true of every config here)
    check("ppo_clip", ours, lambda lp, old, a, m, w: _weighted(trl_per_token_loss(
        lp, old, a, m, loss_type="dapo", epsilon_low=low, epsilon_high=high, delta=dual), w), seed, token_advantages)


def _weighted(per_token_loss, weights):
    """TRL: `per_token_loss = per_token_loss * inputs["importance_sampling_ratio"]`."""
    return per_token_loss if weights is None else per_token_loss * weights


@pytest.mark.parametrize("seed", SEEDS)
@ADV
@pytest.mark.parametrize("clip", [(0.2, 0.2, None), (3e-4, 4e-4, None), (0.2, 0.28, 3.0)], ids=str)
def test_gspo_equals_trl_sequence_level(seed, token_advantages, clip):
    low, high, dual = clip
    check("gspo", {"clip_low": low, "clip_high": high, "dual_clip": dual},
          lambda lp, old, a, m, w: _weighted(trl_per_token_loss(
              lp, old, a, m, loss_type="grpo", importance_sampling_level="sequence", epsilon_low=low,
              epsilon_high=high, delta=dual), w), seed, token_advantages)


@pytest.mark.parametrize("seed", SEEDS)
@ADV
@pytest.mark.parametrize("clip", [(0.2, 0.2), (3e-4, 4e-4), (0.1, 0.5)], ids=str)
def test_gspo_token_equals_verl_gspo(seed, token_advantages, clip):
    low, high = clip
    check("gspo_token", {"clip_low": low, "clip_high": high},
          lambda lp, old, a, m, w: verl_gspo(old, lp, a if a.dim() == 2 else a.unsqueeze(1), m, clip_ratio_low=low,
                                             clip_ratio_high=high, rollout_is_weights=w), seed, token_advantages)


@pytest.mark.parametrize("seed", SEEDS)
@ADV
@pytest.mark.parametrize("clip", [(0.2, 0.28), (1.0, 4.0), (0.5, 1.0)], ids=str)
def test_cispo_equals_verl(seed, token_advantages, clip):
    low, high = clip
    check("cispo", {"clip_low": low, "clip_high": high},
          lambda lp, old, a, m, w: verl_cispo(old, lp, a if a.dim() == 2 else a.unsqueeze(1), m, clip_ratio_low=low,
                                              clip_ratio_high=high, rollout_is_weights=w), seed, token_advantages)


@pytest.mark.parametrize("seed", SEEDS)
@ADV
@pytest.mark.parametrize("epsilon_max", [5.0, 1.28, 2.0])
def test_cispo_equals_trl_with_no_lower_bound(seed, token_advantages, epsilon_max):
    # TRL caps from above only, min(r, epsilon_high): ours with clip_low = 1 (lower bound 0), clip_high = ε_max - 1
    check("cispo", {"clip_low": 1.0, "clip_high": epsilon_max - 1.0},
          lambda lp, old, a, m, w: _weighted(trl_per_token_loss(
              lp, old, a, m, loss_type="cispo", epsilon_high=epsilon_max), w), seed, token_advantages)


@pytest.mark.parametrize("seed", SEEDS)
@ADV
@pytest.mark.parametrize("clip", [(0.4, 0.4), (0.2, 0.28), (1.5, 0.1)], ids=str)
def test_gmpo_equals_verl_geo_mean(seed, token_advantages, clip):
    low, high = clip

    def reference(lp, old, a, m, w):
        a = a if a.dim() == 2 else a.unsqueeze(1).expand_as(lp)
        return verl_geo_mean(old, lp, a, m, cliprange_low=low, cliprange_high=high, rollout_is_weights=w).unsqueeze(1)

    # verl applies token weights as their per-sequence geometric mean; equal to ours for weights constant over
    # a sequence (rollout correction at sequence / geometric level)
    check("gmpo", {"clip_low": low, "clip_high": high}, reference, seed, token_advantages, seq_constant_weights=True)


@pytest.mark.parametrize("seed", SEEDS)
def test_gmpo_seq_mean_token_mean_is_verls_mean_over_sequences(seed):
    logprobs, old, adv, mask, _ = ragged_case(seed, token_advantages=False)
    ours, _ = policy_loss(logprobs, old, adv, mask, name="gmpo", loss_agg="seq-mean-token-mean",
                          num_seqs=mask.shape[0], clip_low=0.4, clip_high=0.4)  # verl's torch.mean counts every row
    ref = torch.mean(verl_geo_mean(old, logprobs, adv.unsqueeze(1).expand_as(logprobs), mask, cliprange_low=0.4,
                                   cliprange_high=0.4))
    torch.testing.assert_close(ours, ref, **TOL)


@pytest.mark.parametrize("seed", SEEDS)
@ADV
@pytest.mark.parametrize("taus", [(1.0, 1.05), (0.5, 2.0)], ids=str)
def test_sapo_equals_trl_and_verl(seed, token_advantages, taus):
    pos, neg = taus
    ours = {"sapo_tau_pos": pos, "sapo_tau_neg": neg}
    check("sapo", ours, lambda lp, old, a, m, w: _weighted(trl_per_token_loss(
        lp, old, a, m, loss_type="sapo", sapo_temperature_pos=pos, sapo_temperature_neg=neg), w),
        seed, token_advantages)
    check("sapo", ours, lambda lp, old, a, m, w: verl_sapo(
        old, lp, a if a.dim() == 2 else a.unsqueeze(1), m, tau_pos=pos, tau_neg=neg, rollout_is_weights=w),
        seed, token_advantages)


def test_the_cases_reach_far_outside_the_clip_ranges():
    """Guard against a vacuous comparison: token and sequence ratios well beyond [0.8, 1.28] both ways."""
    for seed in SEEDS:
        logprobs, old, _, mask, _ = ragged_case(seed, token_advantages=False)
        real = mask != 0
        ratio = (logprobs - old).exp()[real]
        seq = ((logprobs - old) * mask).sum(1) / mask.sum(1).clamp(min=1)
        seq = seq[mask.sum(1) > 0].exp()
        assert (ratio > 3).any() and (ratio < 0.3).any()
        assert (seq > 1.28).any() and (seq < 0.8).any()


def test_gspo_and_gspo_token_agree_without_token_level_weights_and_differ_with_them():
    logprobs, old, adv, mask, _ = ragged_case(0, token_advantages=False)
    for mode in MODES:
        grads = []
        for name in ("gspo", "gspo_token"):
            lp = logprobs.clone().requires_grad_(True)
            loss, _ = policy_loss(lp, old, adv, mask, name=name, loss_agg=mode)
            grads.append((loss.detach(), torch.autograd.grad(loss, lp)[0]))
        torch.testing.assert_close(grads[0], grads[1], **TOL)
    weights = torch.rand(logprobs.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = []
    for name in ("gspo", "gspo_token"):
        lp = logprobs.clone().requires_grad_(True)
        loss, _ = policy_loss(lp, old, adv, mask, name=name, is_weights=weights)
        grads.append(torch.autograd.grad(loss, lp)[0])
    assert not torch.allclose(grads[0], grads[1])
