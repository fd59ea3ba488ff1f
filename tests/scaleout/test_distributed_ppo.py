"""Multi-process PPO with a critic on CPU (torchrun, gloo): DDP and DeepSpeed ZeRO-2 against one process.

Marker `distributed` (scripts/test_distributed.sh -k ppo). The same seeded rollouts as the GRPO tests
(dist_worker.SeededEngine), one sample per prompt (PPO needs no group), GAE over the critic's values; after
3 steps both the policy and the critic must agree with the single process within the GRPO tests' tolerances
(conftest.MEAN_TOL / MAX_TOL), while both moved far more than that. The values, GAE and whitening are computed
on the whole step's gathered rows, so they are the single process's; what remains is float summation order.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import MAX_TOL, MEAN_TOL, REPO, assert_parameters_agree, torchrun
from safetensors.torch import load_file

pytestmark = pytest.mark.distributed
WORKER = Path(__file__).resolve().parent / "dist_worker.py"
PPO = ["algorithm.advantage=gae", "sampling.n=1", "prompts_per_step=8", "critic.optim.lr=1e-3",
       "critic.warmup_steps=1", "algorithm.lam=0.95"]
BACKENDS = {"ddp": ["distributed.backend=ddp"],
            "zero2": ["distributed.backend=deepspeed", "distributed.deepspeed_config=zero2"]}


@pytest.fixture(scope="module")
def single_ppo(scaleout_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single_ppo") / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(WORKER), "--model", str(scaleout_model_dir), "--out", str(out),
                           "--seeded", *PPO], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def critic_agreement(run: Path, reference: Path, initial: Path) -> dict[str, float]:
    a, b = (load_file(str(p / "critic" / "model.safetensors")) for p in (run, reference))
    init = load_file(str(initial / "model.safetensors"))
    gap = torch.cat([(a[k] - b[k]).abs().flatten() for k in b])
    moved = torch.cat([(b[k] - init[k]).abs().flatten() for k in b if k in init])  # the body (the head is new)
    assert len([k for k in b if k in init]) > 0.8 * len(b)
    return {"mean": float(gap.mean()), "max": float(gap.max()), "moved_mean": float(moved.mean())}


@pytest.mark.parametrize("backend", ["ddp", "zero2"])
def test_two_process_ppo_trains_policy_and_critic_like_one(backend, scaleout_model_dir, single_ppo, tmp_path):
    out = tmp_path / "run"
    proc = torchrun(2, WORKER, ["--model", str(scaleout_model_dir), "--out", str(out), "--seeded", *PPO,
                                *BACKENDS[backend]])
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert_parameters_agree(out, single_ppo, scaleout_model_dir)
    d = critic_agreement(out, single_ppo, scaleout_model_dir)
    assert d["moved_mean"] > 100 * MEAN_TOL, f"the critic barely trained: {d}"
    assert d["mean"] < MEAN_TOL and d["max"] < MAX_TOL, f"critic parameters differ: {d}"
    mine, ref = ([json.loads(line) for line in (p / "metrics.jsonl").read_text().splitlines()]
                 for p in (out, single_ppo))
    assert [r["step"] for r in mine] == [1, 2, 3]
    for m, r in zip(mine, ref):
        assert m["reward/mean"] == pytest.approx(r["reward/mean"], abs=1e-6)
        for key in ("critic/value_loss", "critic/explained_variance", "critic/values_mean", "critic/grad_norm"):
            assert m[key] == pytest.approx(r[key], rel=1e-4, abs=1e-6), key
        if "grad_norm" in r:
            assert m["grad_norm"] == pytest.approx(r["grad_norm"], rel=1e-4, abs=1e-6)
