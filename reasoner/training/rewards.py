"""The reward of a stage's `verifiers` section: per-completion verifiers (`reasoner_verifiers.RewardSpec`) and,
in the RL loop, group terms that need a whole group of answers (`reasoner.algorithms.shaping.GROUP_REWARDS`).

An entry of `reward.verifiers` whose name (or `verifier:`) is a group term — `length_penalty` (Kimi k1.5),
`cosine_length` (open-r1) — is not a verifier: it needs the group's token lengths and the primary verifier's
verdicts, which only the loop has, so it is split off here and applied after scoring (`GroupRewards.apply`). Its
options are the function's keyword parameters, plus `weight` and `warmup_steps` (the term is 0 up to that step:
Kimi's warm-up, plain RL first). The result is one `RewardBatch` with the terms as extra labels, so totals,
`reward/<label>` metrics and samples treat them like any verifier. The verifiers package stays torch-free.

Verifiers that need torch live on the reasoner side and register themselves here, before the spec is built:
`reward_model` (`reasoner/rm/verifier.py`, a trained reward model's score).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from reasoner.algorithms.shaping import GROUP_REWARDS
from reasoner.config import ConfigError
from reasoner_verifiers import RewardBatch, RewardSpec, Score


def reward_spec_for(config: Mapping[str, Mapping[str, Any] | None], where: str, *,
                    group_terms: bool = False) -> RewardSpec:
    """`RewardSpec.from_config(config)` without the group terms (`group_terms=True`: the RL loop, which applies
    them through `group_rewards_for`; elsewhere a group term is an error); an unknown verifier name or option is
    one `ConfigError` naming `where` (the verifiers package raises plain ValueErrors: it knows nothing of
    reasoner's config files)."""
    from reasoner.rm.verifier import register

    register()
    plain, terms = _split(config)
    if terms and not group_terms:
        label = next(iter(terms))
        raise ConfigError(f"{where}.{label}: a group reward term needs the RL loop's groups of answers; only the "
                          "training reward (reward.verifiers of reasoner train) takes it")
    try:
        return RewardSpec.from_config(plain)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {' '.join(str(e).split())}") from None


@dataclass
class GroupTerm:
    label: str
    name: str                                      # a GROUP_REWARDS name
    weight: float = 1.0
    warmup_steps: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class GroupRewards:
    terms: list[GroupTerm] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.terms)

    def apply(self, scored: RewardBatch, lengths: Sequence[int], group_size: int, *, step: int,
              max_length: int) -> RewardBatch:
        """`scored` with one more label per term: its value per completion (0 during the warm-up)."""
        if not self.terms:
            return scored
        n = torch.tensor(list(lengths))
        correct = torch.tensor(scored.correct, dtype=torch.bool)
        scores, weights = dict(scored.scores), dict(scored.weights)
        for t in self.terms:
            fn = GROUP_REWARDS.get(t.name)
            options = dict(t.options)
            if "max_length" in GROUP_REWARDS.option_names(t.name):
                options.setdefault("max_length", max_length)
            values = fn(n, correct, group_size, **options) if step > t.warmup_steps else torch.zeros(len(n))
            scores[t.label] = [Score(float(v), "scored") for v in values]
            weights[t.label] = t.weight
        return RewardBatch(scores, weights, scored.primary)


def group_rewards_for(config: Mapping[str, Mapping[str, Any] | None], where: str,
                      spec: RewardSpec | None = None) -> GroupRewards:
    """The group terms of a `verifiers` section, options checked (one `ConfigError` naming the key); they need
    verdicts, so `spec` (the section's verifiers) must have a primary verifier (math or code)."""
    terms = []
    for label, (name, raw) in _split(config)[1].items():
        if spec is not None and spec.primary is None:
            raise ConfigError(f"{where}.{label}: a length term needs correctness verdicts; add a math or code "
                              "verifier")
        options = dict(raw)
        options.pop("verifier", None)
        weight, warmup = options.pop("weight", 1.0), options.pop("warmup_steps", 0)
        valid = GROUP_REWARDS.option_names(name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(f"{where}.{label}: unknown option '{unknown[0]}'; valid options: "
                              f"{', '.join(['weight', 'warmup_steps', *valid])}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ConfigError(f"{where}.{label}.weight must be a number, got {weight!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ConfigError(f"{where}.{label}.warmup_steps must be an integer >= 0, got {warmup!r}")
        terms.append(GroupTerm(label, name, float(weight), warmup, options))
    return GroupRewards(terms)


def _split(config: Mapping[str, Mapping[str, Any] | None]) -> tuple[dict[str, Any], dict[str, tuple[str, dict]]]:
    """(the verifier entries, label -> (group-term name, its raw options))."""
    plain: dict[str, Any] = {}
    terms: dict[str, tuple[str, dict]] = {}
    for label, raw in (config or {}).items():
        kind = (raw or {}).get("verifier", label)
        if kind in GROUP_REWARDS:
            terms[label] = (kind, dict(raw or {}))
        else:
            plain[label] = raw
    return plain, terms
