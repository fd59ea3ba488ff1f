"""PPO with a critic on a tiny model: the value forward, the critic's update, the actor-critic loop, exact resume."""
from __future__ import annotations

import pytest
import torch
from test_grpo_trainer import _comparable, kill_9_then_resume, sample_rollouts, small_config

from reasoner.config import ConfigError, load_config
from reasoner.models import ModelConfig, load_model
from reasoner.models.value import load_value_model, token_values
from reasoner.training import AlgorithmConfig, TrainConfig, train
from reasoner.training.backend import SingleProcess
from reasoner.training.batch import collate
from reasoner.training.config import CriticConfig, OptimConfig
from reasoner.training.critic import Critic, ValueScorer, score_values, update_critic

PPO = {"algorithm.advantage": "gae", "sampling.n": 1, "prompts_per_step": 8, "critic.optim.lr": 1e-3}


def _critic(model_dir, lr=1e-3) -> Critic:
    model = load_value_model(ModelConfig(path=str(model_dir)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    backend = SingleProcess()
    backend.prepare(model, optimizer, scheduler, scorer=ValueScorer(model))
    return Critic(backend=backend, cfg=CriticConfig(optim=OptimConfig(lr=lr, micro_batch_size=3)))


def test_value_scorer_reads_the_head_at_the_positions_before_each_response_token(tiny_model_dir, tokenizer):
    policy = load_model(ModelConfig(path=str(tiny_model_dir)))
    rollouts = sample_rollouts(policy, tokenizer, num_prompts=2, n=2, max_new_tokens=6)
    batch = collate(rollouts, torch.zeros(rollouts.size), tokenizer.pad_token_id)
    critic = _critic(tiny_model_dir)
    values = score_values(critic, batch, chunk_size=3)
    assert values.shape == batch.response_mask.shape
    full = token_values(critic.backend.module, batch.input_ids, batch.attention_mask, batch.position_ids)
    t = batch.response_width
    for i in range(batch.size):  # V(s_t) is the head at the position that predicts token t
        n = int(batch.response_mask[i].sum())
        assert torch.allclose(values[i, :n], full[i, -(t + 1):-1][:n], atol=1e-5)
        assert torch.equal(values[i, n:], torch.zeros(t - n))
    # the body is the policy's: the value model's hidden states are the causal LM's
    hidden = policy.get_decoder()(input_ids=batch.input_ids[:1], attention_mask=batch.attention_mask[:1],
                                  position_ids=batch.position_ids[:1]).last_hidden_state
    head = critic.backend.module.score
    assert torch.allclose(head(hidden)[..., 0], full[:1], atol=1e-5)


def test_update_critic_fits_the_returns_and_reports_its_metrics(tiny_model_dir, tokenizer):
    policy = load_model(ModelConfig(path=str(tiny_model_dir)))
    rollouts = sample_rollouts(policy, tokenizer, num_prompts=3, n=2, max_new_tokens=8)
    batch = collate(rollouts, torch.zeros(rollouts.size), tokenizer.pad_token_id)
    critic = _critic(tiny_model_dir, lr=3e-3)
    before = [p.detach().clone() for p in critic.backend.module.parameters()]
    batch.values = score_values(critic, batch)
    batch.returns = torch.linspace(-1, 1, batch.size)[:, None].expand_as(batch.response_mask) * batch.response_mask
    algo = AlgorithmConfig(ppo_epochs=1, minibatches=1)
    critic.cfg.cliprange_value = None
    losses = [update_critic(critic, batch, algo, norm_length=8, generator=torch.Generator().manual_seed(0))
              ["critic/value_loss"] for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]
    assert any(not torch.equal(a, b) for a, b in zip(before, critic.backend.module.parameters()))
    critic.cfg.cliprange_value = 1e-4  # a tight clip around stale values: most tokens take the clipped branch
    metrics = update_critic(critic, batch, AlgorithmConfig(ppo_epochs=2, minibatches=2), norm_length=8,
                            generator=torch.Generator().manual_seed(0))
    assert metrics["critic/vf_clipfrac"] > 0.5
    assert set(metrics) >= {"critic/value_loss", "critic/vf_clipfrac", "critic/grad_norm", "critic/lr"}


def test_ppo_trains_policy_and_critic_with_one_sample_per_prompt(tiny_model_dir, tmp_path, dense_reward):
    cfg = small_config(tiny_model_dir, tmp_path / "run", steps=3, save_every=0, **PPO,
                       **{"reward.verifiers": dense_reward, "critic.warmup_steps": 1})
    result = train(cfg)
    first, *rest = result.metrics
    assert "optimizer_steps" not in first and first["critic/value_loss"] > 0  # warm-up: only the critic trains
    assert all(r["optimizer_steps"] == 1 for r in rest)
    for key in ("critic/value_loss", "critic/explained_variance", "critic/vf_clipfrac", "critic/values_mean",
                "critic/returns_mean", "critic/grad_norm"):
        assert all(key in r for r in result.metrics), key
    initial = load_value_model(ModelConfig(path=str(tiny_model_dir)))
    trained = load_value_model(ModelConfig(path=str(tmp_path / "run" / "critic")))
    moved = [not torch.equal(a, b) for (name, a), b in zip(initial.named_parameters(), trained.parameters())
             if not name.startswith("score")]
    assert all(moved)  # every body parameter of the critic trained (the head starts at random anyway)


def test_critic_warm_up_leaves_the_policy_where_it_started(tiny_model_dir, tmp_path, dense_reward):
    cfg = small_config(tiny_model_dir, tmp_path / "run", steps=2, save_every=0, **PPO,
                       **{"reward.verifiers": dense_reward, "critic.warmup_steps": 2})
    train(cfg)
    a = load_model(ModelConfig(path=str(tiny_model_dir)))
    b = load_model(ModelConfig(path=str(tmp_path / "run" / "model")))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_reinforce_pp_and_kl_in_the_token_rewards_run(tiny_model_dir, tmp_path, dense_reward):
    cfg = small_config(tiny_model_dir, tmp_path / "run", steps=1, **{
        "algorithm.advantage": "reinforce_pp", "algorithm.kl_beta": 0.1, "algorithm.kl_in_reward": "true",
        "algorithm.kl_estimator": "k1", "algorithm.gamma": 0.99, "reward.verifiers": dense_reward})
    (record,) = train(cfg).metrics
    assert record["optimizer_steps"] == 1 and "critic/value_loss" not in record
    assert not (tmp_path / "run" / "critic").exists()


def test_critic_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="critic.loss_agg"):
        load_config(TrainConfig, None, ["critic.loss_agg=nope"])
    with pytest.raises(ConfigError, match="critic.cliprange_value"):
        load_config(TrainConfig, None, ["critic.cliprange_value=-1"])
    with pytest.raises(ConfigError, match="algorithm.lam"):
        load_config(TrainConfig, None, ["algorithm.lam=1.5"])


def _weights(path) -> list[torch.Tensor]:
    from safetensors.torch import load_file
    return list(load_file(str(path / "model.safetensors")).values())


def test_resume_restores_the_critic_and_its_optimizer_exactly(tiny_model_dir, tmp_path, dense_reward):
    extra = {**PPO, "reward.verifiers": dense_reward, "algorithm.ppo_epochs": 2, "critic.warmup_steps": 1}
    straight = train(small_config(tiny_model_dir, tmp_path / "a", steps=4, save_every=2, **extra)).metrics
    train(small_config(tiny_model_dir, tmp_path / "b", steps=2, save_every=2, **extra))
    resumed = train(small_config(tiny_model_dir, tmp_path / "b", steps=4, save_every=2, **extra)).metrics
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert _comparable(resumed) == _comparable(straight)
    for name in ("model", "critic"):
        assert all(torch.equal(p, q) for p, q in zip(_weights(tmp_path / "a" / name), _weights(tmp_path / "b" / name)))


@pytest.mark.slow
def test_kill_9_mid_ppo_run_then_resume_matches_a_straight_run(tiny_model_dir, tmp_path, dense_reward):
    steps = 6
    extra = {**PPO, "algorithm.ppo_epochs": 2, "threads": 2, "save_every": 1,
             "reward.verifiers": "{math: {weight: 1.0}, format: {weight: 0.1}}"}
    resumed = kill_9_then_resume(small_config(tiny_model_dir, tmp_path / "b", steps=steps, **extra),
                                 tmp_path / "b.yaml", timeout_s=180)
    straight = train(small_config(tiny_model_dir, tmp_path / "a", steps=steps, **extra)).metrics
    assert _comparable(resumed) == _comparable(straight)
    for name in ("model", "critic"):
        assert all(torch.equal(p, q) for p, q in zip(_weights(tmp_path / "a" / name), _weights(tmp_path / "b" / name)))
