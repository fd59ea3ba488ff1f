"""Token-level rewards, GAE, REINFORCE++ and the clipped value loss: hand-computed values and equality with verl.

The reference formulas are transcribed from verl, `verl/trainer/ppo/core_algos.py` (commit b178a3cd, Jan 2026):
`compute_gae_advantage_return`, `compute_reinforce_plus_plus_outcome_advantage`, `compute_value_loss` (with
`agg_loss(..., "token-mean")`), and `verl/utils/torch_functional.py`: `masked_mean`, `masked_var`,
`masked_whiten`; the explained variance is `verl/trainer/ppo/metric_utils.py`'s `critic/vf_explained_var`.
They are compared on random ragged batches in float64 to 1e-6, on the positions that carry loss (verl leaves
whatever its recursion carried on padded positions; ours are exact zeros there).
"""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from reasoner.algorithms import (
    ADVANTAGE_ESTIMATORS,
    TokenInputs,
    compute_advantages,
    compute_token_advantages,
    explained_variance,
    masked_whiten,
    needs_critic,
    step_advantages,
    token_level_rewards,
    value_loss,
)

# ------------------------------------------------------------------------------------ verl, transcribed


def verl_masked_mean(values, mask):
    return (values * mask).sum() / (mask.sum() + 1e-8)


def verl_masked_whiten(values, mask):
    mean = verl_masked_mean(values, mask)
    var = verl_masked_mean((values - mean) ** 2, mask)
    n = mask.sum()
    var = var * n / (n - 1)
    return (values - mean) * torch.rsqrt(var + 1e-8)


def verl_gae(token_level_rewards, values, response_mask, gamma, lam):
    nextvalues, lastgaelam, reversed_ = 0, 0, []
    for t in reversed(range(token_level_rewards.shape[-1])):
        delta = token_level_rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam_ = delta + gamma * lam * lastgaelam
        nextvalues = values[:, t] * response_mask[:, t] + (1 - response_mask[:, t]) * nextvalues
        lastgaelam = lastgaelam_ * response_mask[:, t] + (1 - response_mask[:, t]) * lastgaelam
        reversed_.append(lastgaelam)
    advantages = torch.stack(reversed_[::-1], dim=1)
    returns = advantages + values
    return verl_masked_whiten(advantages, response_mask), returns


def verl_reinforce_pp(token_level_rewards, response_mask, gamma):
    returns = torch.zeros_like(token_level_rewards)
    running = 0
    for t in reversed(range(token_level_rewards.shape[1])):
        running = token_level_rewards[:, t] + gamma * running
        returns[:, t] = running
        running = running * response_mask[:, t]
    return verl_masked_whiten(returns, response_mask) * response_mask, returns


def verl_value_loss(vpreds, returns, values, response_mask, cliprange_value):
    vpredclipped = torch.max(torch.min(vpreds, values + cliprange_value), values - cliprange_value)
    vf_losses1 = (vpreds - returns) ** 2
    vf_losses2 = (vpredclipped - returns) ** 2
    clipped = torch.max(vf_losses1, vf_losses2)
    vf_loss = 0.5 * (clipped * response_mask).sum() / response_mask.sum()   # agg_loss token-mean
    vf_clipfrac = verl_masked_mean(torch.gt(vf_losses2, vf_losses1).double(), response_mask)
    return vf_loss, vf_clipfrac


def verl_token_rewards(scores, lengths, kl, beta, width):
    """verl's reward managers put the score on token `valid_response_length - 1`; `apply_kl_penalty` subtracts
    `beta * kld` (kld masked by the response mask) from every token."""
    out = torch.zeros(len(scores), width, dtype=torch.float64)
    for i, (s, n) in enumerate(zip(scores, lengths)):
        if n:
            out[i, n - 1] = s
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).double()
    return out - beta * kl * mask, mask


def ragged(seed: int, n: int = 7, width: int = 11, holes: bool = False):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, width + 1, (n,), generator=g).tolist()
    lengths[0] = width  # one full row
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).double()
    if holes:  # observation tokens inside a response (multi-turn): mask 0, skipped by GAE
        mask = mask * (torch.rand(n, width, generator=g, dtype=torch.float64) > 0.2).double()
        mask[:, 0] = 1.0
    rewards = torch.randn(n, width, generator=g, dtype=torch.float64) * mask
    values = torch.randn(n, width, generator=g, dtype=torch.float64)
    return rewards, values, mask, lengths, g


