"""Reward models: the Bradley-Terry loss (hand-computed, TRL's formula), preference data, `reasoner rm` on a
tiny model, and the `reward_model` reward inside a reward spec."""
from __future__ import annotations

import json

import pytest
import torch
from torch.testing import assert_close

from reasoner.algorithms.bradley_terry import bradley_terry_loss
from reasoner.config import load_config
from reasoner.data.datasets import DataConfig, DatasetError
from reasoner.data.tasks import arithmetic_preferences
from reasoner.data.templates import PromptConfig
from reasoner.rm import RMConfig, train_rm
from reasoner.rm.data import encode, load_preference_rows, pair_examples
from reasoner.training.rewards import reward_spec_for
from reasoner_verifiers import get_verifier


def trl_reward_loss(rewards_chosen, rewards_rejected, margin=None, center_rewards_coefficient=None):
    """TRL `RewardTrainer.compute_loss` (trl/trainer/reward_trainer.py, v1.16.0), transcribed."""
    if margin is not None:
        loss = -torch.nn.functional.logsigmoid(rewards_chosen - rewards_rejected - margin).mean()
    else:
        loss = -torch.nn.functional.logsigmoid(rewards_chosen - rewards_rejected).mean()
    if center_rewards_coefficient is not None:
        loss += center_rewards_coefficient * torch.mean((rewards_chosen + rewards_rejected) ** 2)
    return loss


def test_bradley_terry_hand_computed():
    # gaps [2, 0, -1]: -log sigma(2) = 0.126928, -log sigma(0) = 0.693147, -log sigma(-1) = 1.313262
    chosen, rejected = torch.tensor([2.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 1.0])
    loss, stats = bradley_terry_loss(chosen, rejected)
    assert_close(loss, torch.tensor((0.126928 + 0.693147 + 1.313262) / 3), atol=1e-6, rtol=0)
    assert float(stats.accuracy) == pytest.approx(1 / 3) and float(stats.margin) == pytest.approx(1 / 3)
    # margin 1 on the first pair: -log sigma(1) = 0.313262; centering 0.1 * mean((c + r)^2) = 0.1 * (4 + 4 + 1) / 3
    loss, _ = bradley_terry_loss(chosen, rejected, margin=torch.tensor([1.0, 0.0, 0.0]), center_coef=0.1)
    assert_close(loss, torch.tensor((0.313262 + 0.693147 + 1.313262) / 3 + 0.3), atol=1e-6, rtol=0)
    # weight-0 pairs count nowhere
    loss, stats = bradley_terry_loss(chosen, rejected, weights=torch.tensor([1.0, 0.0, 0.0]))
    assert_close(loss, torch.tensor(0.126928), atol=1e-6, rtol=0) and float(stats.accuracy) == 1.0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("with_margin,center", [(False, None), (True, None), (True, 0.01), (False, 0.5)])
def test_bradley_terry_matches_trl(seed, with_margin, center):
    g = torch.Generator().manual_seed(seed)
    c, r = (torch.randn(13, generator=g, dtype=torch.float64) * 3 for _ in range(2))
    margin = torch.rand(13, generator=g, dtype=torch.float64) if with_margin else None
    ref = trl_reward_loss(c, r, margin, center)
    loss, _ = bradley_terry_loss(c, r, margin=margin, center_coef=center or 0.0)
    assert_close(loss, ref, atol=1e-6, rtol=0)
    # split in two with the whole batch's pair count: the parts sum to the batch loss
    halves = [bradley_terry_loss(c[s], r[s], margin=None if margin is None else margin[s], center_coef=center or 0.0,
                                 num_pairs=13)[0] for s in (slice(0, 6), slice(6, None))]
    assert_close(sum(halves), ref, atol=1e-9, rtol=0)


def test_arithmetic_preferences_prefer_the_correct_answer():
    math = get_verifier("math")
    rows = arithmetic_preferences(120, split="test")
    assert {r["kind"] for r in rows} == {"slip", "bare", "mistyped"}
    chosen = math.score_batch([r["chosen"] for r in rows], rows)
    rejected = math.score_batch([r["rejected"] for r in rows], rows)
    assert all(s.correct for s in chosen) and not any(s.correct for s in rejected)
    assert all("-" not in r["rejected"] for r in rows)
    math.close()


