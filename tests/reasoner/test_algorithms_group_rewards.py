"""Group length rewards: Kimi k1.5's length penalty and open-r1's cosine reward, by hand and vs open-r1's code."""
from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from reasoner.algorithms import GROUP_REWARDS


def test_kimi_length_penalty_by_hand():
    fn = GROUP_REWARDS.get("length_penalty")
    # one group: lengths 10, 20, 30, 50 -> lambda = 0.5, 0.25, 0, -0.5; wrong answers get min(0, lambda)
    lengths = torch.tensor([10, 20, 30, 50, 7, 7])
    correct = torch.tensor([True, False, True, False, True, False])
    out = fn(lengths, correct, 2)  # groups of 2: (10, 20), (30, 50), (7, 7)
    assert_close(out, torch.tensor([0.5, -0.5, 0.5, -0.5, 0.0, 0.0], dtype=torch.float64))
    out4 = fn(lengths[:4], correct[:4], 4)
    assert_close(out4, torch.tensor([0.5, 0.0, 0.0, -0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="divisible by the group size 4"):
        fn(lengths, correct, 4)


# open-r1 (src/open_r1/rewards.py), transcribed: `len_reward` computes, over the completions it is given,
#   lambda_val = 0.5 - (length - min_len) / (max_len - min_len); reward = lambda_val if correct else min(0, lambda_val)
#   (all zeros when max_len == min_len); we apply it per group.
#   `get_cosine_scaled_reward`: progress = gen_len / max_len; cosine = cos(progress * pi);
#   correct: min_value, max_value = min_value_correct, max_value_correct;
#   wrong: min_value, max_value = max_value_wrong, min_value_wrong;
#   reward = min_value + 0.5 * (max_value - min_value) * (1.0 + cosine)
def _open_r1_len_reward(lengths, correct):
    lo, hi = min(lengths), max(lengths)
    if lo == hi:
        return [0.0] * len(lengths)
    lam = [0.5 - (n - lo) / (hi - lo) for n in lengths]
    return [x if ok else min(0, x) for x, ok in zip(lam, correct)]


def _open_r1_cosine(length, correct, max_len, min_w=-1.0, max_w=-0.5, min_c=0.5, max_c=1.0):
    cosine = math.cos(length / max_len * math.pi)
    lo, hi = (min_c, max_c) if correct else (max_w, min_w)
    return lo + 0.5 * (hi - lo) * (1.0 + cosine)


@pytest.mark.parametrize("seed", range(3))
def test_equal_open_r1_formulas(seed):
    g = torch.Generator().manual_seed(seed)
    G = 8
    lengths = torch.randint(1, 300, (6 * G,), generator=g)
    correct = torch.rand(6 * G, generator=g) < 0.5
    expected = [x for k in range(6) for x in _open_r1_len_reward(lengths[k * G:(k + 1) * G].tolist(),
                                                                 correct[k * G:(k + 1) * G].tolist())]
    assert_close(GROUP_REWARDS.get("length_penalty")(lengths, correct, G),
                 torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)
    opts = dict(min_value_wrong=-2.0, max_value_wrong=-0.3, min_value_correct=0.2, max_value_correct=1.5)
    cos = GROUP_REWARDS.get("cosine_length")(lengths, correct, G, max_length=256, **opts)
    ref = [_open_r1_cosine(int(n), bool(c), 256, opts["min_value_wrong"], opts["max_value_wrong"],
                           opts["min_value_correct"], opts["max_value_correct"]) for n, c in zip(lengths, correct)]
    assert_close(cos, torch.tensor(ref, dtype=torch.float64), atol=1e-6, rtol=0)


def test_cosine_by_hand():
    fn = GROUP_REWARDS.get("cosine_length")
    # length 0: cos 0 = 1 -> correct 1.0, wrong -1.0 (a short wrong answer is punished hardest); length max:
    # cos pi = -1 -> correct 0.5, wrong -0.5; half way: cos(pi/2) = 0 -> the midpoints 0.75 and -0.75
    out = fn(torch.tensor([0, 100, 50, 0, 100, 50]), torch.tensor([True, True, True, False, False, False]), 3,
             max_length=100)
    assert_close(out, torch.tensor([1.0, 0.5, 0.75, -1.0, -0.5, -0.75], dtype=torch.float64))