# ------------------------------------------------------------------------------------ token-level rewards


def test_token_level_rewards_hand_computed():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=torch.float32)
    kl = torch.full((4, 4), 2.0)
    out = token_level_rewards(torch.tensor([1.0, 2.0, 3.0, 4.0]), mask, kl=kl, kl_beta=0.1)
    assert out.dtype == torch.float64
    assert_close(out, torch.tensor([[-0.2, -0.2, 0.8, 0.0],       # R on the last live token, -beta*kl on each
                                    [-0.2, 1.8, 0.0, 0.0],
                                    [0.0, 0.0, 0.0, 0.0],          # no live token: no reward at all
                                    [-0.2, 0.0, 3.8, 0.0]], dtype=torch.float64))
    assert_close(token_level_rewards(torch.tensor([1.0, 2.0, 3.0, 4.0]), mask),
                 torch.tensor([[0, 0, 1, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 4, 0]], dtype=torch.float64))


@pytest.mark.parametrize("seed", range(3))
def test_token_level_rewards_match_verl(seed):
    g = torch.Generator().manual_seed(seed)
    lengths = [0, 5, 9, 1, 9, 3]
    scores = torch.randn(6, generator=g, dtype=torch.float64)
    kl = torch.randn(6, 9, generator=g, dtype=torch.float64)
    ref, mask = verl_token_rewards(scores.tolist(), lengths, kl, 0.05, 9)
    assert_close(token_level_rewards(scores, mask, kl=kl, kl_beta=0.05), ref, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------ GAE


def test_gae_hand_computed():
    # r = [0, 0, 1], V = [.5, .6, .7], gamma .9, lam .8:
    # t=2: delta = 1 - .7 = .3, A = .3;  t=1: delta = .9*.7 - .6 = .03, A = .03 + .72*.3 = .246;
    # t=0: delta = .9*.6 - .5 = .04, A = .04 + .72*.246 = .21712;  returns = A + V
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = compute_token_advantages("gae", r, torch.ones(1, 3), values=v, gamma=0.9, lam=0.8,
                                        whiten_advantages=False)
    assert_close(adv, torch.tensor([[0.21712, 0.246, 0.3]]))
    assert_close(ret, torch.tensor([[0.71712, 0.846, 1.0]]))


def test_gae_with_gamma_lam_one_is_return_minus_value_and_skips_masked_positions():
    # lam = gamma = 1: A_t = sum of future rewards - V_t; a masked middle position is skipped entirely.
    r = torch.tensor([[0.0, 0.0, 0.0, 2.0, 0.0]])
    v = torch.tensor([[0.5, 9.0, 1.5, 0.25, 7.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
    adv, ret = compute_token_advantages("gae", r, mask, values=v, whiten_advantages=False)
    assert_close(adv, torch.tensor([[1.5, 0.0, 0.5, 1.75, 0.0]]))
    assert_close(ret, torch.tensor([[2.0, 0.0, 2.0, 2.0, 0.0]]))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (0.99, 0.95), (0.9, 0.0)])
def test_gae_matches_verl_on_random_ragged_batches(seed, gamma, lam):
    rewards, values, mask, _, _ = ragged(seed, holes=seed % 2 == 1)
    ref_adv, ref_ret = verl_gae(rewards, values, mask, gamma, lam)
    from reasoner.algorithms.token_advantages import gae_advantages
    adv, ret = gae_advantages(rewards, values, mask, gamma=gamma, lam=lam)  # the float64 function itself
    live = mask.bool()
    assert adv.dtype == torch.float64
    assert_close(adv[live], ref_adv[live], atol=1e-6, rtol=0)
    assert_close(ret[live], ref_ret[live], atol=1e-6, rtol=0)
    assert torch.equal(adv[~live], torch.zeros_like(adv[~live]))
    # the float32 entry point: the same values, rounded
    adv32, ret32 = compute_token_advantages("gae", rewards, mask, values=values, gamma=gamma, lam=lam)
    assert_close(adv32[live].double(), ref_adv[live], atol=1e-5, rtol=1e-5)


def test_gae_whitening_options():
    rewards, values, mask, _, _ = ragged(11)
    raw, _ = compute_token_advantages("gae", rewards, mask, values=values, whiten_advantages=False)
    white, _ = compute_token_advantages("gae", rewards, mask, values=values)
    live = mask.bool()
    assert_close(white[live], ((raw[live] - raw[live].mean()) / raw[live].std()), atol=1e-5, rtol=0)
    # whiten_rewards: TRL's reward whitening keeps the mean and rescales (changes the result)
    wr, _ = compute_token_advantages("gae", rewards, mask, values=values, whiten_rewards=True,
                                     whiten_advantages=False)
    assert not torch.allclose(wr, raw)


# ------------------------------------------------------------------------------------ REINFORCE++


def test_reinforce_pp_hand_computed():
    # r = [0, 0, 1], gamma .5 -> returns [.25, .5, 1]; whitened: mean 7/12, unbiased var over 3 tokens
    r = torch.tensor([[0.0, 0.0, 1.0]])
    adv, ret = compute_token_advantages("reinforce_pp", r, torch.ones(1, 3), gamma=0.5, whiten_advantages=False)
    assert_close(ret, torch.tensor([[0.25, 0.5, 1.0]]))
    assert_close(adv, ret)
    white, _ = compute_token_advantages("reinforce_pp", r, torch.ones(1, 3), gamma=0.5)
    x = torch.tensor([0.25, 0.5, 1.0])
    assert_close(white, ((x - x.mean()) / x.std())[None], atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_reinforce_pp_matches_verl_on_random_ragged_batches(seed, gamma):
    rewards, _, mask, _, _ = ragged(seed, holes=seed % 2 == 1)
    ref_adv, ref_ret = verl_reinforce_pp(rewards, mask, gamma)
    from reasoner.algorithms.token_advantages import reinforce_pp_advantages
    adv, ret = reinforce_pp_advantages(rewards, mask, gamma=gamma)
    live = mask.bool()
    assert_close(adv, ref_adv, atol=1e-6, rtol=0)
    assert_close(ret[live], ref_ret[live], atol=1e-6, rtol=0)


def test_reinforce_pp_is_not_the_group_baseline_estimator():
    # Outcome reward, gamma 1: every token's return is the sequence reward, whitened over *tokens* (longer rows
    # weigh more), with no group baseline; reinforce_pp_baseline subtracts group means at sequence level.
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    r = token_level_rewards(torch.tensor([1.0, 0.0, 1.0, 1.0]), mask)
    adv, ret = compute_token_advantages("reinforce_pp", r, mask)
    assert_close(ret, torch.tensor([[1.0, 1, 1], [0, 0, 0], [1, 1, 0], [1, 1, 1]]))
    assert (adv[0] > 0).all() and adv[1, 0] < 0
    seq = compute_advantages("reinforce_pp_baseline", torch.tensor([1.0, 0.0, 1.0, 1.0]), 2)
    assert seq[2] == 0 and seq[3] == 0  # the second group's rewards are equal: no signal there at all


def test_masked_whiten_matches_verl_and_is_exact_zero_without_spread():
    x = torch.randn(4, 6, dtype=torch.float64)
    mask = (torch.rand(4, 6) > 0.3).double()
    mask[0, :2] = 1
    assert_close(masked_whiten(x, mask), verl_masked_whiten(x, mask), atol=1e-9, rtol=0)
    assert torch.equal(masked_whiten(torch.full((2, 3), 0.3, dtype=torch.float64), torch.ones(2, 3)),
                       torch.zeros(2, 3, dtype=torch.float64))
    assert torch.equal(masked_whiten(x, torch.zeros(4, 6, dtype=torch.float64)), torch.zeros_like(x))


def test_token_level_estimators_in_the_registry_and_their_errors():
    assert {"gae", "reinforce_pp"} <= set(ADVANTAGE_ESTIMATORS.names())
    assert needs_critic("gae") and not needs_critic("reinforce_pp") and not needs_critic("grpo")
    assert set(ADVANTAGE_ESTIMATORS.option_names("gae")) == {"gamma", "lam", "whiten_advantages", "whiten_rewards"}
    mask = torch.ones(2, 3)
    with pytest.raises(ValueError, match="token-level"):
        compute_advantages("gae", torch.ones(2), 1)
    with pytest.raises(ValueError, match="needs the critic's values"):
        compute_token_advantages("gae", torch.zeros(2, 3), mask)
    with pytest.raises(ValueError, match="takes no option 'lam'"):
        compute_token_advantages("reinforce_pp", torch.zeros(2, 3), mask, lam=0.9)
    with pytest.raises(ValueError, match="sequence-level"):
        compute_token_advantages("grpo", torch.zeros(2, 3), mask)
    with pytest.raises(ValueError, match="non-finite"):
        compute_token_advantages("reinforce_pp", torch.full((2, 3), float("nan")), mask)


# ------------------------------------------------------------------------------------ the step


def test_step_advantages_token_level_puts_kl_on_tokens_and_the_reward_last():
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    kl = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 9.0]])
    values = torch.zeros(2, 3)
    step = step_advantages(torch.tensor([1.0, 0.0]), 1, estimator="gae", options={"whiten_advantages": False},
                           kl_beta=0.1, tokens=TokenInputs(mask=mask, kl=kl, values=values))
    # rewards: [-.05, -.05, .95] and [-.1, -.1, 0]; gamma = lam = 1, V = 0: A_t = reward-to-go
    assert_close(step.advantages, torch.tensor([[0.85, 0.9, 0.95], [-0.2, -0.1, 0.0]]))
    assert_close(step.returns, step.advantages)
    assert_close(step.rewards, torch.tensor([0.85, -0.2]))  # totals - beta * sum of KL
    with pytest.raises(ValueError, match="pass `tokens`"):
        step_advantages(torch.tensor([1.0, 0.0]), 1, estimator="gae")
    with pytest.raises(ValueError, match="takes no `tokens`"):
        step_advantages(torch.tensor([1.0, 0.0]), 2, estimator="grpo", tokens=TokenInputs(mask=mask))


