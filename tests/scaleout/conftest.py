"""Fixtures for the scale-out tests: a tiny model vLLM's CPU backend can run, and torchrun launches.

vLLM's CPU attention kernels need head_dim >= 32, so these tests use their own tiny model (the main suite's has
head_dim 16). The model is built offline once per session, as in tests/reasoner.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reasoner.data.tasks import arithmetic
from reasoner.models import TinyModelSpec, build_tiny_model

REPO = Path(__file__).resolve().parents[2]
# Helper modules next to the tests (toy_reward, dist_worker) import by name under any pytest import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))
SCALEOUT_SPEC = TinyModelSpec(vocab_size=384, hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=32,
                              intermediate_size=128, max_position_embeddings=1024, seed=0)


@pytest.fixture(scope="session")
def scaleout_model_dir(tmp_path_factory) -> Path:
    rows = arithmetic(2000, split="train", seed=0)
    corpus = [f"{r['problem']} {r['response']}" for r in rows]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", corpus, SCALEOUT_SPEC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, script: Path | str, args: list[str], *, timeout: float = 600,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node nproc script args` (one thread per process: the machine has few cores);
    `script` may be `-m module` to launch a module, as users launch `-m reasoner`."""
    target = script.split() if isinstance(script, str) and script.startswith("-m ") else [str(script)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(free_port()), *target, *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)


def chi_square(counts: dict[int, int], probs, n: int) -> tuple[float, int]:
    """Pearson's statistic of `counts` (token -> draws) against `probs` [V]; tokens expected < 5 times are pooled.

    Returns (statistic, degrees of freedom). For draws from `probs` it is about df ± sqrt(2 df)."""
    expected = [float(p) * n for p in probs]
    stat, cells, pooled_obs, pooled_exp = 0.0, 0, 0, 0.0
    for token, e in enumerate(expected):
        if e >= 5:
            stat += (counts.get(token, 0) - e) ** 2 / e
            cells += 1
        else:
            pooled_obs += counts.get(token, 0)
            pooled_exp += e
    if pooled_exp > 0:
        stat += (pooled_obs - pooled_exp) ** 2 / pooled_exp
        cells += 1
    return stat, cells - 1


def first_token_draws(engine, prompt: list[int], n: int) -> dict[int, int]:
    from collections import Counter

    from reasoner.rollout import SamplingParams
    group = engine.generate([prompt], SamplingParams(n=n, temperature=1.0, max_new_tokens=1))[0]
    return dict(Counter(c.token_ids[0] for c in group))


def next_token_probs(model, prompt: list[int]):
    import torch
    with torch.no_grad():
        return torch.softmax(model(torch.tensor([prompt])).logits[0, -1].float(), dim=-1).tolist()


# Parameter agreement between a multi-process run and the single-process run on the same global batches.
# AdamW divides each gradient by its own running size, so a parameter whose gradient is a sum of nearly cancelling
# terms (whose rounding depends on how the batch was split) can move differently by a visible fraction of the
# learning rate; almost all parameters agree to float precision. Hence two bounds: the mean difference, which any
# real error (a missing all-reduce, a mis-scaled loss) moves by orders of magnitude, and a looser maximum.
MEAN_TOL, MAX_TOL = 1e-6, 1e-4


def parameter_agreement(run: Path, reference: Path, initial: Path) -> dict[str, float]:
    """Mean / max |run − reference| over all parameters of the final models, and how far training moved them."""
    import torch
    from safetensors.torch import load_file

    a, b = load_file(str(run / "model" / "model.safetensors")), load_file(str(reference / "model" / "model.safetensors"))
    init = load_file(str(initial / "model.safetensors"))
    gap = torch.cat([(a[k] - b[k]).abs().flatten() for k in b])
    moved = torch.cat([(b[k] - init[k]).abs().flatten() for k in b])
    return {"mean": float(gap.mean()), "max": float(gap.max()), "moved_mean": float(moved.mean()),
            "moved_max": float(moved.max())}


def assert_parameters_agree(run: Path, reference: Path, initial: Path) -> None:
    d = parameter_agreement(run, reference, initial)
    assert d["moved_mean"] > 100 * MEAN_TOL and d["moved_max"] > 10 * MAX_TOL, f"the reference barely trained: {d}"
    assert d["mean"] < MEAN_TOL and d["max"] < MAX_TOL, f"parameters differ: {d}"
