"""Prompt scheduling (`data.sampling`): prioritized and curriculum draws, exact resume; the length terms of
`reward.verifiers` in the RL loop; both in tiny GRPO runs (resume after a stop and after kill -9 = straight)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from test_grpo_trainer import _comparable, kill_9_then_resume

from reasoner.config import ConfigError, load_config
from reasoner.training import TrainConfig, train
from reasoner.training.rewards import group_rewards_for, reward_spec_for
from reasoner.training.sampler import PromptSamplingConfig, make_sampler
from reasoner_verifiers import RewardBatch, Score

REPO = Path(__file__).resolve().parents[2]


def test_prioritized_draws_in_proportion_to_failure():
    s = make_sampler(PromptSamplingConfig(name="prioritized", epsilon=0.05), [{}] * 4, seed=0, total_steps=10)
    # prompt 0 always solved, 1 half, 2 never, 3 unseen (p = 0)
    s.observe([0, 1, 2], [True] * 4 + [True, True, False, False] + [False] * 4, 4)
    assert torch.allclose(s.weights(), torch.tensor([0.05, 0.55, 1.05, 1.05], dtype=torch.float64))
    counts: Counter = Counter()
    for _ in range(4000):
        counts.update(s.next_batch(1))
    share = torch.tensor([counts[i] for i in range(4)], dtype=torch.float64) / 4000
    assert torch.allclose(share, s.weights() / s.weights().sum(), atol=0.03)
    batch = s.next_batch(4)
    assert sorted(batch) == [0, 1, 2, 3]            # without replacement within a batch


def test_curriculum_opens_up_easiest_first():
    examples = [{"id": str(i), "difficulty": d} for i, d in enumerate([5, 1, 3, 2, 4, 6, 1, 2])]
    s = make_sampler(PromptSamplingConfig(name="curriculum", start_fraction=0.25, full_at=0.5), examples, seed=0,
                     total_steps=9)
    # f(t) = 0.25 + 0.75 (t - 1) / (0.5 * 9 - 1): 0.25, 0.464, 0.679, 0.893, 1 -> ceil(8 f) = 2, 4, 6, 8, 8
    assert [s.available(t) for t in (1, 2, 3, 4, 5, 9)] == [2, 4, 6, 8, 8, 8]
    first = set(s.next_batch(2))
    assert first == {1, 6}                          # the two of difficulty 1
    assert set(s.next_batch(4)) == {1, 6, 3, 7}     # step 2: difficulty <= 2
    measured = make_sampler(PromptSamplingConfig(name="curriculum", difficulty_field="", start_fraction=0.5),
                            examples, seed=0, total_steps=100)
    measured.observe([2, 5], [True, True, False, False], 2)  # 2 solved, 5 failed; the rest unseen (0.5)
    assert int(measured.order()[0]) == 2 and int(measured.order()[-1]) == 5
    with pytest.raises(ConfigError, match="example '0' has no numeric 'level'"):
        make_sampler(PromptSamplingConfig(name="curriculum", difficulty_field="level"), examples, 0, total_steps=9)


@pytest.mark.parametrize("name", ["prioritized", "curriculum"])
def test_state_round_trip_through_json_continues_exactly(name):
    examples = [{"difficulty": i % 3} for i in range(20)]
    cfg = PromptSamplingConfig(name=name)

    def run(sampler, steps):
        out = []
        for _ in range(steps):
            batch = sampler.next_batch(5)
            sampler.observe(batch, [(i + len(out)) % 3 == 0 for i in range(10)], 2)
            out.append(batch)
        return out

    straight = run(make_sampler(cfg, examples, 7, total_steps=8), 8)
    first = make_sampler(cfg, examples, 7, total_steps=8)
    head = run(first, 3)
    second = make_sampler(cfg, examples, 7, total_steps=8)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))   # as state.json stores it
    assert head + run(second, 5) == straight
    with pytest.raises(ValueError, match="does not fit data.sampling"):
        make_sampler(cfg, examples[:5], 7, total_steps=8).load_state_dict(first.state_dict())


def test_group_terms_compose_with_the_verifiers():
    config = {"math": {"weight": 1.0}, "short": {"verifier": "length_penalty", "weight": 0.5, "warmup_steps": 2}}
    spec = reward_spec_for(config, "reward.verifiers", group_terms=True)
    assert list(spec.verifiers) == ["math"]
    terms = group_rewards_for(config, "reward.verifiers", spec)
    scored = RewardBatch({"math": [Score(1.0, "correct"), Score(0.0, "wrong"), Score(1.0, "correct"),
                                   Score(1.0, "correct")]}, {"math": 1.0}, "math")
    warm = terms.apply(scored, [10, 30, 20, 20], 2, step=2, max_length=64)
    assert warm.totals == [1.0, 0.0, 1.0, 1.0]       # still in the warm-up
    out = terms.apply(scored, [10, 30, 20, 20], 2, step=3, max_length=64)
    # group (10 correct, 30 wrong): lambda 0.5, -0.5; group (20, 20): equal lengths -> 0
    assert out.totals == [1.25, -0.25, 1.0, 1.0] and out.means()["short"] == 0.0
    assert out.correct == scored.correct
    with pytest.raises(ConfigError, match="reward.verifiers.cos: unknown option 'max_len'; valid options: weight"):
        group_rewards_for({"math": {}, "cos": {"verifier": "cosine_length", "max_len": 9}}, "reward.verifiers")
    with pytest.raises(ConfigError, match="verifiers.length_penalty: a group reward term needs the RL loop"):
        reward_spec_for({"math": {}, "length_penalty": {}}, "verifiers")
    with pytest.raises(ConfigError, match="needs correctness verdicts"):
        group_rewards_for({"format": {}, "length_penalty": {}}, "reward.verifiers",
                          reward_spec_for({"format": {}}, "reward.verifiers"))


def small_config(model_dir, out_dir, **overrides) -> TrainConfig:
    base = [f"model.path={model_dir}", f"out_dir={out_dir}", "data.source=arithmetic", "data.num_examples=12",
            "data.sampling=prioritized", "sampling.n=4", "sampling.max_new_tokens=16", "prompts_per_step=4",
            "steps=2", "optim.lr=1e-3", "log.report_to=[]", "log.progress=false", "log.plots=false",
            "reward.verifiers={math: {weight: 1.0}, length_penalty: {weight: 0.5}, "
            "cosine_length: {weight: 0.1, max_length: 32}}"]
    return load_config(TrainConfig, None, base + [f"{k}={v}" for k, v in overrides.items()])


def test_grpo_with_prioritized_sampling_and_length_terms_resumes_exactly(tiny_model_dir, tmp_path):
    straight = train(small_config(tiny_model_dir, tmp_path / "a", steps=4, save_every=2)).metrics
    assert {"reward/length_penalty/mean", "reward/cosine_length/mean", "sampler/seen_prompts"} <= set(straight[0])
    seen = [r["sampler/seen_prompts"] for r in straight]
    assert seen == sorted(seen) and 4 <= seen[0] and seen[-1] <= 12
    train(small_config(tiny_model_dir, tmp_path / "b", steps=2, save_every=2))
    resumed = train(small_config(tiny_model_dir, tmp_path / "b", steps=4, save_every=2)).metrics
    assert _comparable(resumed) == _comparable(straight)


@pytest.mark.slow
def test_kill_9_then_resume_matches_a_straight_run_with_prioritized_sampling(tiny_model_dir, tmp_path):
    steps = 6
    cfg_b = small_config(tiny_model_dir, tmp_path / "b", steps=steps, save_every=1, threads=2)
    resumed = kill_9_then_resume(cfg_b, tmp_path / "b.yaml", timeout_s=300)
    straight = train(small_config(tiny_model_dir, tmp_path / "a", steps=steps, save_every=1, threads=2)).metrics
    assert _comparable(resumed) == _comparable(straight)
