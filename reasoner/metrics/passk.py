"""pass@k, majority voting and confidence intervals for per-problem results (no model, no torch needed).

- `pass_at_k(n, c, k)`: the unbiased estimator of Chen et al. (2021, HumanEval), `1 - C(n-c, k) / C(n, k)`, in
  the product form `1 - prod_{i=n-c+1}^{n} (1 - k/i)` that never forms the huge binomials (stable at n = 1000+).
- `pass_at_k_groups`: the mean of that estimator over groups of `n` contiguous samples (one group per problem).
- `majority_vote`: maj@k / cons@k: the most frequent non-empty answer among the first k samples.
- `mean_ci95`: a 95% interval for a mean over problems: Wilson's score interval when every value is 0 or 1
  (a proportion), otherwise a seeded percentile bootstrap (deterministic, so reports are reproducible).

Simplification: `majority_vote` compares answers as strings; callers normalise them first (strip, canonical
form) if "1/2" and "0.5" should be one vote.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def _as_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from `n` samples of which `c` are correct: `1 - C(n-c, k) / C(n, k)`.

    Raises ValueError unless `0 <= c <= n` and `1 <= k <= n` (pass@k needs at least k samples).
    """
    n, c, k = _as_int(n, "n"), _as_int(c, "c"), _as_int(k, "k")
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"need n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n for pass@k, got k={k} with n={n} samples")
    if c == 0:
        return 0.0
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def _correct_list(correct: Sequence[bool] | object) -> list[bool]:
    """Booleans from a sequence of bools/0-1 numbers, a numpy array or a torch tensor (torch not imported)."""
    if hasattr(correct, "detach"):  # a torch tensor
        correct = correct.detach().cpu().numpy()
    values = np.asarray(correct)
    if values.ndim != 1:
        raise ValueError(f"correct must be 1-D [N], got shape {values.shape}")
    if values.dtype != bool and not np.isin(values, (0, 1)).all():
        bad = int(np.flatnonzero(~np.isin(values, (0, 1)))[0])
        raise ValueError(f"correct must hold booleans or 0/1, got {values[bad].item()!r} at index {bad}")
    return values.astype(bool).tolist()


def pass_at_k_groups(correct: Sequence[bool] | object, group_size: int, k: int) -> float:
    """Mean pass@k over groups of `group_size` contiguous samples (`correct[N]`, N = problems x group_size)."""
    flags = _correct_list(correct)
    group_size = _as_int(group_size, "group_size")
    if group_size < 1 or len(flags) == 0 or len(flags) % group_size != 0:
        raise ValueError(
            f"number of samples N={len(flags)} must be a positive multiple of group_size={group_size}"
        )
    groups = [flags[i : i + group_size] for i in range(0, len(flags), group_size)]
    return float(np.mean([pass_at_k(group_size, sum(g), k) for g in groups]))


def majority_vote(answers: Sequence[str | None], correct: Sequence[bool], k: int | None = None) -> bool:
    """Is the majority answer among the first `k` samples (all when None) correct?

    The majority answer is the most frequent non-empty answer (None and blank strings abstain); ties go to the
    answer seen first. Its correctness is that of its first occurrence. No non-empty answer -> False.
    """
    if len(answers) != len(correct):
        raise ValueError(f"answers ({len(answers)}) and correct ({len(correct)}) differ in length")
    if k is not None:
        k = _as_int(k, "k")
        if not 1 <= k <= len(answers):
            raise ValueError(f"need 1 <= k <= {len(answers)} (the number of samples), got k={k}")
    counts: dict[str, int] = {}
    first_flag: dict[str, bool] = {}
    for answer, flag in zip(answers[:k], correct[:k]):
        if answer is None or not str(answer).strip():
            continue
        if answer not in counts:  # dicts keep insertion order: the first occurrence wins ties below
            counts[answer] = 0
            first_flag[answer] = bool(flag)
        counts[answer] += 1
    if not counts:
        return False
    best = max(counts, key=counts.__getitem__)  # max returns the first maximal key in insertion order
    return first_flag[best]


def mean_ci95(
    values: Sequence[float] | object, *, method: str = "auto", n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """`(mean, lo, hi)`: the mean of per-problem values with a 95% confidence interval.

    Args:
        values: per-problem values (e.g. 0/1 correctness or per-problem pass@1 estimates).
        method: "wilson" (values must be 0/1), "bootstrap" (percentile bootstrap), or "auto" (Wilson when all
            values are 0 or 1, else bootstrap).
        n_boot, seed: bootstrap resamples and RNG seed (a fixed seed makes the interval reproducible).
    """
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("mean_ci95 needs at least one value")
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise ValueError(f"non-finite value {x[bad]} at index {bad}")
    binary = bool(np.isin(x, (0.0, 1.0)).all())
    if method == "auto":
        method = "wilson" if binary else "bootstrap"
    if method == "wilson":
        if not binary:
            raise ValueError("method='wilson' needs values that are all 0 or 1; use 'bootstrap'")
        lo, hi = _wilson(float(x.mean()), x.size)
    elif method == "bootstrap":
        lo, hi = _bootstrap(x, n_boot, seed)
    else:
        raise ValueError(f"unknown method {method!r}; valid: auto, bootstrap, wilson")
    return float(x.mean()), lo, hi


def _wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion `p` of `n` trials."""
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def _bootstrap(x: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """2.5% and 97.5% percentiles of `n_boot` resampled means, drawn in chunks to bound memory."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    chunk = max(1, (1 << 22) // x.size)  # ~4M indices per draw
    draws = [rng.integers(0, x.size, size=(min(chunk, n_boot - i), x.size)) for i in range(0, n_boot, chunk)]
    means = np.concatenate([x[d].mean(axis=1) for d in draws])
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)
