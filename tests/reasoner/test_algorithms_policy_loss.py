"""Policy losses: hand values, a per-token loop reference, gradient checks, stats, GSPO, CISPO, SAPO, GMPO.

The equality to TRL's and verl's code is in test_algorithms_policy_loss_reference.py."""
from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from reasoner.algorithms import POLICY_LOSSES, PolicyLossStats, aggregate_loss, policy_loss

# Four tokens of one sequence, old_logprobs = 0 so that ratio = exp(logprobs) = [1.5, 0.5, 4.0, 0.9].
RATIOS = torch.tensor([[1.5, 0.5, 4.0, 0.9]])
ADV = torch.tensor([[1.0, -1.0, -1.0, 1.0]])
MASK = torch.ones(1, 4)


def _loss(**kwargs):
    logprobs = RATIOS.log().requires_grad_(True)
    loss, stats = policy_loss(logprobs, torch.zeros(1, 4), ADV, MASK, **kwargs)
    return loss, stats, logprobs


def test_hand_computed_ppo_clip():
    # per token, loss = max(-A r, -A clip(r, 0.8, 1.2)):
    #   r=1.5, A=+1: max(-1.5, -1.2) = -1.2 (clipped high)      r=0.5, A=-1: max(0.5, 0.8) = 0.8 (clipped low)
    #   r=4.0, A=-1: max(4.0, 1.2)  =  4.0 (unclipped)          r=0.9, A=+1: max(-0.9, -0.9) = -0.9
    # token-mean: (-1.2 + 0.8 + 4.0 - 0.9) / 4 = 0.675
    loss, stats, logprobs = _loss()
    assert_close(loss, torch.tensor(0.675))
    # gradient d loss / d logprobs_t = -A r / 4 where unclipped, 0 where clipped: [0, 0, 4/4, -0.9/4]
    loss.backward()
    assert_close(logprobs.grad, torch.tensor([[0.0, 0.0, 1.0, -0.225]]))
    # stats: low clip active on token 1 (A<0, r<0.8), high on token 0 (A>0, r>1.2): 1/4 each
    assert_close(stats.clip_frac_low, torch.tensor(0.25))
    assert_close(stats.clip_frac_high, torch.tensor(0.25))
    assert stats.clip_frac_dual.item() == 0.0
    assert_close(stats.ratio_mean, torch.tensor((1.5 + 0.5 + 4.0 + 0.9) / 4))
    assert_close(stats.ratio_max, torch.tensor(4.0))
    # approx_kl = mean(r - 1 - log r)
    k3 = sum(r - 1 - math.log(r) for r in (1.5, 0.5, 4.0, 0.9)) / 4
    assert_close(stats.approx_kl, torch.tensor(k3))


def test_hand_computed_dual_clip_and_clip_higher():
    # dual_clip=3: token 2 (A=-1, r=4 > 3) is capped at -3 * A = 3: (-1.2 + 0.8 + 3.0 - 0.9) / 4 = 0.425
    loss, stats, logprobs = _loss(dual_clip=3.0)
    assert_close(loss, torch.tensor(0.425))
    loss.backward()
    assert_close(logprobs.grad, torch.tensor([[0.0, 0.0, 0.0, -0.225]]))  # the capped token has no gradient
    assert_close(stats.clip_frac_dual, torch.tensor(0.25))
    # clip_high=0.28 (DAPO): token 0 is clipped at 1.28 instead: (-1.28 + 0.8 + 3.0 - 0.9) / 4 = 0.405
    loss, stats, _ = _loss(dual_clip=3.0, clip_high=0.28)
    assert_close(loss, torch.tensor(0.405))
    # clip_high=0.6: r=1.5 is inside [0.8, 1.6] now: (-1.5 + 0.8 + 3.0 - 0.9) / 4 = 0.35, no high clipping
    loss, stats, _ = _loss(dual_clip=3.0, clip_high=0.6)
    assert_close(loss, torch.tensor(0.35))
    assert stats.clip_frac_high.item() == 0.0