def test_preference_rows_plain_and_chat(tokenizer, tmp_path):
    rows = [{"prompt": "What is 1 + 2?", "chosen": "<answer>3</answer>", "rejected": "<answer>4</answer>"},
            {"prompt": [{"role": "user", "content": "What is 2 + 2?"}],
             "chosen": [{"role": "assistant", "content": "<answer>4</answer>"}],
             "rejected": [{"role": "assistant", "content": "<answer>5</answer>"}]}]
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_preference_rows(DataConfig(source=str(path), prompt_field="prompt"))
    pairs = pair_examples(tokenizer, loaded, prompt=PromptConfig(), max_length=256)
    for p in pairs:  # both sides share the prompt tokens and their ending (EOS, or the chat turn's end)
        common = next(i for i, (a, b) in enumerate(zip(p.chosen, p.rejected)) if a != b)
        assert common > 5 and p.chosen[-2:] == p.rejected[-2:]
    assert pairs[0].chosen[-1] == tokenizer.eos_token_id
    text_ids, _ = encode(tokenizer, loaded[0], "<answer>3</answer>", PromptConfig(), 256)
    assert text_ids == pairs[0].chosen
    path.write_text(json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
    with pytest.raises(DatasetError, match="needs 'rejected'"):
        load_preference_rows(DataConfig(source=str(path), prompt_field="prompt"))


def rm_config(model_dir, out_dir, **overrides) -> RMConfig:
    base = [f"model.path={model_dir}", f"out_dir={out_dir}", "data.num_examples=600",
            "data.task_options={kinds: [bare]}", "eval_data={source: arithmetic_preferences, split: test, "
            "num_examples: 64, task_options: {kinds: [bare]}}", "batch_size=16", "max_steps=40",
            "optim.lr=3e-3", "optim.warmup_steps=0", "progress=false", "eval_every=20"]
    return load_config(RMConfig, None, base + [f"{k}={v}" for k, v in overrides.items()])


def test_rm_learns_a_held_out_preference_and_saves_a_from_pretrained_scorer(tiny_model_dir, tmp_path):
    result = train_rm(rm_config(tiny_model_dir, tmp_path / "rm"))
    assert result.eval_accuracy >= 0.9 and set(result.eval_by_group) == {"bare"}
    records = [json.loads(line) for line in (tmp_path / "rm" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/accuracy" in r for r in records[:-1]) and records[-1]["eval/accuracy"] == result.eval_accuracy
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained(str(result.final_model))
    assert model.config.num_labels == 1
    info = json.loads((result.final_model / "reward_model.json").read_text())
    assert info["eval_accuracy"] == result.eval_accuracy and info["prompt"]["template"] == "chat"

    # the reward: registered by the reasoner side, composed with math, batched, logged per verifier
    spec = reward_spec_for({"reward_model": {"path": str(result.final_model), "batch_size": 3},
                            "math": {"weight": 0.0}}, "reward.verifiers")
    rows = arithmetic_preferences(8, split="test", kinds=["bare"])
    batch = spec.score_batch([r["chosen"] for r in rows] + [r["rejected"] for r in rows], rows + rows)
    scores = [s.value for s in batch.scores["reward_model"]]
    assert batch.totals == scores and set(batch.means()) == {"reward_model", "math", "total"}
    assert sum(c > r for c, r in zip(scores[:8], scores[8:])) >= 7
    assert batch.correct == [True] * 8 + [False] * 8   # pass@1 still comes from the math grader
    single = spec.verifiers["reward_model"].score(rows[0]["chosen"], rows[0])
    assert single.value == pytest.approx(scores[0], abs=1e-5)
    spec.close()


def test_reward_model_options_are_checked():
    from reasoner.config import ConfigError
    with pytest.raises(ConfigError, match="'path'"):
        reward_spec_for({"reward_model": {}}, "reward.verifiers")
    with pytest.raises(ConfigError, match="transform"):
        reward_spec_for({"reward_model": {"path": "x", "transform": "exp"}}, "reward.verifiers")
