"""The GRPO trainer on a tiny model: updates move the policy, every algorithm option runs, resume is exact."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reasoner.algorithms import policy_loss
from reasoner.config import load_config, save_config
from reasoner.data import build_prompts
from reasoner.data.tasks import arithmetic
from reasoner.metrics.logger import read_metrics
from reasoner.models import ModelConfig, load_model
from reasoner.rollout import SamplingParams
from reasoner.rollout.hf_engine import HFEngine
from reasoner.training import AlgorithmConfig, TrainConfig, train
from reasoner.training.backend import SingleProcess
from reasoner.training.batch import Rollouts, collate
from reasoner.training.config import OptimConfig
from reasoner.training.logprobs import score_logprobs
from reasoner.training.update import update_policy

REPO = Path(__file__).resolve().parents[2]


def small_config(model_dir, out_dir, **overrides) -> TrainConfig:
    base = [f"model.path={model_dir}", f"out_dir={out_dir}", "data.source=arithmetic", "data.num_examples=64",
            "sampling.n=4", "sampling.max_new_tokens=16", "prompts_per_step=4", "steps=2",
            "optim.lr=1e-3", "log.report_to=[]", "log.progress=false", "log.plots=false",
            "log.sample_every=1", "reward.verifiers={math: {weight: 1.0}, format: {weight: 0.1}}"]
    return load_config(TrainConfig, None, base + [f"{k}={v}" for k, v in overrides.items()])


def sample_rollouts(model, tokenizer, num_prompts: int, n: int, max_new_tokens: int) -> Rollouts:
    """`n` sampled completions for each of the first `num_prompts` training problems."""
    prompts = build_prompts(tokenizer, arithmetic(num_prompts, split="train"))
    groups = HFEngine(model, tokenizer).generate([p.token_ids for p in prompts],
                                                 SamplingParams(n=n, max_new_tokens=max_new_tokens))
    return Rollouts.from_groups([p.token_ids for p in prompts], groups, [p.example for p in prompts], tokenizer)


def test_update_changes_parameters_and_lowers_the_surrogate_loss_on_a_fixed_batch(tiny_model_dir, tokenizer):
    torch.manual_seed(0)
    model = load_model(ModelConfig(path=str(tiny_model_dir)))
    rollouts = sample_rollouts(model, tokenizer, 4, n=4, max_new_tokens=12)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5] * 4)
    batch = collate(rollouts, advantages, tokenizer.pad_token_id)
    batch.old_logprobs = score_logprobs(model, batch)  # fixed: the surrogate can only improve against them

    def surrogate() -> float:
        return float(policy_loss(score_logprobs(model, batch), batch.old_logprobs, batch.advantages,
                                 batch.response_mask)[0])

    before_params = [p.detach().clone() for p in model.parameters()]
    loss_before = surrogate()
    algo = AlgorithmConfig(ppo_epochs=4, minibatches=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    stats = update_policy(SingleProcess.wrapping(model, optimizer, scheduler), batch, algo, OptimConfig(micro_batch_size=3),
                          temperature=1.0, norm_length=12, generator=torch.Generator().manual_seed(0))
    assert stats["optimizer_steps"] == 8 and stats["grad_norm"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before_params, model.parameters()))
    assert surrogate() < loss_before - 1e-3


def test_train_end_to_end_writes_metrics_checkpoints_model_and_report(tiny_model_dir, tmp_path, dense_reward):
    cfg = small_config(tiny_model_dir, tmp_path / "run", **{"log.plots": "true", "log.report_to": "[tensorboard]",
                                                            "reward.verifiers": dense_reward})
    result = train(cfg)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["skipped_rows"] == 0.0  # the dense reward gives every group some variance
    for key in ("reward/mean", "reward/std", "reward/math/mean", "reward/digits/mean", "pass@1", "pass@G",
                "length/mean", "length/min", "length/max", "truncation_ratio", "zero_variance_groups", "entropy",
                "clip_frac_low", "clip_frac_high", "grad_norm", "tokens_per_s", "time/generate", "time/score",
                "time/update", "lr", "status/math/no_answer", "skipped_rows"):
        assert key in records[0], key
    assert 0.0 <= records[0]["pass@1"] <= records[0]["pass@G"] <= 1.0
    assert (tmp_path / "run" / "config.yaml").exists() and (tmp_path / "run" / "report.md").exists()
    assert "pass@1" in (result.final_model / "README.md").read_text()  # the model card
    assert {p.name for p in (tmp_path / "run" / "plots").iterdir()} == {"reward.png", "pass_at_k.png",
                                                                        "lengths.png"}
    assert list((tmp_path / "run" / "tensorboard").iterdir())
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert samples and {"completion", "reward", "correct", "status"} <= set(samples[0])
    assert load_model(ModelConfig(path=str(result.final_model)), trainable=False) is not None
    assert (tmp_path / "run" / "checkpoints" / "step-000002" / "optimizer.pt").exists()


@pytest.mark.parametrize("overrides", [
    {"algorithm.ppo_epochs": 2, "algorithm.minibatches": 2, "optim.micro_batch_size": 3},
    {"algorithm.kl_beta": 0.05, "algorithm.kl_estimator": "k3"},
    {"algorithm.kl_beta": 0.05, "algorithm.kl_in_reward": "true", "algorithm.kl_estimator": "k1"},
    {"algorithm.advantage": "dr_grpo", "algorithm.loss_agg": "seq-mean-token-sum-norm"},
    {"algorithm.advantage": "rloo", "algorithm.loss_agg": "seq-mean-token-mean", "algorithm.dual_clip": 3.0},
    {"algorithm.advantage": "reinforce_pp_baseline", "algorithm.clip_high": 0.28, "algorithm.tis_cap": 2.0},
    {"algorithm.filter_zero_variance": "true", "algorithm.mask_truncated": "true",
     "algorithm.overlong_buffer": 4, "algorithm.entropy_coef": 0.01},
])
def test_algorithm_options_run_and_log(tiny_model_dir, tmp_path, overrides):
    cfg = small_config(tiny_model_dir, tmp_path / "run", steps=1, **overrides)
    records = train(cfg).metrics
    assert len(records) == 1
    if cfg.algorithm.kl_beta > 0:
        assert records[0]["kl"] >= -1e-6  # k1 is signed; at step 1 the policy is the reference: KL ~ 0
    if not cfg.algorithm.filter_zero_variance:
        assert records[0]["optimizer_steps"] == cfg.algorithm.ppo_epochs * cfg.algorithm.minibatches


def _comparable(records: list[dict]) -> list[dict]:
    """Metrics without wall-clock timings (which legitimately differ between runs)."""
    return [{k: v for k, v in r.items() if not k.startswith("time/") and k != "tokens_per_s"} for r in records]


def test_resume_gives_the_same_metrics_as_a_straight_run(tiny_model_dir, tmp_path):
    straight = train(small_config(tiny_model_dir, tmp_path / "a", steps=4, save_every=2)).metrics
    train(small_config(tiny_model_dir, tmp_path / "b", steps=2, save_every=2))
    resumed = train(small_config(tiny_model_dir, tmp_path / "b", steps=4, save_every=2)).metrics
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert _comparable(resumed) == _comparable(straight)
    a = load_model(ModelConfig(path=str(tmp_path / "a" / "model")))
    b = load_model(ModelConfig(path=str(tmp_path / "b" / "model")))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("form", ["jsonl", "parquet", "save_to_disk", "save_to_disk_dict", "conversational"])
def test_every_data_form_trains_a_step(tiny_model_dir, tmp_path, form):
    import datasets

    rows = arithmetic(8, split="train")
    if form == "conversational":
        rows = [{"prompt": [{"role": "user", "content": r["problem"]}], "answer": r["answer"]} for r in rows]
    ds = datasets.Dataset.from_list(rows)
    source = tmp_path / "data"
    if form == "jsonl" or form == "conversational":
        source = source.with_suffix(".jsonl")
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif form == "parquet":
        source = source.with_suffix(".parquet")
        ds.to_parquet(str(source))
    elif form == "save_to_disk":
        ds.save_to_disk(str(source))
    else:
        datasets.DatasetDict({"train": ds}).save_to_disk(str(source))
    extra = {"data.prompt_field": "prompt"} if form == "conversational" else {}
    result = train(small_config(tiny_model_dir, tmp_path / "run", steps=1, **{"data.source": source, **extra}))
    assert result.steps == 1 and result.metrics[0]["length/mean"] > 0


class _Planted:
    """A pickle that would write `marker` when unpickled: what a tampered checkpoint could hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("planted", ["optimizer.pt", "scheduler.pt", "rng-0.pt"])