def test_is_weights_multiply_per_token_loss():
    # weights [1, 0, 2, 0.5] on per-token losses [-1.2, 0.8, 4.0, -0.9]: (-1.2 + 0 + 8 - 0.45) / 4 = 1.5875
    w = torch.tensor([[1.0, 0.0, 2.0, 0.5]], requires_grad=True)
    loss, _, _ = _loss(is_weights=w)
    assert_close(loss, torch.tensor(1.5875))
    loss.backward()
    assert w.grad is None  # detached


def test_sequence_advantages_broadcast():
    logprobs = torch.randn(3, 5)
    old = logprobs + 0.1 * torch.randn(3, 5)
    adv = torch.tensor([1.0, -0.5, 2.0])
    mask = torch.ones(3, 5)
    a, _ = policy_loss(logprobs, old, adv, mask)
    b, _ = policy_loss(logprobs, old, adv.unsqueeze(1).expand(3, 5).clone(), mask)
    assert_close(a, b)


# ---- reference: a per-token loop with explicit branches ----

def ref_token_loss(logp, old, adv, clip_low, clip_high, dual_clip):
    """(loss, gradient d loss_t / d logp_t, which bound is active) for one token."""
    r = math.exp(logp - old)
    unclipped, clipped = -adv * r, -adv * min(max(r, 1 - clip_low), 1 + clip_high)
    if clipped > unclipped:  # the clipped branch is the max: the clip bound is active, no gradient
        loss, grad, active = clipped, 0.0, "low" if r < 1 - clip_low else "high"
    else:
        loss, grad, active = unclipped, -adv * r, None
    if dual_clip is not None and adv < 0 and loss > -dual_clip * adv:
        loss, grad, active = -dual_clip * adv, 0.0, "dual"
    return loss, grad, active


def ref_policy_loss(name, logprobs, old, adv, mask, clip_low, clip_high, dual_clip, is_weights):
    """Per-token losses, per-token gradients d loss_t / d logp_t, and counts of each active bound.

    ppo_clip uses each token's own log-ratio. gspo_token uses the sequence's mean log-ratio over its real tokens
    for every token (GSPO-token: value s_i, gradient s_i * d logp_t), which is the same per-token formula with the
    token's log-ratio replaced by log s_i.
    """
    n, t = logprobs.shape
    losses = torch.zeros(n, t, dtype=torch.float64)
    grads = torch.zeros(n, t, dtype=torch.float64)
    counts = {"low": 0, "high": 0, "dual": 0}
    for i in range(n):
        real = [j for j in range(t) if mask[i, j]]
        seq_log_ratio = sum(float(logprobs[i, j] - old[i, j]) for j in real) / max(len(real), 1)
        for j in range(t):
            log_ratio = seq_log_ratio if name == "gspo_token" else float(logprobs[i, j] - old[i, j])
            loss, grad, active = ref_token_loss(log_ratio, 0.0, float(adv[i]), clip_low, clip_high, dual_clip)
            losses[i, j], grads[i, j] = loss * float(is_weights[i, j]), grad * float(is_weights[i, j])
            if active and mask[i, j]:
                counts[active] += 1
    return losses, grads, counts


CONFIGS = [
    {"clip_low": 0.2, "clip_high": None, "dual_clip": None},
    {"clip_low": 0.2, "clip_high": 0.28, "dual_clip": None},
    {"clip_low": 0.2, "clip_high": 0.28, "dual_clip": 3.0},
    {"clip_low": 0.1, "clip_high": 0.5, "dual_clip": 1.5},
]


