"""Eval aggregation: pass@k / maj@k / lengths / rates from graded samples, against hand values and brute force."""
from __future__ import annotations

import itertools
import random

import pytest

from reasoner.config import ConfigError, load_config
from reasoner.evaluation import EvalConfig, SampleRecord, compute_metrics
from reasoner.evaluation.aggregate import group_by_problem, vote_key
from reasoner.evaluation.report import markdown_table
from reasoner.rollout import SamplingConfig


def rec(pid, j, correct, *, tokens=10, pred=None, finish="stop", status=None):
    status = status or ("correct" if correct else "wrong")
    return SampleRecord(prompt_id=pid, sample_index=j, completion="", num_tokens=tokens, finish_reason=finish,
                        correct=correct, reward=float(correct), statuses={"math": status}, answer="1", pred=pred)


def test_hand_computed_pass_at_k_lengths_and_rates():
    # problem a: 1 of 4 correct; problem b: 4 of 4 correct.
    records = [rec("a", 0, True, tokens=4), rec("a", 1, False, tokens=8, finish="length", status="no_answer"),
               rec("a", 2, False, tokens=12), rec("a", 3, False, tokens=16, finish="length", status="no_answer")]
    records += [rec("b", j, True, tokens=2) for j in range(4)]
    m = compute_metrics("toy", records, ks=[1, 2, 8])
    assert m.num_problems == 2 and m.samples_per_problem == 4
    assert sorted(m.pass_at) == [1, 2, 4]          # k=8 > n is skipped, k=n always reported
    assert m.pass_at[1].mean == pytest.approx((0.25 + 1.0) / 2)
    assert m.pass_at[2].mean == pytest.approx((0.5 + 1.0) / 2)   # 1 - C(3,2)/C(4,2) = 0.5
    assert m.pass_at[4].mean == pytest.approx(1.0)
    assert m.pass_curve == {1: pytest.approx(0.625), 2: pytest.approx(0.75), 4: pytest.approx(1.0)}
    assert m.length.mean == pytest.approx((4 + 8 + 12 + 16 + 4 * 2) / 8)
    assert m.length_correct.mean == pytest.approx((4 + 4 * 2) / 5)
    assert m.length_incorrect.mean == pytest.approx((8 + 12 + 16) / 3)
    assert m.truncation_rate.mean == pytest.approx((2 / 4 + 0) / 2)
    assert m.no_answer_rate.mean == pytest.approx((2 / 4 + 0) / 2)
    assert m.status_rates["math"] == {"correct": pytest.approx(5 / 8), "no_answer": pytest.approx(2 / 8),
                                      "wrong": pytest.approx(1 / 8)}
    assert m.maj_at == {}                          # no extracted answers: no vote
    for est in [*m.pass_at.values(), m.length, m.truncation_rate]:
        assert est.lo <= est.mean <= est.hi


def test_pass_at_k_equals_brute_force_over_sample_subsets():
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(1, 7)
        flags = {pid: [rng.random() < 0.4 for _ in range(n)] for pid in "pqr"}
        records = [rec(pid, j, f) for pid, fs in flags.items() for j, f in enumerate(fs)]
        m = compute_metrics("toy", records, ks=range(1, n + 1))
        for k in range(1, n + 1):
            brute = sum(
                sum(any(fs[i] for i in subset) for subset in itertools.combinations(range(n), k))
                / len(list(itertools.combinations(range(n), k))) for fs in flags.values()) / len(flags)
            assert m.pass_at[k].mean == pytest.approx(brute, abs=1e-12)


def test_majority_vote_groups_equivalent_forms_and_uses_the_first_k():
    # preds normalise: \dfrac{1}{2} == \frac{1}{2}, "$7$" == "7"
    records = [rec("a", 0, False, pred="7"), rec("a", 1, True, pred="\\frac{1}{2}"),
               rec("a", 2, True, pred="\\dfrac{1}{2}"), rec("a", 3, False, pred="$7$"), rec("a", 4, False, pred="7")]
    m = compute_metrics("toy", records, ks=[1, 3, 5])
    assert m.maj_at[1].mean == 0.0        # first sample alone: "7", wrong
    assert m.maj_at[3].mean == 1.0        # 1/2 twice vs 7 once
    assert m.maj_at[5].mean == 0.0        # 7 three times vs 1/2 twice
    assert vote_key("\\dfrac{1}{2}") == vote_key("\\frac{1}{2}") and vote_key("  ") is None


def test_unequal_sample_counts_are_refused():
    with pytest.raises(ValueError, match="different numbers of samples"):
        group_by_problem([rec("a", 0, True), rec("a", 1, True), rec("b", 0, True)])


def test_markdown_table_has_a_row_per_benchmark_with_intervals():
    m1 = compute_metrics("one", [rec("a", j, j == 0) for j in range(2)], ks=[1])
    m2 = compute_metrics("two", [rec("b", j, True, pred="3") for j in range(2)], ks=[1])
    table = markdown_table([m1, m2]).splitlines()
    assert table[0].startswith("| benchmark | problems | n | pass@1 | pass@2 | maj@2")
    assert table[2].startswith("| one | 1 | 2 | 0.500 [") and table[3].startswith("| two | 1 | 2 | 1.000 [")


def test_protocols_and_explicit_values():
    r1 = SamplingConfig(protocol="r1").resolve()
    assert (r1["n"], r1["temperature"], r1["top_p"]) == (64, 0.6, 0.95)
    cfg = load_config(EvalConfig, None, ["sampling.n=4", "sampling.temperature=0.8"])
    assert cfg.sampling.params().n == 4 and cfg.sampling.params().temperature == 0.8
    assert cfg.sampling.params().top_p == 0.95                       # still the protocol's
    greedy = load_config(EvalConfig, None, ["sampling.protocol=greedy"]).sampling.params()
    assert greedy.n == 1 and greedy.temperature == 0.0
    with pytest.raises(ConfigError, match="sampling.protocol: unknown protocol 'r2'"):
        load_config(EvalConfig, None, ["sampling.protocol=r2"])


def test_paired_difference_is_the_mean_per_problem_difference():
    from reasoner.evaluation.aggregate import paired_pass1_difference

    def records(correct_by_problem):
        return [SampleRecord(prompt_id=p, sample_index=i, completion="", num_tokens=1, finish_reason="stop",
                             correct=c, reward=float(c))
                for p, cs in correct_by_problem.items() for i, c in enumerate(cs)]

    a = records({"p1": [1, 1], "p2": [1, 0], "p3": [0, 0]})
    b = records({"p1": [1, 0], "p2": [1, 0], "p3": [0, 0]})
    est = paired_pass1_difference(a, b)
    assert est.mean == pytest.approx((0.5 + 0 + 0) / 3)
    assert 0.0 <= est.lo <= est.mean <= est.hi <= 0.5  # bootstrap means of {0.5, 0, 0}
    same = paired_pass1_difference(a, a)
    assert (same.mean, same.lo, same.hi) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="different problems"):
        paired_pass1_difference(a, records({"p1": [1, 1], "p9": [0, 0], "p3": [0, 0]}))
