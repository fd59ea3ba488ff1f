"""End to end with a small budget, learning checked: GRPO raises a simple verifiable reward on a tiny model."""
from __future__ import annotations

from statistics import fmean

import pytest

from verifiers import Score, registry
from verifiers.types import Verifier

from tests.reasoner.test_grpo_trainer import small_config


class DigitFraction(Verifier):
    """Reward = the fraction of characters of the completion that are digits: dense, and rare at the start."""

    name = "digit_fraction"

    def score(self, completion, example):
        value = sum(ch.isdigit() for ch in completion) / max(len(completion), 1)
        return Score(value=value, status="scored", details={})


@pytest.mark.slow
def test_grpo_raises_the_reward_of_a_tiny_model(tiny_model_dir, tmp_path, monkeypatch):
    from reasoner.training import train

    registry.available()  # load the built-ins, then add ours for this test only
    monkeypatch.setitem(registry._FACTORIES, "digit_fraction", lambda options: DigitFraction())

    cfg = small_config(tiny_model_dir, tmp_path / "run", steps=14, prompts_per_step=8, **{
        "rollout.group_size": 8, "rollout.max_new_tokens": 12, "optim.lr": 3e-3, "threads": 2,
        "reward.verifiers": "{digits: {verifier: digit_fraction, weight: 1.0}}"})
    records = train(cfg).metrics
    first, last = fmean(r["reward/mean"] for r in records[:3]), fmean(r["reward/mean"] for r in records[-3:])
    assert last > first + 0.15, (first, last)
