"""The trainer's forward (`PolicyScorer`): every path gives the same GRPO step, in float64 to 1e-6.

Paths: padded with materialised logits (the reference), padded with the fused head, packed (shared prompts and
not); micro-batches by rows or by a token budget. A whole update (the loss, its gradients, AdamW) must leave the
same parameters whichever path computed it.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from reasoner.models.exact import upcast_norms
from reasoner.training import AlgorithmConfig
from reasoner.training.backend import SingleProcess
from reasoner.training.config import OptimConfig
from reasoner.training.logprobs import FUSE_ABOVE_BYTES, PACK_FROM_TOKENS, PolicyScorer, score_logprobs
from reasoner.training.update import update_policy
from tests.reasoner._batch_helpers import ragged_batch

F64 = {"atol": 1e-6, "rtol": 0.0}


@pytest.fixture(scope="module")
def model64(tiny_model_dir):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float64, attn_implementation="sdpa")
    upcast_norms(model)
    return model


def _batch(model, seed=0):
    batch = ragged_batch(model.config.vocab_size, 3, [4, 9, 6], [7, 1, 5, 12, 3, 8, 2, 9, 4], seed=seed)
    batch.advantages = torch.randn(batch.size, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return batch


def _step(model, batch, *, packed, fused, optim=None, algo=None):
    model = copy.deepcopy(model)
    scorer = PolicyScorer(model, packed=packed, fused_head=fused)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    backend = SingleProcess()
    backend.prepare(model, optimizer, scheduler, scorer=scorer)
    algo = algo or AlgorithmConfig(ppo_epochs=2, minibatches=1)
    if algo.ppo_epochs > 1:
        batch.old_logprobs = score_logprobs(scorer, batch)
    stats = update_policy(backend, batch, algo, optim or OptimConfig(max_grad_norm=None), temperature=0.9,
                          norm_length=12, generator=torch.Generator().manual_seed(0))
    return model, stats


@pytest.mark.parametrize("packed, fused", [(False, True), (True, True)])
def test_every_path_gives_the_same_grpo_step(model64, packed, fused):
    batch = _batch(model64)
    reference, ref_stats = _step(model64, batch, packed=False, fused=False)
    ours, stats = _step(model64, batch, packed=packed, fused=fused)
    assert stats["loss"] == pytest.approx(ref_stats["loss"], abs=1e-9)
    assert stats["entropy"] == pytest.approx(ref_stats["entropy"], abs=1e-9)
    for (name, a), b in zip(ours.named_parameters(), reference.parameters()):
        assert_close(a, b, **F64, msg=name)
    assert any(not torch.equal(a, b) for a, b in zip(ours.parameters(), model64.parameters()))  # it moved


@pytest.mark.parametrize("packed", [False, True])
def test_a_token_budget_gives_the_same_step_as_one_big_micro_batch(model64, packed):
    batch = _batch(model64, seed=3)
    whole, _ = _step(model64, batch, packed=packed, fused=True, algo=AlgorithmConfig())
    budget = OptimConfig(max_grad_norm=None, max_tokens_per_micro_batch=40)  # several micro-batches, whole groups
    split, stats = _step(model64, batch, packed=packed, fused=True, optim=budget, algo=AlgorithmConfig())
    for a, b in zip(split.parameters(), whole.parameters()):
        assert_close(a, b, **F64)


def test_auto_picks_the_reference_at_demo_shape_and_packs_and_fuses_long_or_wide_batches(model64):
    scorer = PolicyScorer(copy.deepcopy(model64))
    short = _batch(model64)
    assert scorer.plan(short) == (False, False)                       # short sequences, small logits
    long = ragged_batch(model64.config.vocab_size, 2, [20], [PACK_FROM_TOKENS, PACK_FROM_TOKENS])
    assert scorer.plan(long) == (True, True)                          # long: packed (and so fused)
    rows = FUSE_ABOVE_BYTES // (4 * model64.config.vocab_size * 16) + 1
    wide = ragged_batch(model64.config.vocab_size, 1, [4] * rows, [16] * rows)
    assert scorer.plan(wide) == (False, True)                         # short but many: fused logits
    off = PolicyScorer(copy.deepcopy(model64), packed=False, fused_head=False)
    assert off.plan(long) == (False, False)
