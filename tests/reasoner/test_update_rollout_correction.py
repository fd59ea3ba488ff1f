"""Rollout correction and the newer losses inside the update and the GRPO loop (tiny model, CPU)."""
from __future__ import annotations

import copy

import pytest
import torch

from reasoner.algorithms import policy_loss, rollout_correction
from reasoner.config import load_config
from reasoner.models import ModelConfig, load_model
from reasoner.training import AlgorithmConfig, TrainConfig, train
from reasoner.training.backend import SingleProcess
from reasoner.training.config import OptimConfig
from reasoner.training.logprobs import as_scorer, score_logprobs
from reasoner.training.update import update_policy
from tests.reasoner._batch_helpers import ragged_batch


def _batch(model, seed: int = 0):
    """Groups of 3 with ragged responses; engine log-probs = the trainer's plus noise, some tokens far off."""
    batch = ragged_batch(model.config.vocab_size, 3, [5, 3, 6, 4], [4, 7, 2, 6, 5, 3, 8, 1, 4, 6, 2, 5], seed=seed)
    gen = torch.Generator().manual_seed(seed)
    batch.advantages = torch.randn(batch.size, generator=gen)
    batch.old_logprobs = score_logprobs(model, batch)
    batch.engine_logprobs = batch.old_logprobs + 0.5 * torch.randn(batch.old_logprobs.shape, generator=gen)
    return batch


def _update(model, batch, algo: AlgorithmConfig, optim: OptimConfig | None = None):
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return update_policy(SingleProcess.wrapping(model, optimizer, scheduler), batch, algo,
                         optim or OptimConfig(max_grad_norm=None), temperature=1.0, norm_length=8,
                         generator=torch.Generator().manual_seed(0))


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


RC = dict(rollout_is="sequence", rollout_is_max=3.0, rollout_rs="token", rollout_rs_max=2.0)


@pytest.mark.parametrize("loss", ["ppo_clip", "gspo", "cispo", "sapo", "gmpo"])
def test_update_applies_the_weights_and_the_rejection_as_the_pure_functions_say(tiny_model_dir, loss):
    base = load_model(ModelConfig(path=str(tiny_model_dir)))
    batch = _batch(base)
    corr = rollout_correction(batch.old_logprobs, batch.engine_logprobs, batch.response_mask, is_level="sequence",
                              is_max=3.0, rs_level="token", rs_max=2.0)
    real = batch.response_mask != 0
    assert (real & ~corr.keep).any() and (real & corr.keep).any()  # something rejected, something kept

    model = copy.deepcopy(base)
    before = _params(model)
    stats = _update(model, batch, AlgorithmConfig(policy_loss=loss, **RC))
    # by hand: one SGD step (lr 1) on the loss with the weights, over the kept tokens only
    manual = copy.deepcopy(base)
    logprobs, _ = as_scorer(manual)(batch, 1.0, False)
    mask = batch.response_mask * corr.keep
    loss_value, _ = policy_loss(logprobs, batch.old_logprobs, batch.advantages, mask, name=loss,
                                is_weights=corr.weights, norm_length=8)
    loss_value.backward()
    for b, after, m in zip(before, model.parameters(), manual.parameters()):
        expected = b - m.grad if m.grad is not None else b
        torch.testing.assert_close(after.detach(), expected, atol=1e-6, rtol=1e-5)
    assert stats["rollout_corr/rejected_token_fraction"] == pytest.approx(
        float((real & ~corr.keep).sum() / real.sum()))
    assert 0 < stats["rollout_corr/weight_mean"] and stats["rollout_corr/weight_max"] <= 3.0


def test_micro_batches_and_minibatches_keep_the_correction_exact(tiny_model_dir):
    """Weights and rejection ride along the rows: micro-batching (a sum) gives the same update as none."""
    base = load_model(ModelConfig(path=str(tiny_model_dir)))
    batch = _batch(base, seed=1)
    algo = AlgorithmConfig(policy_loss="cispo", minibatches=2, ppo_epochs=2, **RC)
    whole, parts = copy.deepcopy(base), copy.deepcopy(base)
    a = _update(whole, batch, algo, OptimConfig(max_grad_norm=None))
    b = _update(parts, batch, algo, OptimConfig(max_grad_norm=None, micro_batch_size=2))
    for x, y in zip(whole.parameters(), parts.parameters()):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)
    assert a["rollout_corr/rejected_token_fraction"] == b["rollout_corr/rejected_token_fraction"]


def test_off_by_default_adds_nothing(tiny_model_dir):
    base = load_model(ModelConfig(path=str(tiny_model_dir)))
    stats = _update(copy.deepcopy(base), _batch(base), AlgorithmConfig())
    assert not any(key.startswith("rollout_corr/") for key in stats)


def test_tis_cap_is_token_level_truncation(tiny_model_dir):
    base = load_model(ModelConfig(path=str(tiny_model_dir)))
    batch = _batch(base, seed=2)
    one, two = copy.deepcopy(base), copy.deepcopy(base)
    s1 = _update(one, batch, AlgorithmConfig(tis_cap=1.5))
    s2 = _update(two, batch, AlgorithmConfig(rollout_is="token", rollout_is_max=1.5))
    assert s1 == s2
    for x, y in zip(one.parameters(), two.parameters()):
        assert torch.equal(x, y)


def _config(model_dir, out_dir, reward: str, **overrides) -> TrainConfig:
    base = [f"model.path={model_dir}", f"out_dir={out_dir}", "data.source=arithmetic", "data.num_examples=32",
            "sampling.n=4", "sampling.max_new_tokens=12", "prompts_per_step=3", "steps=1", "optim.lr=1e-3",
            "log.report_to=[]", "log.progress=false", "log.plots=false", "log.sample_every=0",
            f"reward.verifiers={reward}"]
    return load_config(TrainConfig, None, base + [f"{k}={v}" for k, v in overrides.items()])


@pytest.mark.parametrize("overrides", [
    {"algorithm.policy_loss": "gspo", "algorithm.clip_low": 3e-4, "algorithm.clip_high": 4e-4,
     "algorithm.minibatches": 2},
    {"algorithm.policy_loss": "gspo_token", "algorithm.loss_agg": "seq-mean-token-mean"},
    {"algorithm.policy_loss": "cispo", "algorithm.clip_low": 1.0, "algorithm.clip_high": 4.0,
     "algorithm.rollout_is": "token", "algorithm.rollout_is_mode": "mask", "algorithm.rollout_is_max": 3.0},
    {"algorithm.policy_loss": "gmpo", "algorithm.clip_low": 0.4, "algorithm.clip_high": 0.4,
     "algorithm.rollout_rs": "geometric", "algorithm.rollout_rs_max": 2.0},
    {"algorithm.policy_loss": "sapo", "algorithm.ppo_epochs": 2, "algorithm.rollout_is": "sequence"},
])
def test_each_loss_and_correction_trains_a_step_and_logs(tiny_model_dir, tmp_path, dense_reward, overrides):
    records = train(_config(tiny_model_dir, tmp_path / "run", dense_reward, **overrides)).metrics
    assert len(records) == 1 and records[0]["grad_norm"] > 0
    corrected = any(key.startswith("algorithm.rollout") for key in overrides)
    assert any(key.startswith("rollout_corr/") for key in records[0]) == corrected
    if corrected:
        assert records[0]["rollout_corr/log_ratio_abs_max"] >= 0
