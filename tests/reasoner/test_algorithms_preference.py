"""Preference losses: hand-computed values, TRL's formulas on random log-probs (float64, 1e-6), DPO-Positive."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from reasoner.algorithms import PREFERENCE_LOSSES, PairLogps, preference_loss


def _pairs(seed: int, b: int = 7) -> PairLogps:
    g = torch.Generator().manual_seed(seed)
    tokens_c = torch.randint(1, 40, (b,), generator=g)
    tokens_r = torch.randint(1, 40, (b,), generator=g)
    # summed log-probs of responses of ragged lengths: a few nats per token
    ref_c = -tokens_c * torch.rand(b, generator=g, dtype=torch.float64) * 3
    ref_r = -tokens_r * torch.rand(b, generator=g, dtype=torch.float64) * 3
    return PairLogps(chosen=ref_c + torch.randn(b, generator=g, dtype=torch.float64) * 4,
                     rejected=ref_r + torch.randn(b, generator=g, dtype=torch.float64) * 4,
                     ref_chosen=ref_c, ref_rejected=ref_r, chosen_tokens=tokens_c, rejected_tokens=tokens_r)


# --- TRL's formulas, transcribed from trl/trainer/dpo_trainer.py (v0.28.0): `DPOTrainer.dpo_loss` computes
#     logits = (chosen_logps - rejected_logps) - (ref_chosen_logps - ref_rejected_logps), then
#     sigmoid: -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
#     ipo:     (logits - 1 / (2 * beta)) ** 2
#     with, for ipo, every log-prob divided by its response's token count in `concatenated_forward`
#     (`all_logps = all_logps / loss_mask.sum(-1)`), and `get_batch_loss_metrics` adding
#     `rpo_alpha * nll_loss` (cross-entropy averaged over the chosen tokens) before `losses.mean()`.
def _trl_dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta, label_smoothing, loss_type):
    logits = (chosen - rejected) - (ref_chosen - ref_rejected)
    if loss_type == "sigmoid":
        return (-F.logsigmoid(beta * logits) * (1 - label_smoothing)
                - F.logsigmoid(-beta * logits) * label_smoothing)
    return (logits - 1 / (2 * beta)) ** 2


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("beta,label_smoothing", [(0.1, 0.0), (0.5, 0.1), (2.0, 0.3)])
def test_sigmoid_equals_trl(seed, beta, label_smoothing):
    p = _pairs(seed)
    ours = PREFERENCE_LOSSES.get("sigmoid")(p, beta=beta, label_smoothing=label_smoothing)
    ref = _trl_dpo_loss(p.chosen, p.rejected, p.ref_chosen, p.ref_rejected, beta, label_smoothing, "sigmoid")
    assert ours.dtype == torch.float64
    assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("beta", [0.05, 0.5, 3.0])
def test_ipo_equals_trl_on_length_averaged_logps(seed, beta):
    p = _pairs(seed)
    ours = PREFERENCE_LOSSES.get("ipo")(p, beta=beta)
    tc, tr = p.chosen_tokens.double(), p.rejected_tokens.double()
    ref = _trl_dpo_loss(p.chosen / tc, p.rejected / tr, p.ref_chosen / tc, p.ref_rejected / tr, beta, 0.0, "ipo")
    assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", range(3))
def test_objective_with_sft_term_equals_trl_rpo(seed):
    p = _pairs(seed)
    beta, alpha = 0.2, 0.7
    loss, stats = preference_loss("sigmoid", p, num_pairs=len(p.chosen), options={"beta": beta},
                                  sft_weight=alpha, num_chosen_tokens=float(p.chosen_tokens.sum()))
    nll = -p.chosen.sum() / p.chosen_tokens.sum()  # cross-entropy over all chosen tokens, averaged
    trl = (_trl_dpo_loss(p.chosen, p.rejected, p.ref_chosen, p.ref_rejected, beta, 0.0, "sigmoid")
           + alpha * nll).mean()
    assert_close(loss, trl, atol=1e-6, rtol=0)
    # TRL's logged rewards: beta * (policy - reference), detached
    assert_close(stats.rewards_chosen, beta * (p.chosen - p.ref_chosen))
    assert_close(stats.rewards_rejected, beta * (p.rejected - p.ref_rejected))
    sums = stats.sums()
    margin = beta * ((p.chosen - p.ref_chosen) - (p.rejected - p.ref_rejected))
    assert sums["rewards/accuracy"] == float((margin > 0).sum())
    assert math.isclose(sums["rewards/margin"], float(margin.sum()), abs_tol=1e-9)


def test_micro_batches_add_up_to_the_batch_mean():
    p = _pairs(0, b=8)
    whole, _ = preference_loss("ipo", p, num_pairs=8, options={"beta": 0.3}, sft_weight=0.5,
                               num_chosen_tokens=float(p.chosen_tokens.sum()))
    parts = 0.0
    for sl in (slice(0, 3), slice(3, 8)):
        part = PairLogps(*(getattr(p, f)[sl] for f in ("chosen", "rejected", "ref_chosen", "ref_rejected",
                                                         "chosen_tokens", "rejected_tokens")))
        loss, _ = preference_loss("ipo", part, num_pairs=8, options={"beta": 0.3}, sft_weight=0.5,
                                  num_chosen_tokens=float(p.chosen_tokens.sum()))
        parts = parts + loss
    assert_close(parts, whole, atol=1e-12, rtol=0)


def test_hand_computed_values():
    one = torch.ones(1, dtype=torch.float64)
    # policy == reference: z = 0 -> sigmoid loss log 2 whatever the smoothing; IPO (0 - 1/(2 beta))^2
    same = PairLogps(-3 * one, -5 * one, -3 * one, -5 * one, 4 * one, 2 * one)
    for eps in (0.0, 0.2):
        assert_close(PREFERENCE_LOSSES.get("sigmoid")(same, beta=0.1, label_smoothing=eps), math.log(2) * one)
    assert_close(PREFERENCE_LOSSES.get("ipo")(same, beta=0.25), 4.0 * one)  # (1 / 0.5)^2
    # c = +1, r = -1: z = 2, beta = 0.5 -> -log sigma(1) = log(1 + e^-1) = 0.313262
    up = PairLogps(-2 * one, -6 * one, -3 * one, -5 * one, 4 * one, 2 * one)
    assert abs(PREFERENCE_LOSSES.get("sigmoid")(up, beta=0.5).item() - 0.313262) < 1e-6
    # label smoothing 0.1: 0.9 * 0.313262 + 0.1 * log(1 + e) = 0.281936 + 0.131326 = 0.413262
    assert abs(PREFERENCE_LOSSES.get("sigmoid")(up, beta=0.5, label_smoothing=0.1).item() - 0.413262) < 1e-6
    # IPO: c/|y_w| - r/|y_l| = 1/4 + 1/2 = 0.75; beta = 0.5 -> (0.75 - 1)^2 = 0.0625
    assert_close(PREFERENCE_LOSSES.get("ipo")(up, beta=0.5), 0.0625 * one)


def test_dpo_positive_penalty():
    one = torch.ones(1, dtype=torch.float64)
    # chosen above the reference (c = +1): no penalty, the plain DPO value
    up = PairLogps(-2 * one, -6 * one, -3 * one, -5 * one, 4 * one, 2 * one)
    assert_close(PREFERENCE_LOSSES.get("sigmoid")(up, beta=0.5, dpop_lambda=50.0),
                 PREFERENCE_LOSSES.get("sigmoid")(up, beta=0.5))
    # both fall, the chosen by 1 nat (c = -1) and the rejected by 4 (r = -4): plain DPO sees z = 3;
    # DPO-Positive with lambda = 2: z = 3 - 2 * 1 = 1 -> -log sigma(0.5) = 0.474077
    down = PairLogps(-4 * one, -9 * one, -3 * one, -5 * one, 4 * one, 2 * one)
    assert abs(PREFERENCE_LOSSES.get("sigmoid")(down, beta=0.5, dpop_lambda=2.0).item() - 0.474077) < 1e-6
    # and its gradient pushes the chosen log-likelihood up harder than plain DPO does
    grads = []
    for lam in (0.0, 2.0):
        chosen = (-4 * one).requires_grad_()
        p = PairLogps(chosen, -9 * one, -3 * one, -5 * one, 4 * one, 2 * one)
        PREFERENCE_LOSSES.get("sigmoid")(p, beta=0.5, dpop_lambda=lam).sum().backward()
        grads.append(float(chosen.grad))
    assert grads[1] < grads[0] < 0   # descent raises log pi(y_w), by more with the penalty


def test_reference_is_a_constant_and_shapes_are_checked():
    p = _pairs(1)
    ref_c = p.ref_chosen.clone().requires_grad_()
    q = PairLogps(p.chosen.clone().requires_grad_(), p.rejected, ref_c, p.ref_rejected, p.chosen_tokens,
                  p.rejected_tokens)
    PREFERENCE_LOSSES.get("sigmoid")(q, beta=0.1).sum().backward()
    assert ref_c.grad is None and q.chosen.grad is not None
    with pytest.raises(ValueError, match=r"\[B\]"):
        PairLogps(p.chosen[:3], p.rejected, p.ref_chosen, p.ref_rejected, p.chosen_tokens, p.rejected_tokens)
    with pytest.raises(ValueError, match="valid names: ipo, sigmoid"):
        PREFERENCE_LOSSES.get("hinge")
    assert PREFERENCE_LOSSES.option_names("sigmoid") == ("beta", "label_smoothing", "dpop_lambda")


def test_pair_rules_by_hand():
    from reasoner.algorithms import pair_indices
    # two prompts of four answers and one prompt with no contrast
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    lengths = torch.tensor([30, 10, 20, 40, 5, 50, 60, 5, 7, 9])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    # best_worst: the first best vs the first worst (no length preference): group 0 -> 0 vs 1; group 1 -> 5 vs 4
    assert pair_indices(rewards, lengths, groups).tolist() == [[0, 1], [5, 4]]
    # all: every correct x incorrect of groups 0 and 1 (2 x 2 + 1 x 3), none from group 2
    everything = pair_indices(rewards, lengths, groups, rule="all").tolist()
    assert sorted(everything) == [[0, 1], [0, 3], [2, 1], [2, 3], [5, 4], [5, 6], [5, 7]]
    # short_long: the shortest best vs the longest longer answer: 2 (20) vs 3 (40); 5 (50) vs 6 (60); 8 vs 9
    assert pair_indices(rewards, lengths, groups, rule="short_long").tolist() == [[2, 3], [5, 6], [8, 9]]
    # a cap keeps a seeded subset per group
    capped = pair_indices(rewards, lengths, groups, rule="all", max_pairs_per_group=1,
                          generator=torch.Generator().manual_seed(0)).tolist()
    assert len(capped) == 2 and all(p in everything for p in capped)
    # groups in any order, ragged
    perm = torch.tensor([9, 0, 4, 1, 5, 2, 6, 3, 7, 8])
    shuffled = pair_indices(rewards[perm], lengths[perm], groups[perm]).tolist()
    assert sorted([int(perm[c]), int(perm[r])] for c, r in shuffled) == [[0, 1], [5, 4]]
    with pytest.raises(ValueError, match="best_worst, all, short_long"):
        pair_indices(rewards, lengths, groups, rule="random")