def test_a_pickled_payload_in_a_checkpoint_is_refused_and_never_runs(tiny_model_dir, tmp_path, planted):
    from reasoner.training.checkpoint import latest_checkpoint
    from reasoner.training.state_files import CheckpointError

    train(small_config(tiny_model_dir, tmp_path / "run", steps=1, save_every=1))
    marker = tmp_path / "payload-ran"
    torch.save({"state": _Planted(marker)}, latest_checkpoint(tmp_path / "run") / planted)
    with pytest.raises(CheckpointError, match=f"{planted}: not a plain state file, refusing to unpickle it"):
        train(small_config(tiny_model_dir, tmp_path / "run", steps=2, save_every=1))
    assert not marker.exists()


def kill_9_then_resume(cfg: TrainConfig, config_file: Path, *, at_step: int = 3, timeout_s: float = 120) -> list[dict]:
    """`reasoner train` in a subprocess, SIGKILLed once checkpoint `at_step` exists, then run again to the end;
    returns the resumed run's metrics (asserting that no step was lost or logged twice)."""
    save_config(cfg, config_file)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "reasoner", "train", "--config", str(config_file)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while not (Path(cfg.out_dir) / "checkpoints" / f"step-{at_step:06d}").exists():
        assert proc.poll() is None and time.time() < deadline, f"trainer exited or stalled before step {at_step}"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    resumed = read_metrics(Path(cfg.out_dir) / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, cfg.steps + 1))  # no step lost, none duplicated
    return resumed


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_matches_a_straight_run(tiny_model_dir, tmp_path):
    steps = 6
    cfg_b = small_config(tiny_model_dir, tmp_path / "b", steps=steps, save_every=1, **{"threads": 2})
    resumed = kill_9_then_resume(cfg_b, tmp_path / "b.yaml", timeout_s=120)
    straight = train(small_config(tiny_model_dir, tmp_path / "a", steps=steps, save_every=1, threads=2)).metrics
    assert _comparable(resumed) == _comparable(straight)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_finishes_the_step_saves_and_reports_then_resume_continues_exactly(tiny_model_dir, tmp_path, sig):
    steps = 5
    cfg_b = small_config(tiny_model_dir, tmp_path / "b", steps=steps, save_every=0, threads=2)
    save_config(cfg_b, tmp_path / "b.yaml")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "reasoner", "train", "--config", str(tmp_path / "b.yaml")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "b" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.time() < deadline, "trainer exited or stalled before step 1"
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = [line for line in err.strip().splitlines() if line.startswith("reasoner train:")]
    assert len(last) == 1 and f"{signal.Signals(sig).name} after step" in last[0] and "Traceback" not in err
    stopped_at = len(read_metrics(metrics))
    assert 1 <= stopped_at < steps
    assert (tmp_path / "b" / "checkpoints" / f"step-{stopped_at:06d}" / "state.json").exists()
    assert (tmp_path / "b" / "report.md").exists()
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    resumed = read_metrics(metrics)
    assert [r["step"] for r in resumed] == list(range(1, steps + 1))
    straight = train(small_config(tiny_model_dir, tmp_path / "a", steps=steps, save_every=0, threads=2)).metrics
    assert _comparable(resumed) == _comparable(straight)


