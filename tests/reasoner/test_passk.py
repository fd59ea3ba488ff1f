"""pass@k against brute force and the human-eval formula; majority vote; confidence intervals."""
from __future__ import annotations

import itertools
import random
from fractions import Fraction
from math import comb

import numpy as np
import pytest
import torch

from reasoner.metrics.passk import majority_vote, mean_ci95, pass_at_k, pass_at_k_groups


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (the first c correct) that contain a correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def human_eval_reference(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0
    return float(1 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def test_hand_computed():
    # n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5; n=10, c=3, k=2: 1 - C(7,2)/C(10,2) = 1 - 21/45 = 0.5333
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - 21 / 45)
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)  # pass@1 = c / n
    assert pass_at_k(5, 0, 3) == 0.0  # no correct sample
    assert pass_at_k(5, 3, 3) == 1.0  # n - c = 2 < k = 3: every 3-subset has a correct one


def test_agrees_with_brute_force_for_small_n():
    for n in range(1, 11):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_agrees_with_human_eval_formula_on_random_inputs():
    rng = random.Random(0)
    for _ in range(500):
        n = rng.randint(1, 300)
        c, k = rng.randint(0, n), rng.randint(1, n)
        assert pass_at_k(n, c, k) == pytest.approx(human_eval_reference(n, c, k), abs=1e-12)


def test_numerically_stable_for_n_1000():
    # exact rational arithmetic on the binomials as the ground truth (C(1000, 500) has ~300 digits)
    for c, k in ((1, 1), (3, 10), (10, 100), (500, 500), (990, 5), (1, 999), (100, 1)):
        exact = 1 - Fraction(comb(1000 - c, k), comb(1000, k))
        value = pass_at_k(1000, c, k)
        assert 0.0 <= value <= 1.0
        assert value == pytest.approx(float(exact), rel=1e-9, abs=1e-12), (c, k)


def test_errors():
    with pytest.raises(ValueError, match="k=11 with n=10"):
        pass_at_k(10, 3, 11)
    with pytest.raises(ValueError, match="1 <= k"):
        pass_at_k(10, 3, 0)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(10, 11, 1)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(10, -1, 1)
    with pytest.raises(TypeError, match="must be an int"):
        pass_at_k(10.0, 3, 1)


def test_pass_at_k_groups():
    # group 1: 1 of 4 correct -> pass@2 = 1 - C(3,2)/C(4,2) = 0.5; group 2: 0 of 4 -> 0; mean 0.25
    flags = [True, False, False, False, False, False, False, False]
    assert pass_at_k_groups(flags, 4, 2) == pytest.approx(0.25)
    assert pass_at_k_groups(torch.tensor(flags), 4, 2) == pytest.approx(0.25)
    assert pass_at_k_groups(np.array(flags, dtype=int), 4, 1) == pytest.approx((1 / 4 + 0) / 2)
    with pytest.raises(ValueError, match="N=7 must be a positive multiple of group_size=4"):
        pass_at_k_groups(flags[:7], 4, 1)
    with pytest.raises(ValueError, match="booleans or 0/1, got 2 at index 1"):
        pass_at_k_groups([0, 2], 2, 1)
    with pytest.raises(ValueError, match="k=5 with n=4"):
        pass_at_k_groups(flags, 4, 5)


def test_majority_vote():
    answers = ["12", "7", "7", None, "12", "  ", "12"]
    correct = [True, False, False, False, True, False, True]
    assert majority_vote(answers, correct) is True  # "12" x3 beats "7" x2
    assert majority_vote(answers, correct, k=3) is False  # "7" x2 beats "12" x1
    # a tie ("12" and "7" twice each among the first 5) goes to the answer seen first: "12"
    assert majority_vote(answers, correct, k=5) is True
    assert majority_vote(["7", "12", "12", "7"], [False, True, True, False]) is False  # tie, "7" first
    # None and blank strings abstain; nothing left -> False
    assert majority_vote([None, "", " "], [True, True, True]) is False
    assert majority_vote([None, "3"], [False, True]) is True
    with pytest.raises(ValueError, match="differ in length"):
        majority_vote(["1"], [True, False])
    with pytest.raises(ValueError, match="1 <= k <= 2"):
        majority_vote(["1", "2"], [True, False], k=3)


def test_wilson_interval_hand_computed():
    # 5 of 10: center 0.5, half-width 1.96 / (1 + 3.8415/10) * sqrt(0.025 + 3.8415/400) = 0.26340
    mean, lo, hi = mean_ci95([1] * 5 + [0] * 5)
    assert mean == 0.5
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    # all correct: Wilson's upper bound is 1 but the lower bound is not (unlike the normal approximation)
    mean, lo, hi = mean_ci95([1, 1, 1, 1])
    assert mean == 1.0 and hi == pytest.approx(1.0) and lo == pytest.approx(4 / (4 + 1.959964**2), abs=1e-6)


def test_bootstrap_interval():
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 1, size=200)  # not 0/1: auto picks the bootstrap
    mean, lo, hi = mean_ci95(values)
    assert mean == pytest.approx(values.mean())
    assert lo < mean < hi
    # close to the normal-theory interval mean +- 1.96 * sd / sqrt(n)
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert hi - lo == pytest.approx(2 * half, rel=0.1)
    assert mean_ci95(values) == mean_ci95(values)  # seeded: reproducible
    assert mean_ci95([0.25]) == (0.25, 0.25, 0.25)
    assert mean_ci95([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    # bootstrap on 0/1 values on request
    m, lo, hi = mean_ci95([1] * 30 + [0] * 70, method="bootstrap")
    assert m == pytest.approx(0.3) and lo < 0.3 < hi


def test_ci_errors():
    with pytest.raises(ValueError, match="at least one"):
        mean_ci95([])
    with pytest.raises(ValueError, match="non-finite value nan at index 1"):
        mean_ci95([0.5, float("nan")])
    with pytest.raises(ValueError, match="all 0 or 1"):
        mean_ci95([0.5, 1.0], method="wilson")
    with pytest.raises(ValueError, match="valid: auto, bootstrap, wilson"):
        mean_ci95([0.5], method="t")