# ------------------------------------------------------------------------------------ value loss


def test_value_loss_hand_computed():
    # old .5, clip .2: v = 1.0 -> clipped .7; R = 1: unclipped 0, clipped .09 -> .09 (clipped used)
    #                  v = .6 (inside the clip): (.6 - 0)^2 = .36 both;  masked token ignored
    v = torch.tensor([[1.0, 0.6, 5.0]], requires_grad=True)
    old = torch.tensor([[0.5, 0.5, 0.0]])
    ret = torch.tensor([[1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, stats = value_loss(v, old, ret, mask, cliprange_value=0.2)
    assert_close(loss, torch.tensor(0.5 * (0.09 + 0.36) / 2))
    assert float(stats.vf_clipfrac) == 0.5
    loss.backward()
    assert_close(v.grad, torch.tensor([[0.0, 0.5 * 2 * 0.6 / 2, 0.0]]))  # clipped branch: no gradient
    plain, stats = value_loss(v, old, ret, mask, cliprange_value=None)
    assert_close(plain, torch.tensor(0.5 * (0.0 + 0.36) / 2)) and float(stats.vf_clipfrac) == 0.0


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("clip", [0.2, 0.5, 10.0])
def test_value_loss_matches_verl_on_random_ragged_batches(seed, clip):
    _, old, mask, _, g = ragged(seed)
    vpreds = old + 0.6 * torch.randn(old.shape, generator=g, dtype=torch.float64)
    returns = torch.randn(old.shape, generator=g, dtype=torch.float64)
    ref_loss, ref_frac = verl_value_loss(vpreds, returns, old, mask, clip)
    loss, stats = value_loss(vpreds, old, returns, mask, cliprange_value=clip)
    assert loss.dtype == torch.float64
    assert_close(loss, ref_loss, atol=1e-6, rtol=0)
    assert_close(stats.vf_clipfrac, ref_frac, atol=1e-6, rtol=0)
    # micro-batches with the minibatch's token count sum to the whole loss
    n = float(mask.sum())
    halves = [value_loss(vpreds[s], old[s], returns[s], mask[s], cliprange_value=clip, num_tokens=n)[0]
              for s in (slice(0, 3), slice(3, None))]
    assert_close(sum(halves), ref_loss, atol=1e-9, rtol=0)


def test_explained_variance_matches_verl_and_its_anchors():
    _, returns, mask, _, g = ragged(3)
    values = returns + 0.3 * torch.randn(returns.shape, generator=g, dtype=torch.float64)
    live = mask.bool()
    r, v = returns[live], values[live]
    ref = 1.0 - torch.var(r - v) / (torch.var(r) + 1e-5)
    assert explained_variance(values, returns, mask) == pytest.approx(float(ref), abs=1e-9)
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0, abs=1e-4)
    assert explained_variance(torch.full_like(returns, float(r.mean())), returns, mask) == pytest.approx(0, abs=1e-4)
