"""End to end with a small budget, learning checked: GRPO raises a simple verifiable reward on a tiny model."""
from __future__ import annotations

from statistics import fmean

import pytest

from tests.reasoner.test_grpo_trainer import small_config


@pytest.mark.slow
def test_grpo_raises_the_reward_of_a_tiny_model(tiny_model_dir, tmp_path, dense_reward):
    from reasoner.training import train

    cfg = small_config(tiny_model_dir, tmp_path / "run", steps=14, prompts_per_step=8, **{
        "sampling.n": 8, "sampling.max_new_tokens": 12, "optim.lr": 1e-2, "threads": 2,
        "reward.verifiers": "{digits: {verifier: digit_fraction, weight: 1.0}}"})
    records = train(cfg).metrics
    first = fmean(r["reward/digits/mean"] for r in records[:3])
    last = fmean(r["reward/digits/mean"] for r in records[-3:])
    assert last > first + 0.15, (first, last)
