"""Per-step statistics of a batch of scored rollouts: rewards, pass@k within groups, lengths, statuses."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import fmean, pstdev

from reasoner.metrics.passk import pass_at_k_groups


def _length_stats(prefix: str, lengths: Sequence[int]) -> dict[str, float]:
    if not lengths:
        return {}
    return {f"{prefix}/mean": fmean(lengths), f"{prefix}/min": float(min(lengths)),
            f"{prefix}/max": float(max(lengths))}


def rollout_metrics(*, rewards: Sequence[float], correct: Sequence[bool], lengths: Sequence[int],
                    truncated: Sequence[bool], group_size: int,
                    verifier_values: Mapping[str, Sequence[float]] | None = None,
                    status_counts: Mapping[str, Mapping[str, int]] | None = None) -> dict[str, float]:
    """All of the flat metrics a GRPO step logs about its rollouts (`N` sequences, groups contiguous)."""
    n = len(rewards)
    m: dict[str, float] = {"reward/mean": fmean(rewards), "reward/std": pstdev(rewards)}
    for name, values in (verifier_values or {}).items():
        m[f"reward/{name}/mean"] = fmean(values)
        m[f"reward/{name}/std"] = pstdev(values)
    for name, counts in (status_counts or {}).items():
        for status, count in counts.items():
            m[f"status/{name}/{status}"] = count / n
    m["pass@1"] = pass_at_k_groups(list(correct), group_size, 1)
    m["pass@G"] = pass_at_k_groups(list(correct), group_size, group_size)
    m.update(_length_stats("length", lengths))
    m.update(_length_stats("length/correct", [n_ for n_, c in zip(lengths, correct) if c]))
    m.update(_length_stats("length/incorrect", [n_ for n_, c in zip(lengths, correct) if not c]))
    m.update(_length_stats("length/truncated", [n_ for n_, t in zip(lengths, truncated) if t]))
    m["truncation_ratio"] = sum(truncated) / n
    groups = [rewards[i:i + group_size] for i in range(0, n, group_size)]
    m["zero_variance_groups"] = sum(max(g) == min(g) for g in groups) / len(groups)
    return m
