"""The same verifiers, unchanged, as TRL reward functions and as a verl `compute_score`.

TRL (`GRPOTrainer(reward_funcs=...)`) calls `f(prompts=..., completions=..., completion_ids=..., **columns)`
where `columns` are the dataset's other columns (one list entry per completion) plus `trainer_state`,
`log_extra`, `log_metric`; it names the metric after `f.__name__`. `trl_reward_funcs(spec)` returns one function
per verifier of a `RewardSpec` and the weights for `GRPOConfig(reward_weights=...)`; each function also reports
its non-`correct` status fractions through `log_metric` so timeouts and parse errors show up in TRL's logs.

verl (`custom_reward_function.path = reasoner_verifiers/verl_reward.py`, `name = compute_score`) calls
`compute_score(data_source, solution_str, ground_truth, extra_info)` per sample (or `compute_score_batch` with
lists, for verl's batch reward manager). The example seen by the verifiers is `extra_info` plus the ground
truth: a mapping ground truth is merged in (`{"tests": ...}` for code), anything else becomes `answer`. The
spec comes from `$VERIFIERS_REWARD_SPEC` (a JSON object, or the path of a JSON file) and defaults to
`{"math": {"extract": "auto"}}`. The result is a dict: `score` (the weighted total), `acc` (primary verifier
correct) and one value per verifier, all numbers, as verl's metric aggregation expects.
"""
from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .registry import get_verifier
from .spec import RewardSpec
from .types import CORRECT, SCORED, Verifier

_TRL_RESERVED = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric",
                 "environments"}


def completion_text(completion: Any) -> str:
    """TRL passes strings (standard format) or message lists (conversational): take the last message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"cannot read a completion of type {type(completion).__name__}")


def examples_from_columns(n: int, columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Row dicts from TRL's column-wise keyword arguments (per-completion lists only)."""
    cols = {k: v for k, v in columns.items()
            if k not in _TRL_RESERVED and isinstance(v, (list, tuple)) and len(v) == n}
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


def trl_reward_func(verifier: Verifier | str, name: str | None = None, **options: Any) -> Callable[..., list[float]]:
    """One verifier (or a registry name plus options) as a TRL reward function."""
    v = get_verifier(verifier, **options) if isinstance(verifier, str) else verifier
    label = name or (verifier if isinstance(verifier, str) else v.name)

    def reward(completions: Sequence[Any], **columns: Any) -> list[float]:
        texts = [completion_text(c) for c in completions]
        scores = v.score_batch(texts, examples_from_columns(len(texts), columns))
        log_metric = columns.get("log_metric")
        if callable(log_metric) and scores:
            for status, count in Counter(s.status for s in scores).items():
                if status not in (CORRECT, SCORED):
                    log_metric(f"verifiers/{label}/{status}_frac", count / len(scores))
        return [s.value for s in scores]

    reward.__name__ = label
    reward.__qualname__ = label
    reward.verifier = v  # type: ignore[attr-defined]  # so callers can close() it
    return reward


def trl_reward_funcs(spec: RewardSpec) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """(reward_funcs, reward_weights) for `GRPOTrainer` / `GRPOConfig` from a RewardSpec."""
    funcs = [trl_reward_func(v, name=label) for label, v in spec.verifiers.items()]
    return funcs, [spec.weights[label] for label in spec.verifiers]


def make_verl_compute_score(spec: RewardSpec) -> Callable[..., dict[str, float]]:
    def compute_score(data_source: str, solution_str: str, ground_truth: Any,
                      extra_info: Mapping[str, Any] | None = None, **_: Any) -> dict[str, float]:
        return _verl_rows(spec, [solution_str], [ground_truth], [extra_info])[0]

    return compute_score


def _verl_rows(spec: RewardSpec, solutions: Sequence[str], truths: Sequence[Any],
               extras: Sequence[Mapping[str, Any] | None]) -> list[dict[str, float]]:
    examples = []
    for truth, extra in zip(truths, extras):
        example = dict(extra or {})
        if isinstance(truth, Mapping):
            example.update(truth)
        else:
            example["answer"] = truth
        examples.append(example)
    batch = spec.score_batch(list(solutions), examples)
    rows = []
    for i, total in enumerate(batch.totals):
        row = {"score": total, "acc": float(batch.correct[i])}
        row.update({label: scores[i].value for label, scores in batch.scores.items()})
        rows.append(row)
    return rows


_default_spec: RewardSpec | None = None
_default_lock = threading.Lock()


def _spec_from_env() -> RewardSpec:
    global _default_spec
    with _default_lock:
        if _default_spec is None:
            raw = os.environ.get("VERIFIERS_REWARD_SPEC", "")
            if raw and not raw.lstrip().startswith("{"):
                with open(raw, encoding="utf-8") as fh:
                    raw = fh.read()
            try:
                config = json.loads(raw) if raw else {"math": {"extract": "auto"}}
            except json.JSONDecodeError as exc:
                raise ValueError(f"VERIFIERS_REWARD_SPEC is not valid JSON: {exc}") from None
            _default_spec = RewardSpec.from_config(config)
        return _default_spec


def compute_score(data_source: str, solution_str: str, ground_truth: Any,
                  extra_info: Mapping[str, Any] | None = None, **_: Any) -> dict[str, float]:
    """verl's per-sample reward function, backed by the spec in `$VERIFIERS_REWARD_SPEC`."""
    return _verl_rows(_spec_from_env(), [solution_str], [ground_truth], [extra_info])[0]


def compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                        extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
                        **_: Any) -> list[dict[str, float]]:
    """verl's batch reward manager variant: one call per batch, so the math pool runs it in parallel."""
    extras = extra_infos if extra_infos is not None else [None] * len(solution_strs)
    return _verl_rows(_spec_from_env(), solution_strs, ground_truths, extras)
