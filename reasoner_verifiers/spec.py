"""A reward spec: named verifiers with weights, scored together into one typed batch.

`RewardSpec.from_config({"math": {"weight": 1.0, "mode": "strict"}, "format": {"weight": 0.1}})`: each key is
a verifier name (or any label, with the registry name given as `"verifier": "math"`, so that e.g. a strict and a
lenient math grader can sit side by side); `weight` defaults to 1.0; every other key is that verifier's option.
The RL reward of a completion is the weighted sum; `correct` comes from the primary verifier (the first `math`
or `code` entry unless `primary=` names another), which is what pass@k counts.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .registry import get_verifier
from .types import Score, Verifier, check_batch

_PRIMARY_KINDS = ("math", "code")


@dataclass
class RewardBatch:
    scores: dict[str, list[Score]]
    weights: dict[str, float]
    primary: str | None = None
    totals: list[float] = field(init=False)
    correct: list[bool] = field(init=False)

    def __post_init__(self) -> None:
        lengths = {len(v) for v in self.scores.values()}
        if len(lengths) > 1:
            raise ValueError(f"verifiers returned different numbers of scores: {lengths}")
        n = lengths.pop() if lengths else 0
        self.totals = [sum(self.weights[name] * self.scores[name][i].value for name in self.scores)
                       for i in range(n)]
        self.correct = ([s.correct for s in self.scores[self.primary]] if self.primary else [False] * n)

    def __len__(self) -> int:
        return len(self.totals)

    def means(self) -> dict[str, float]:
        """Per-verifier mean value: what the trainer logs (plus `total`)."""
        out = {name: (sum(s.value for s in scores) / len(scores) if scores else 0.0)
               for name, scores in self.scores.items()}
        out["total"] = sum(self.totals) / len(self.totals) if self.totals else 0.0
        return out

    def status_counts(self) -> dict[str, dict[str, int]]:
        return {name: dict(Counter(s.status for s in scores)) for name, scores in self.scores.items()}


class RewardSpec:
    def __init__(self, verifiers: Mapping[str, Verifier], weights: Mapping[str, float],
                 primary: str | None = None):
        if set(verifiers) != set(weights):
            raise ValueError("RewardSpec: verifiers and weights must have the same names")
        if primary is not None and primary not in verifiers:
            raise ValueError(f"RewardSpec: primary {primary!r} is not one of {', '.join(verifiers)}")
        self.verifiers = dict(verifiers)
        self.weights = {k: float(v) for k, v in weights.items()}
        self.primary = primary

    @classmethod
    def from_config(cls, config: Mapping[str, Mapping[str, Any] | None], primary: str | None = None) -> RewardSpec:
        if not config:
            raise ValueError("RewardSpec.from_config: the config names no verifier")
        verifiers: dict[str, Verifier] = {}
        weights: dict[str, float] = {}
        kinds: dict[str, str] = {}
        try:
            for label, raw in config.items():
                if label == "total":
                    raise ValueError("reward label 'total' is reserved "
                                     "(RewardBatch.means() reports the total under it)")
                options = dict(raw or {})
                weight = options.pop("weight", 1.0)
                if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                    raise ValueError(f"reward {label!r}: weight must be a number, got {weight!r}")
                kind = options.pop("verifier", label)
                verifiers[label] = get_verifier(kind, **options)
                weights[label] = float(weight)
                kinds[label] = kind
        except Exception:
            for v in verifiers.values():
                v.close()
            raise
        if primary is None:
            primary = next((label for label, kind in kinds.items() if kind in _PRIMARY_KINDS), None)
        return cls(verifiers, weights, primary)

    def score_batch(self, completions: Sequence[str], examples: Sequence[Mapping[str, Any]]) -> RewardBatch:
        check_batch(completions, examples)
        scores = {name: v.score_batch(completions, examples) for name, v in self.verifiers.items()}
        return RewardBatch(scores, self.weights, self.primary)

    def score(self, completion: str, example: Mapping[str, Any]) -> RewardBatch:
        return self.score_batch([completion], [example])

    def close(self) -> None:
        for v in self.verifiers.values():
            v.close()

    def __enter__(self) -> RewardSpec:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