def _case(name: str, seed: int):
    """Random inputs `(logprobs, old, adv, mask, is_weights)` for the reference comparison, float64."""
    gen = torch.Generator().manual_seed(seed)
    n, t = [(8, 11), (1, 1), (5, 30)][seed]
    old = -torch.rand(n, t, generator=gen, dtype=torch.float64) * 3
    logprobs = old + 0.6 * torch.randn(n, t, generator=gen, dtype=torch.float64)
    if name == "gspo_token":  # its ratio is a mean over the sequence: shift whole rows to reach the clip bounds
        logprobs = logprobs + 0.8 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    adv = torch.randn(n, generator=gen, dtype=torch.float64)
    lengths = torch.randint(0, t + 1, (n,), generator=gen)
    if n > 2:
        adv[0] = 0.0
        lengths[1] = 0  # an empty row
    mask = (torch.arange(t) < lengths.unsqueeze(1)).double()
    is_weights = torch.rand(n, t, generator=gen, dtype=torch.float64) * 2 if seed == 2 else torch.ones(n, t, dtype=torch.float64)
    return logprobs, old, adv, mask, is_weights


@pytest.mark.parametrize("name", ["ppo_clip", "gspo_token"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c['clip_low']}-{c['clip_high']}-{c['dual_clip']}")
@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("seed", range(3))
def test_matches_loop_reference_and_gradients(name, config, loss_agg, seed):
    logprobs, old, adv, mask, is_weights = _case(name, seed)
    logprobs.requires_grad_(True)
    n, t = logprobs.shape
    clip_high = config["clip_high"] if config["clip_high"] is not None else config["clip_low"]

    loss, stats = policy_loss(
        logprobs, old, adv, mask, name=name, loss_agg=loss_agg, is_weights=is_weights, **config
    )
    loss.backward()

    ref_losses, ref_token_grads, counts = ref_policy_loss(
        name, logprobs.detach(), old, adv, mask, config["clip_low"], clip_high, config["dual_clip"], is_weights
    )
    assert_close(loss, aggregate_loss(ref_losses, mask, loss_agg))
    # the aggregation is linear in the per-token loss, so d loss / d logp = (its weight) * (token gradient);
    # the weight of each token is the gradient of the aggregation of a unit loss.
    unit = torch.ones(n, t, dtype=torch.float64, requires_grad=True)
    (agg_weights,) = torch.autograd.grad(aggregate_loss(unit, mask, loss_agg), unit)
    assert_close(logprobs.grad, agg_weights * ref_token_grads)
    real = mask.sum().clamp(min=1)
    assert_close(stats.clip_frac_low, torch.tensor(counts["low"] / real.item(), dtype=torch.float64))
    assert_close(stats.clip_frac_high, torch.tensor(counts["high"] / real.item(), dtype=torch.float64))
    assert_close(stats.clip_frac_dual, torch.tensor(counts["dual"] / real.item(), dtype=torch.float64))


@pytest.mark.parametrize("name", ["ppo_clip", "gspo_token"])
def test_reference_cases_exercise_every_clip_branch(name):
    """Guard against a vacuous comparison: the cases above hit every bound, on real tokens."""
    seen = {"low": 0, "high": 0, "dual": 0}
    for seed in range(3):
        logprobs, old, adv, mask, w = _case(name, seed)
        for config in CONFIGS:
            high = config["clip_high"] if config["clip_high"] is not None else config["clip_low"]
            _, _, counts = ref_policy_loss(name, logprobs, old, adv, mask, config["clip_low"], high,
                                           config["dual_clip"], w)
            for key in seen:
                seen[key] += counts[key]
    assert all(count > 0 for count in seen.values()), seen


def test_gradient_is_zero_exactly_on_clipped_tokens():
    gen = torch.Generator().manual_seed(0)
    old = torch.zeros(64, 16)
    logprobs = (0.5 * torch.randn(64, 16, generator=gen)).requires_grad_(True)
    adv = torch.randn(64, generator=gen).unsqueeze(1).expand(64, 16)
    loss, _ = policy_loss(logprobs, old, adv, torch.ones(64, 16), clip_low=0.2, clip_high=0.28, dual_clip=3.0)
    loss.backward()
    r = logprobs.detach().exp()
    clipped = ((adv > 0) & (r > 1.28)) | ((adv < 0) & (r < 0.8)) | ((adv < 0) & (r > 3.0))
    assert clipped.any() and (~clipped).any()
    assert torch.equal(logprobs.grad[clipped], torch.zeros(int(clipped.sum())))
    # elsewhere: the gradient of the unclipped surrogate -A r, divided by the token count
    assert_close(logprobs.grad[~clipped], (-adv * r / (64 * 16))[~clipped])


def test_masked_tokens_get_no_gradient_and_extreme_ratios_stay_finite():
    logprobs = torch.tensor([[0.0, 50.0, -50.0]], requires_grad=True)
    old = torch.zeros(1, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, stats = policy_loss(logprobs, old, torch.tensor([-1.0]), mask)
    assert torch.isfinite(loss)
    loss.backward()
    assert logprobs.grad[0, 2] == 0
    assert torch.isfinite(logprobs.grad).all()
    assert_close(stats.ratio_max, torch.tensor(math.exp(20.0)))  # the log-ratio is clamped at 20


def test_stats_with_nothing_masked_in_are_zero():
    loss, stats = policy_loss(torch.randn(2, 3), torch.randn(2, 3), torch.ones(2), torch.zeros(2, 3))
    assert loss.item() == 0.0
    assert all(v == 0.0 for v in stats.to_dict().values())


def test_stats_are_detached_and_convert_to_floats():
    logprobs = torch.randn(2, 3, requires_grad=True)
    _, stats = policy_loss(logprobs, torch.zeros(2, 3), torch.ones(2), torch.ones(2, 3))
    assert isinstance(stats, PolicyLossStats)
    for value in vars(stats).values():
        assert value.dim() == 0 and not value.requires_grad
    d = stats.to_dict(prefix="actor/")
    assert set(d) == {f"actor/{k}" for k in vars(stats)} and all(isinstance(v, float) for v in d.values())


def test_gspo_sequence_ratio():
    # one sequence, two real tokens with log-ratios 0.2 and -0.6 (and a padding token): s = exp(-0.2) = 0.8187
    logprobs = torch.tensor([[0.2, -0.6, 5.0]], requires_grad=True)
    old = torch.zeros(1, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    s = math.exp(-0.2)
    # A = +1, clip 0.2: s inside [0.8, 1.2]: per-token loss -s on both real tokens; token-mean = -s
    loss, stats = policy_loss(logprobs, old, torch.tensor([1.0]), mask, name="gspo")
    assert_close(loss, torch.tensor(-s))
    assert_close(stats.ratio_mean, torch.tensor(s))
    loss.backward()
    # GSPO-token gradient: d(-s * exp(lp - sg lp))/d lp_t = -s, averaged over the 2 tokens
    assert_close(logprobs.grad, torch.tensor([[-s / 2, -s / 2, 0.0]]))
    # A = -1, clip 0.1: s = 0.8187 < 0.9, clipped low for the whole sequence -> loss 0.9, no gradient
    logprobs.grad = None
    loss, stats = policy_loss(logprobs, old, torch.tensor([-1.0]), mask, name="gspo", clip_low=0.1)
    assert_close(loss, torch.tensor(0.9))
    assert_close(stats.clip_frac_low, torch.tensor(1.0))
    loss.backward()
    assert torch.equal(logprobs.grad, torch.zeros(1, 3))


def test_gspo_equals_ppo_clip_for_one_token_sequences():
    gen = torch.Generator().manual_seed(1)
    logprobs, old = torch.randn(20, 1, generator=gen), torch.randn(20, 1, generator=gen)
    adv, mask = torch.randn(20, generator=gen), torch.ones(20, 1)
    a, _ = policy_loss(logprobs, old, adv, mask, name="gspo", dual_clip=2.0)
    b, _ = policy_loss(logprobs, old, adv, mask, name="ppo_clip", dual_clip=2.0)
    assert_close(a, b)


def test_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(KeyError) as info:
        policy_loss(x, x, torch.zeros(2), x, name="nope")
    assert "gspo" in str(info.value) and "ppo_clip" in str(info.value)
    with pytest.raises(KeyError, match="token-mean"):
        policy_loss(x, x, torch.zeros(2), x, loss_agg="mean")
    with pytest.raises(ValueError, match="advantages has shape"):
        policy_loss(x, x, torch.zeros(3), x)
    with pytest.raises(ValueError, match="old_logprobs has shape"):
        policy_loss(x, torch.zeros(2, 4), torch.zeros(2), x)
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        policy_loss(x, x, torch.zeros(2), x, dual_clip=0.5)
    with pytest.raises(ValueError, match="clip_low"):
        policy_loss(x, x, torch.zeros(2), x, clip_low=1.5)
    with pytest.raises(ValueError, match="takes no option 'dual_clip'"):
        policy_loss(x, x, torch.zeros(2), x, name="cispo", dual_clip=3.0)
    with pytest.raises(ValueError, match="clip_low must be in \\[0, 1\\]"):
        policy_loss(x, x, torch.zeros(2), x, name="cispo", clip_low=1.5)
    policy_loss(x, x, torch.zeros(2), x, name="cispo", clip_low=1.0)  # no lower bound: allowed for CISPO only
    with pytest.raises(ValueError, match="clip_low must be in \\[0, 1\\)"):
        policy_loss(x, x, torch.zeros(2), x, clip_low=1.0)
    policy_loss(x, x, torch.zeros(2), x, name="gmpo", clip_low=1.5)  # log-space bounds: any clip_low >= 0
    with pytest.raises(ValueError, match="sapo_tau_pos"):
        policy_loss(x, x, torch.zeros(2), x, name="sapo", sapo_tau_pos=0.0)
    assert POLICY_LOSSES.names() == ["cispo", "gmpo", "gspo", "gspo_token", "ppo_clip", "sapo"]


# ---- hand-computed values of the newer losses (same four tokens: r = [1.5, 0.5, 4.0, 0.9], A = [1, -1, -1, 1]) ----

def test_hand_computed_cispo():
    # weights clip(r, 0.8, 1.2) detached = [1.2, 0.8, 1.2, 0.9]; loss_t = -w A logp_t; token-mean over 4
    loss, stats, logprobs = _loss(name="cispo")
    lp = [math.log(r) for r in (1.5, 0.5, 4.0, 0.9)]
    w, a = [1.2, 0.8, 1.2, 0.9], [1.0, -1.0, -1.0, 1.0]
    assert_close(loss, torch.tensor(sum(-wi * ai * li for wi, ai, li in zip(w, a, lp)) / 4))
    loss.backward()
    # REINFORCE with capped weights: every token keeps a gradient, -w A / 4 (PPO-clip zeroes tokens 0 and 1)
    assert_close(logprobs.grad, torch.tensor([[-w[i] * a[i] / 4 for i in range(4)]]))
    assert_close(stats.clip_frac_high, torch.tensor(0.5))  # r = 1.5 and 4.0 are capped at 1.2
    assert_close(stats.clip_frac_low, torch.tensor(0.25))  # r = 0.5 is raised to 0.8


def test_hand_computed_sapo():
    # gate f(r) = sigmoid(tau (r - 1)) * 4 / tau, tau = 1 where A > 0 and 1.05 elsewhere; loss_t = -A f(r_t)
    def f(r, tau):
        return 4 / tau / (1 + math.exp(-tau * (r - 1)))

    def df(r, tau):  # d f / d logp = f'(r) r = 4 s (1 - s) r
        s = 1 / (1 + math.exp(-tau * (r - 1)))
        return 4 * s * (1 - s) * r

    rs, a, taus = (1.5, 0.5, 4.0, 0.9), (1.0, -1.0, -1.0, 1.0), (1.0, 1.05, 1.05, 1.0)
    loss, stats, logprobs = _loss(name="sapo")
    assert_close(loss, torch.tensor(sum(-ai * f(r, t) for r, ai, t in zip(rs, a, taus)) / 4))
    loss.backward()
    assert_close(logprobs.grad, torch.tensor([[-ai * df(r, t) / 4 for r, ai, t in zip(rs, a, taus)]]))
    assert stats.clip_frac_low.item() == stats.clip_frac_high.item() == 0.0
    # at r = 1 the gate's gradient is exactly REINFORCE's (4 * 1/2 * 1/2 * 1 = 1), whatever tau
    lp = torch.zeros(1, 2, requires_grad=True)
    loss, _ = policy_loss(lp, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2), name="sapo")
    loss.backward()
    assert_close(lp.grad, torch.tensor([[-0.5, 0.5]]))


def test_hand_computed_gmpo():
    # one sequence of two real tokens (and padding), log r = [0.5, -0.6], A = +1, log-space clip [-0.2, 0.2]:
    # A > 0 clips from above only: [0.2, -0.6] -> ratio exp(-0.2); loss = -exp(-0.2) on each real token
    logprobs = torch.tensor([[0.5, -0.6, 3.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, stats = policy_loss(logprobs, torch.zeros(1, 3), torch.tensor([1.0]), mask, name="gmpo",
                              loss_agg="seq-mean-token-mean")
    assert_close(loss, torch.tensor(-math.exp(-0.2)))
    loss.backward()
    # gradient through the geometric mean: only the unclipped token, -exp(-0.2) / 2
    assert_close(logprobs.grad, torch.tensor([[0.0, -math.exp(-0.2) / 2, 0.0]]))
    assert_close(stats.clip_frac_high, torch.tensor(0.5))
    # A = -1 clips from below only: [0.5, -0.2] -> ratio exp(0.15); loss = +exp(0.15)
    logprobs.grad = None
    loss, stats = policy_loss(logprobs, torch.zeros(1, 3), torch.tensor([-1.0]), mask, name="gmpo",
                              loss_agg="seq-mean-token-mean")
    assert_close(loss, torch.tensor(math.exp(0.15)))
    assert_close(stats.clip_frac_low, torch.tensor(0.5))


def test_gspo_sequence_gradient_flows_through_the_mean():
    # gspo (sequence level): d s / d logp_t = s / |y| for every token, whatever the per-token weights w;
    # one sequence, token-mean, A = 1, s = exp(mean log r) = 1 (unclipped)
    logprobs = torch.tensor([[0.05, -0.05]], requires_grad=True)
    w = torch.tensor([[2.0, 0.0]])
    loss, _ = policy_loss(logprobs, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), name="gspo",
                          is_weights=w)
    loss.backward()
    # loss = -(s * 2 + s * 0) / 2 = -s, s = exp(0) = 1; d loss / d logp_t = -s / 2 for both tokens
    assert_close(logprobs.grad, torch.tensor([[-0.5, -0.5]]))
    logprobs.grad = None
    loss, _ = policy_loss(logprobs, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), name="gspo_token",
                          is_weights=w)
    loss.backward()
    # GSPO-token: token t's gradient is s * w_t / 2: [-1, 0]
    assert_close(logprobs.grad, torch.tensor([[-1.0, 0.0]]))


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_on_policy_every_loss_has_reinforces_gradient(loss_agg):
    """At r = 1 (one pass over one minibatch: old = current) every registered loss has the gradient of
    -A log pi per token, aggregated alike: the losses differ in the update only once the policy has moved."""
    gen = torch.Generator().manual_seed(3)
    logprobs = -torch.rand(6, 9, generator=gen, dtype=torch.float64)
    adv = torch.randn(6, generator=gen, dtype=torch.float64)
    mask = (torch.arange(9) < torch.tensor([9, 4, 1, 7, 0, 3]).unsqueeze(1)).double()
    grads = {}
    for name in POLICY_LOSSES.names():
        lp = logprobs.clone().requires_grad_(True)
        loss, _ = policy_loss(lp, lp.detach(), adv, mask, name=name, loss_agg=loss_agg)
        (grads[name],) = torch.autograd.grad(loss, lp)
    lp = logprobs.clone().requires_grad_(True)
    reinforce = aggregate_loss(-adv.unsqueeze(1) * lp, mask, loss_agg)
    (expected,) = torch.autograd.grad(reinforce, lp)
    for name, grad in grads.items():
        assert_close(grad, expected, msg=name)
