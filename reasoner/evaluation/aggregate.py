"""Per-benchmark metrics from graded samples, each with a 95% confidence interval.

- pass@k: the unbiased estimator `1 - C(n-c, k) / C(n, k)` per problem (`reasoner.metrics.passk`), averaged over
  problems. pass@1 is therefore the mean correctness over all n samples (DeepSeek-R1's reported pass@1).
- maj@k (= cons@k): per problem, the majority vote over its first k samples' extracted answers (normalised by the
  math verifier's string normaliser, so `\\dfrac{1}{2}` and `\\frac12` are one vote); the vote is correct when the
  winning answer was graded correct. With k = n this is R1's cons@64.
- Rates (truncated, no answer) are per-problem fractions averaged over problems.
- Lengths (tokens) are means over samples: all, correct, incorrect.

Intervals: the problem is the unit of sampling, so rates and pass@k get `mean_ci95` over per-problem values
(Wilson when every value is 0/1, else a seeded bootstrap). Length intervals bootstrap over samples, which
ignores that samples of one problem are correlated (they come out somewhat too narrow); said here rather than
hidden.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reasoner.evaluation.core import SampleRecord
from reasoner.evaluation.hooks import run_hooks
from reasoner.metrics.passk import majority_vote, mean_ci95, pass_at_k


@dataclass
class Estimate:
    mean: float
    lo: float
    hi: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci95": [self.lo, self.hi]}

    def fmt(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


@dataclass
class BenchmarkMetrics:
    name: str
    num_problems: int
    samples_per_problem: int
    pass_at: dict[int, Estimate]
    maj_at: dict[int, Estimate]
    pass_curve: dict[int, float]          # pass@k for k = 1, 2, 4, ..., n (the plot)
    length: Estimate
    length_correct: Estimate | None
    length_incorrect: Estimate | None
    truncation_rate: Estimate
    no_answer_rate: Estimate
    status_rates: dict[str, dict[str, float]] = field(default_factory=dict)  # verifier -> status -> fraction
    extra: dict[str, float | None] = field(default_factory=dict)  # metric hooks' values (reasoner.evaluation.hooks)

    def as_dict(self) -> dict[str, Any]:
        opt = (lambda e: e.as_dict() if e is not None else None)
        return {
            "num_problems": self.num_problems, "samples_per_problem": self.samples_per_problem,
            **{f"pass@{k}": e.as_dict() for k, e in self.pass_at.items()},
            **{f"maj@{k}": e.as_dict() for k, e in self.maj_at.items()},
            "pass_curve": {str(k): v for k, v in self.pass_curve.items()},
            "mean_length": self.length.as_dict(), "mean_length_correct": opt(self.length_correct),
            "mean_length_incorrect": opt(self.length_incorrect),
            "truncation_rate": self.truncation_rate.as_dict(), "no_answer_rate": self.no_answer_rate.as_dict(),
            "status_rates": self.status_rates, "extra": self.extra,
        }


def group_by_problem(records: Sequence[SampleRecord]) -> dict[str, list[SampleRecord]]:
    """prompt id -> its samples sorted by sample index; every problem must have the same number of samples."""
    groups: dict[str, list[SampleRecord]] = {}
    for r in records:
        groups.setdefault(r.prompt_id, []).append(r)
    sizes = {len(v) for v in groups.values()}
    if len(sizes) > 1:
        raise ValueError(f"problems have different numbers of samples: {sorted(sizes)}")
    return {pid: sorted(v, key=lambda r: r.sample_index) for pid, v in groups.items()}


def vote_key(pred: str | None) -> str | None:
    """The form answers are compared in for majority voting (the math verifier's string normaliser)."""
    if pred is None or not pred.strip():
        return None
    from reasoner_verifiers import normalize_answer
    try:
        return normalize_answer(pred)
    except Exception:  # a normaliser failure must not lose a vote: fall back to the raw answer
        return pred.strip()


def compute_metrics(name: str, records: Sequence[SampleRecord], ks: Sequence[int], *, primary: str | None = None,
                    n_boot: int = 2000, seed: int = 0, hooks: Sequence[str] = ()) -> BenchmarkMetrics:
    groups = group_by_problem(records)
    if not groups:
        raise ValueError(f"benchmark '{name}': no samples to aggregate")
    n = len(next(iter(groups.values())))
    ks = sorted({k for k in ks if 1 <= k <= n} | {n})
    ci = (lambda values: Estimate(*mean_ci95(values, n_boot=n_boot, seed=seed)))
    problems = list(groups.values())
    correct_counts = [sum(r.correct for r in g) for g in problems]
    pass_at = {k: ci([pass_at_k(n, c, k) for c in correct_counts]) for k in ks}
    curve_ks = sorted({2 ** i for i in range(n.bit_length()) if 2 ** i <= n} | {n})
    curve = {k: float(sum(pass_at_k(n, c, k) for c in correct_counts) / len(problems)) for k in curve_ks}
    maj_at = {}
    if any(r.pred for r in records):  # no extracted answers (e.g. code): majority voting does not apply
        keys = [[vote_key(r.pred) for r in g] for g in problems]
        flags = [[r.correct for r in g] for g in problems]
        maj_at = {k: ci([float(majority_vote(a, c, k)) for a, c in zip(keys, flags)]) for k in ks}
    primary = primary or _primary_label(records)
    lengths = [float(r.num_tokens) for r in records]
    by_correct = {flag: [float(r.num_tokens) for r in records if r.correct == flag] for flag in (True, False)}
    return BenchmarkMetrics(
        name=name, num_problems=len(problems), samples_per_problem=n, pass_at=pass_at, maj_at=maj_at,
        pass_curve=curve, length=ci(lengths),
        length_correct=ci(by_correct[True]) if by_correct[True] else None,
        length_incorrect=ci(by_correct[False]) if by_correct[False] else None,
        truncation_rate=ci([sum(r.finish_reason == "length" for r in g) / n for g in problems]),
        no_answer_rate=ci([sum(r.statuses.get(primary) == "no_answer" for r in g) / n for g in problems]),
        status_rates=_status_rates(records), extra=run_hooks(hooks, records))


def _primary_label(records: Sequence[SampleRecord]) -> str | None:
    labels = list(records[0].statuses) if records else []
    return next((label for label in labels if label in ("math", "code")), labels[0] if labels else None)


def _status_rates(records: Sequence[SampleRecord]) -> dict[str, dict[str, float]]:
    counts: dict[str, dict[str, int]] = {}
    for r in records:
        for label, status in r.statuses.items():
            counts.setdefault(label, {}).setdefault(status, 0)
            counts[label][status] += 1
    return {label: {s: c / len(records) for s, c in sorted(by.items())} for label, by in counts.items()}


def paired_pass1_difference(a: Sequence[SampleRecord], b: Sequence[SampleRecord], *, n_boot: int = 10_000,
                            seed: int = 0) -> Estimate:
    """pass@1 of `a` minus pass@1 of `b`, two models graded on the same problems, with a paired 95% interval.

    The unit is the problem: per problem, the difference of the two mean correctnesses; the interval is a seeded
    percentile bootstrap over those differences. Pairing removes the between-problem variance that two separate
    intervals both carry, so a difference can be clear while the two intervals overlap."""
    ga, gb = group_by_problem(a), group_by_problem(b)
    if set(ga) != set(gb):
        only = sorted(set(ga) ^ set(gb))
        raise ValueError(f"the two runs graded different problems ({len(only)} differ, e.g. {only[0]!r})")
    diffs = [sum(r.correct for r in ga[p]) / len(ga[p]) - sum(r.correct for r in gb[p]) / len(gb[p])
             for p in sorted(ga)]
    mean, lo, hi = mean_ci95(diffs, method="bootstrap", n_boot=n_boot, seed=seed)
    return Estimate(mean, lo, hi)
