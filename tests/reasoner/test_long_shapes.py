"""A GRPO run with 4,096-token answers on CPU: it completes, packs its micro-batches and stays within memory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reasoner.config import save_config
from reasoner.data.tasks import arithmetic
from reasoner.models import TinyModelSpec, build_tiny_model

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_grpo_with_4096_token_answers_completes_with_bounded_memory(tmp_path):
    from reasoner.config import load_config
    from reasoner.training import TrainConfig

    rows = arithmetic(300, split="train")
    model = build_tiny_model(tmp_path / "model", [f"{r['problem']} {r['response']}" for r in rows],
                             TinyModelSpec(vocab_size=320, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                           head_dim=16, intermediate_size=64, max_position_embeddings=4608))
    cfg = load_config(TrainConfig, None, [
        f"model.path={model}", f"out_dir={tmp_path / 'run'}", "data.num_examples=8", "prompts_per_step=1",
        "sampling.n=2", "sampling.max_new_tokens=4096", "sampling.ignore_eos=true", "steps=2", "save_every=0",
        "optim.lr=1e-3", "optim.max_tokens_per_micro_batch=4096", "log.report_to=[]", "log.progress=false",
        "log.plots=false", "reward.verifiers={math: {weight: 1.0}}", "algorithm.advantage=reinforce_pp_baseline",
        "threads=2"])
    save_config(cfg, tmp_path / "cfg.yaml")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "reasoner", "train", "--config", str(tmp_path / "cfg.yaml")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read()
    assert os.waitstatus_to_exitcode(status) == 0, err[-3000:]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2
    assert all(m["length/mean"] == 4096 for m in metrics)  # 4,096-token answers were sampled and trained on
    peak_gib = usage.ru_maxrss / 2**20
    assert peak_gib < 3.0, f"peak resident memory {peak_gib:.2f} GiB"
