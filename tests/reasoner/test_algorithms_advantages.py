"""Advantage estimators: hand-computed values, a loop-based reference on random rewards, edge cases."""
from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch.testing import assert_close

from reasoner.algorithms import ADVANTAGE_ESTIMATORS, compute_advantages

REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # two groups of G=4; the second has zero std


def test_grpo_hand_computed_unbiased_std():
    # group 1: mean 0.5, centered +-0.5, unbiased var = 4 * 0.25 / 3 = 1/3, std = 0.57735 -> +-0.5 / 0.57735
    # = +-0.86603; group 2: all equal -> exactly 0.
    adv = compute_advantages("grpo", REWARDS, 4)
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    assert adv.dtype == torch.float32
    assert_close(adv, torch.tensor([a, -a, -a, a, 0, 0, 0, 0]))
    assert abs(a - 0.866024) < 1e-5
    assert torch.equal(adv[4:], torch.zeros(4))


def test_grpo_biased_std_option():
    # biased std of [1,0,0,1] = 0.5 -> +-0.5 / (0.5 + 1e-6)
    adv = compute_advantages("grpo", REWARDS, 4, std_unbiased=False)
    a = 0.5 / (0.5 + 1e-6)
    assert_close(adv, torch.tensor([a, -a, -a, a, 0, 0, 0, 0]))


def test_grpo_zero_std_group_is_exactly_zero_despite_round_off():
    # 0.1 * 3 summed in float is not exactly 0.3; a naive (r - mean) / (std + eps) gives round-off noise / eps.
    adv = compute_advantages("grpo", torch.tensor([0.1, 0.1, 0.1, 0.7, 0.7, 0.7], dtype=torch.float64), 3)
    assert torch.equal(adv, torch.zeros(6))


def test_dr_grpo_hand_computed():
    # r - group mean: [0.5, -0.5, -0.5, 0.5 | 0, 0, 0, 0]
    assert_close(compute_advantages("dr_grpo", REWARDS, 4), torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]))


def test_rloo_hand_computed():
    # r_0 = 1, others [0, 0, 1] mean 1/3 -> 2/3; r_1 = 0, others [1, 0, 1] mean 2/3 -> -2/3; zero-std group -> 0.
    t = 2 / 3
    assert_close(compute_advantages("rloo", REWARDS, 4), torch.tensor([t, -t, -t, t, 0, 0, 0, 0]))
    # G = 2: [3, 1] -> [3 - 1, 1 - 3]
    assert_close(compute_advantages("rloo", torch.tensor([3.0, 1.0]), 2), torch.tensor([2.0, -2.0]))


def test_reinforce_pp_baseline_hand_computed():
    # group-centered: [.5, -.5, -.5, .5, 0, 0, 0, 0]; batch unbiased std = sqrt(sum x^2 / 7) = sqrt(1/7)
    # = 0.377964 -> +-0.5 / 0.377964 = +-1.322876
    a = 0.5 / (math.sqrt(1 / 7) + 1e-6)
    adv = compute_advantages("reinforce_pp_baseline", REWARDS, 4)
    assert_close(adv, torch.tensor([a, -a, -a, a, 0, 0, 0, 0]))
    assert abs(a - 1.322876) < 1e-5


def test_group_size_one():
    r = torch.tensor([1.0, 0.0, 2.0, 1.0])
    for name in ("grpo", "dr_grpo"):
        with pytest.warns(UserWarning, match="group_size=1"):
            assert torch.equal(compute_advantages(name, r, 1), torch.zeros(4))
    with pytest.raises(ValueError, match="rloo needs group_size >= 2"):
        compute_advantages("rloo", r, 1)
    # reinforce_pp_baseline, G = 1: plain REINFORCE++ (batch whitening): mean 1, unbiased std sqrt(2/3)
    s = math.sqrt(2 / 3) + 1e-6
    assert_close(compute_advantages("reinforce_pp_baseline", r, 1), torch.tensor([0.0, -1 / s, 1 / s, 0.0]))
    # ... with no spread, or a single sequence: 0
    assert torch.equal(compute_advantages("reinforce_pp_baseline", torch.full((3,), 0.3), 1), torch.zeros(3))
    assert torch.equal(compute_advantages("reinforce_pp_baseline", torch.tensor([5.0]), 1), torch.zeros(1))


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"])
def test_bad_inputs_get_one_clear_error(name):
    with pytest.raises(ValueError, match=r"N=7 is not a multiple of group_size=4"):
        compute_advantages(name, torch.zeros(7), 4)
    with pytest.raises(ValueError, match=r"non-finite reward.*index \[2\]"):
        compute_advantages(name, torch.tensor([0.0, 1.0, float("nan"), 1.0]), 2)
    with pytest.raises(ValueError, match="1-D"):
        compute_advantages(name, torch.zeros(2, 2), 2)
    with pytest.raises(ValueError, match="group_size"):
        compute_advantages(name, torch.zeros(4), 0)


