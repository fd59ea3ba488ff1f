"""KL estimators and the KL-in-reward mode: hand values, reference formulas, clamping, gradients."""
from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from reasoner.algorithms import KL_ESTIMATORS, apply_kl_to_rewards, kl_penalty


def test_hand_computed_values():
    # pi = 0.5, pi_ref = 0.25: logp - ref = log 2 = 0.693147
    # k1 = log 2; k2 = (log 2)^2 / 2 = 0.240227; k3 = r - 1 - log r with r = pi_ref / pi = 0.5:
    # 0.5 - 1 + log 2 = 0.193147
    logp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    assert_close(kl_penalty("k1", logp, ref), torch.tensor([[math.log(2)]]))
    assert_close(kl_penalty("k2", logp, ref), torch.tensor([[0.5 * math.log(2) ** 2]]))
    assert_close(kl_penalty("k3", logp, ref), torch.tensor([[0.5 - 1 + math.log(2)]]))
    assert abs(kl_penalty("k3", logp, ref).item() - 0.193147) < 1e-6
    # equal policies: every estimator is 0
    for name in ("k1", "k2", "k3"):
        assert torch.equal(kl_penalty(name, logp, logp), torch.zeros(1, 1))


@pytest.mark.parametrize("seed", range(3))
def test_match_reference_formulas_and_estimate_true_kl(seed):
    gen = torch.Generator().manual_seed(seed)
    logp = torch.randn(6, 9, generator=gen, dtype=torch.float64)
    ref = logp + 0.3 * torch.randn(6, 9, generator=gen, dtype=torch.float64)
    d = logp - ref
    assert_close(kl_penalty("k1", logp, ref), d)
    assert_close(kl_penalty("k2", logp, ref), d * d / 2)
    assert_close(kl_penalty("k3", logp, ref), torch.exp(-d) + d - 1)
    assert (kl_penalty("k3", logp, ref) >= 0).all() and (kl_penalty("k2", logp, ref) >= 0).all()

    # Monte-Carlo: on samples from pi, k1 and k3 average to KL(pi || pi_ref) of two categoricals.
    p = torch.softmax(torch.randn(5, generator=gen, dtype=torch.float64), 0)
    q = torch.softmax(torch.randn(5, generator=gen, dtype=torch.float64), 0)
    true_kl = (p * (p / q).log()).sum()
    x = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    lp, lq = p.log()[x].unsqueeze(0), q.log()[x].unsqueeze(0)
    for name in ("k1", "k3"):
        assert abs(kl_penalty(name, lp, lq).mean() - true_kl) < 0.02


def test_k3_log_ratio_clamped_to_20():
    # logp - ref = -30 -> log r = 30, clamped to 20: k3 = e^20 - 20 - 1, finite, and no gradient beyond the clamp
    logp = torch.tensor([[-30.0, -5.0]], requires_grad=True)
    ref = torch.zeros(1, 2)
    k3 = kl_penalty("k3", logp, ref)
    assert_close(k3[0, 0], torch.tensor(math.exp(20) - 21))
    assert torch.isfinite(k3).all()
    k3.sum().backward()
    # inside the clamp: d/dlogp [exp(ref - logp) - (ref - logp) - 1] = 1 - exp(ref - logp) = 1 - e^5
    assert logp.grad[0, 0] == 0
    assert_close(logp.grad[0, 1], torch.tensor(1 - math.exp(5)))


def test_gradient_flows_to_logprobs_only():
    logp = torch.randn(2, 3, requires_grad=True)
    ref = torch.randn(2, 3, requires_grad=True)
    kl_penalty("k2", logp, ref).sum().backward()
    assert_close(logp.grad, (logp - ref).detach())  # d/dlogp (logp - ref)^2 / 2
    assert ref.grad is None


def test_half_precision_is_upcast():
    logp = torch.randn(2, 3).bfloat16()
    assert kl_penalty("k3", logp, logp - 1).dtype == torch.float32


def test_apply_kl_to_rewards_hand_computed():
    # seq 0: kl .1 + .2 (the third token is padding) = .3 -> 1 - 0.5 * .3 = 0.85; seq 1: .5 -> 0 - .25 = -0.25
    rewards = torch.tensor([1.0, 0.0])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    out = apply_kl_to_rewards(rewards, kl, mask, beta=0.5)
    assert_close(out, torch.tensor([0.85, -0.25]))
    assert not out.requires_grad
    assert torch.equal(apply_kl_to_rewards(rewards, kl, mask, beta=0.0), rewards)


def test_shape_errors_and_unknown_names():
    with pytest.raises(ValueError, match="differ in shape"):
        kl_penalty("k1", torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="expected rewards"):
        apply_kl_to_rewards(torch.zeros(3), torch.zeros(2, 4), torch.zeros(2, 4), 0.1)
    with pytest.raises(KeyError, match="valid names: k1, k2, k3"):
        kl_penalty("low_var", torch.zeros(1, 1), torch.zeros(1, 1))
    assert KL_ESTIMATORS.names() == ["k1", "k2", "k3"]
