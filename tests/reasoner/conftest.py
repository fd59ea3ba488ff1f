"""Fixtures for reasoner tests: a tiny model built offline once per session."""
from __future__ import annotations

import pytest
import torch

from reasoner.data.tasks import arithmetic
from reasoner.models import TinyModelSpec, build_tiny_model

# Smaller than the demo's model: enough to exercise every code path quickly on 2 cores.
TEST_SPEC = TinyModelSpec(vocab_size=384, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                          intermediate_size=128, max_position_embeddings=512, seed=0)


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    rows = arithmetic(2000, split="train", seed=0)
    corpus = [f"{r['problem']} {r['response']}" for r in rows]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", corpus, TEST_SPEC)


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir):
    from reasoner.models import load_tokenizer
    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture
def dense_reward(monkeypatch):
    """Registers `digit_fraction` (reward = fraction of digit characters in the completion) for one test: dense,
    and varied even for an untrained model, so every group carries gradient."""
    from reasoner_verifiers import Score, registry
    from reasoner_verifiers.types import Verifier

    class DigitFraction(Verifier):
        name = "digit_fraction"

        def score(self, completion, example):
            value = sum(ch.isdigit() for ch in completion) / max(len(completion), 1)
            return Score(value=value, status="scored", details={})

    registry.available()  # load the built-ins first, then add ours for this test only
    monkeypatch.setitem(registry._FACTORIES, "digit_fraction", lambda options: DigitFraction())
    return "{digits: {verifier: digit_fraction, weight: 1.0}, math: {weight: 1.0}}"