def test_unknown_estimator_lists_valid_names():
    with pytest.raises(KeyError) as info:
        compute_advantages("ppo_gae", REWARDS, 4)
    message = str(info.value)
    assert "ppo_gae" in message
    for name in ("grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"):
        assert name in message
    with pytest.raises(ValueError):  # the same error is also a ValueError
        compute_advantages("ppo_gae", REWARDS, 4)


def test_accepts_python_lists_and_keeps_device():
    adv = compute_advantages("dr_grpo", [1, 0, 3, 3], 2)
    assert_close(adv, torch.tensor([0.5, -0.5, 0.0, 0.0]))
    assert adv.device == torch.device("cpu")


# ---- reference implementations: plain Python loops over groups, deliberately straightforward ----

def _groups(rewards: list[float], g: int) -> list[list[float]]:
    return [rewards[i : i + g] for i in range(0, len(rewards), g)]


def ref_grpo(rewards, g, std_unbiased=True, eps=1e-6):
    out = []
    for group in _groups(rewards, g):
        mean = sum(group) / g
        std = statistics.stdev(group) if std_unbiased else statistics.pstdev(group)
        out += [0.0 if max(group) == min(group) else (r - mean) / (std + eps) for r in group]
    return out


def ref_dr_grpo(rewards, g):
    out = []
    for group in _groups(rewards, g):
        out += [r - sum(group) / g for r in group]
    return out


def ref_rloo(rewards, g):
    out = []
    for group in _groups(rewards, g):
        for i, r in enumerate(group):
            others = group[:i] + group[i + 1 :]
            out.append(r - sum(others) / len(others))
    return out


def ref_reinforce_pp_baseline(rewards, g, eps=1e-6):
    centered = ref_dr_grpo(rewards, g)
    std = statistics.stdev(centered)
    return [c / (std + eps) for c in centered]


REFERENCES = {
    "grpo": ref_grpo,
    "dr_grpo": ref_dr_grpo,
    "rloo": ref_rloo,
    "reinforce_pp_baseline": ref_reinforce_pp_baseline,
}


def _random_rewards(gen: torch.Generator, prompts: int, g: int) -> torch.Tensor:
    kind = torch.randint(0, 3, (1,), generator=gen).item()
    if kind == 0:  # binary correctness, many zero-std groups
        return torch.randint(0, 2, (prompts * g,), generator=gen).float()
    if kind == 1:  # correctness plus a small format bonus
        return torch.randint(0, 2, (prompts * g,), generator=gen).float() + 0.1 * torch.randint(0, 2, (prompts * g,), generator=gen)
    return torch.randn(prompts * g, generator=gen) * 3


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("seed", range(6))
def test_matches_loop_reference(name, seed):
    gen = torch.Generator().manual_seed(seed)
    for prompts, g in ((1, 2), (3, 4), (8, 8), (5, 16)):
        rewards = _random_rewards(gen, prompts, g)
        expected = torch.tensor(REFERENCES[name](rewards.tolist(), g), dtype=torch.float32)
        assert_close(compute_advantages(name, rewards, g), expected, rtol=1e-5, atol=1e-6)


def test_registry_holds_exactly_the_documented_estimators():
    assert ADVANTAGE_ESTIMATORS.names() == ["dr_grpo", "gae", "grpo", "reinforce_pp", "reinforce_pp_baseline",
                                            "rloo"]
