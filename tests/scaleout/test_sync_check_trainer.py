"""The verified-sync flow of the GRPO trainer, with an engine that keeps its own copy of the weights (main suite).

`CopyEngine` is the HF engine sampling from a deep copy of the policy, synced by `load_state_dict`: the same
situation as vLLM (a second copy that must be kept in step), without vLLM. Faults are injected in its sync.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch
from toy_reward import TOY_REWARD, register

from reasoner.config import load_config
from reasoner.rollout import RolloutEngine
from reasoner.rollout.hf_engine import HFEngine
from reasoner.training import TrainConfig, grpo
from reasoner.training.sync_check import SyncCheckError


class CopyEngine(RolloutEngine):
    owns_weights = True

    def __init__(self, model, tokenizer, fault: str | None = None):
        self.model = copy.deepcopy(model)
        self.inner = HFEngine(self.model, tokenizer)
        self.fault = fault

    def generate(self, prompts, params):
        return self.inner.generate(prompts, params)

    def sync_weights(self, model):
        if self.fault == "stale":
            return
        state = model.state_dict()
        if self.fault == "skip_mlp":  # a loader that silently misses some tensors
            state = {k: v for k, v in state.items() if ".mlp." not in k}
        self.model.load_state_dict(state, strict=False)


def config(model_dir, out_dir, **overrides) -> TrainConfig:
    register()
    base = [f"model.path={model_dir}", f"out_dir={out_dir}", "data.num_examples=64", "sampling.n=4",
            "sampling.max_new_tokens=8", "prompts_per_step=4", "steps=2", "optim.lr=1e-3", "log.report_to=[]",
            "log.progress=false", "log.plots=false", "save_every=0", TOY_REWARD]
    return load_config(TrainConfig, None, base + [f"{k}={v}" for k, v in overrides.items()])


def use_engine(monkeypatch, fault=None, first_load=None):
    def make(cfg, model, tokenizer):
        engine = CopyEngine(model, tokenizer, fault)
        if first_load is not None:
            first_load(engine.model)
        return engine
    monkeypatch.setattr(grpo, "make_engine", make)


def test_a_healthy_sync_is_verified_and_logged_every_step(scaleout_model_dir, tmp_path, monkeypatch):
    use_engine(monkeypatch)
    records = grpo.train(config(scaleout_model_dir, tmp_path / "run")).metrics
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert r["sync/probe_tokens"] > 0 and r["sync/logprob_gap_max"] < 1e-4 and r["sync/kl"] < 1e-8


@pytest.mark.parametrize("fault", ["stale", "skip_mlp"])
def test_a_broken_sync_stops_the_run_after_the_step_with_a_checkpoint(scaleout_model_dir, tmp_path, monkeypatch,
                                                                     fault):
    use_engine(monkeypatch, fault)
    with pytest.raises(SyncCheckError, match="after step 1") as info:
        grpo.train(config(scaleout_model_dir, tmp_path / "run"))
    assert "step-000001" in str(info.value) and (tmp_path / "run" / "checkpoints" / "step-000001" / "state.json").exists()
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["step"] == 1 and logged[-1]["sync/logprob_gap_mean"] > 2e-3

    use_engine(monkeypatch)  # the engine fixed: the run resumes from the kept checkpoint
    records = grpo.train(config(scaleout_model_dir, tmp_path / "run")).metrics
    assert [r["step"] for r in records] == [1, 2] and records[1]["sync/logprob_gap_max"] < 1e-4


def test_the_first_load_is_checked_before_training(scaleout_model_dir, tmp_path, monkeypatch):
    def wrong_weights(model):
        with torch.no_grad():
            model.lm_head.weight.mul_(1.5)  # e.g. a different checkpoint, or a head the loader scaled

    use_engine(monkeypatch, first_load=wrong_weights)
    with pytest.raises(SyncCheckError, match="after step 0"):
        grpo.train(config(scaleout_model_dir, tmp_path / "run", **{"sync_check.every": 1}))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_thresholds_can_be_loosened_and_the_check_switched_off(scaleout_model_dir, tmp_path, monkeypatch):
    use_engine(monkeypatch, "stale")
    loose = grpo.train(config(scaleout_model_dir, tmp_path / "a", **{"sync_check.max_mean_gap": 10,
                                                                     "sync_check.max_kl": 10})).metrics
    assert loose[-1]["sync/logprob_gap_mean"] > 0
    off = grpo.train(config(scaleout_model_dir, tmp_path / "b", **{"sync_check.enabled": "false"})).metrics
    assert not any(k.startswith("sync/") for k in off[-1])