def test_shared_prompt_forward_equals_the_plain_forward_in_values_and_gradients(tiny_model_dir, tokenizer):
    from reasoner.training.logprobs import forward_logprobs

    torch.manual_seed(0)
    model = load_model(ModelConfig(path=str(tiny_model_dir)))
    rollouts = sample_rollouts(model, tokenizer, 3, n=4, max_new_tokens=10)
    batch = collate(rollouts, torch.zeros(rollouts.size), tokenizer.pad_token_id)
    assert batch.group_size == 4

    def logprobs_and_grads(b):
        model.zero_grad()
        lp, ent = forward_logprobs(model, b, temperature=0.8)
        ((lp * b.response_mask).sum() + ent.sum() * 0).backward()
        return lp.detach() * b.response_mask, [p.grad.clone() for p in model.parameters()]

    shared_lp, shared_grads = logprobs_and_grads(batch)
    plain = batch.select(torch.tensor([0, 2, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11]))  # groups broken -> plain forward
    assert plain.group_size == 1
    plain_lp, plain_grads = logprobs_and_grads(batch.select(torch.arange(12)).__class__(
        **{**batch.__dict__, "group_size": 1}))
    torch.testing.assert_close(shared_lp, plain_lp, atol=1e-5, rtol=1e-5)
    for a, b in zip(shared_grads, plain_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert batch.select(torch.arange(4, 12)).group_size == 4  # whole groups keep the structure


def test_skipping_zero_advantage_groups_leaves_the_update_unchanged(tiny_model_dir, tokenizer, monkeypatch):
    import reasoner.training.update as update

    torch.manual_seed(0)
    base = load_model(ModelConfig(path=str(tiny_model_dir)))
    rollouts = sample_rollouts(base, tokenizer, 4, n=3, max_new_tokens=10)
    # groups 0 and 2 have zero advantages; in the last minibatch pass both groups are skipped entirely
    advantages = torch.tensor([0.0, 0.0, 0.0, 1.0, -0.5, -0.5, 0.0, 0.0, 0.0, 0.7, 0.0, -0.7])
    batch = collate(rollouts, advantages, tokenizer.pad_token_id)

    def run(skip: bool):
        model = load_model(ModelConfig(path=str(tiny_model_dir)))
        if not skip:
            monkeypatch.setattr(update, "_rows_with_gradient", lambda mb, algo: torch.arange(mb.size))
        # SGD with momentum and weight decay: a skipped minibatch must still step (momentum, decay) as the full
        # one does. (Adam would amplify last-bit differences of differently batched matmuls on tiny gradients.)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        stats = update_policy(SingleProcess.wrapping(model, optimizer, scheduler), batch, AlgorithmConfig(ppo_epochs=2, minibatches=2),
                              OptimConfig(), temperature=1.0, norm_length=10,
                              generator=torch.Generator().manual_seed(0))
        monkeypatch.undo()
        return model, stats

    batch.old_logprobs = score_logprobs(base, batch)
    skipped_model, skipped_stats = run(skip=True)
    full_model, full_stats = run(skip=False)
    assert skipped_stats["skipped_rows"] > 0 and full_stats["skipped_rows"] == 0
    for a, b in zip(skipped_model.parameters(), full_model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
