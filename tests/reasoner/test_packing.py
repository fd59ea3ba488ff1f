"""Packed (padding-free) forward against the padded trainer path: layout, values, gradients, shared prompts."""
from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from reasoner.models.exact import upcast_norms
from reasoner.training.logprobs import forward_logprobs
from reasoner.training.packing import (
    PACKED_ATTENTION,
    Segment,
    enable_packed_attention,
    pack_sequences,
    pack_train_batch,
    packed_forward_logprobs,
    unpack_responses,
)
from tests.reasoner._batch_helpers import ragged_batch

F64 = {"atol": 1e-6, "rtol": 0.0}


def test_layout_unshared():
    p = pack_sequences([[1, 2], [7]], [[3, 4, 5], [6]], width=4)
    assert p.input_ids.tolist() == [[1, 2, 3, 4, 7]]          # each response without its last token
    assert p.position_ids.tolist() == [[0, 1, 2, 3, 0]]
    assert p.segments == [Segment(0, 4), Segment(4, 5)]
    assert p.target_index.tolist() == [1, 2, 3, 4]             # hidden state predicting each response token
    assert p.target_ids.tolist() == [3, 4, 5, 6]
    assert p.target_row.tolist() == [0, 0, 0, 1] and p.target_col.tolist() == [0, 1, 2, 0]
    assert (p.num_rows, p.width, p.shared_groups) == (2, 4, 0)


def test_layout_shared_prompt():
    p = pack_sequences([[1, 2], [1, 2]], [[3, 4, 5], [6, 8]], group_size=2, share_prompts=True)
    assert p.input_ids.tolist() == [[1, 2, 3, 4, 6]]
    assert p.position_ids.tolist() == [[0, 1, 2, 3, 2]]        # the second response restarts after the prompt
    assert p.segments == [Segment(0, 2), Segment(2, 4, 0, 2), Segment(4, 5, 0, 2)]
    assert p.target_index.tolist() == [1, 2, 3, 1, 4]          # both first tokens come from the prompt's end
    assert p.shared_groups == 1 and p.has_prefixes


def test_group_with_different_prompts_is_packed_row_by_row():
    p = pack_sequences([[1, 2], [1, 9], [5], [5]], [[3], [4], [6, 7], [8]], group_size=2, share_prompts=True)
    assert p.shared_groups == 1
    assert p.input_ids.tolist() == [[1, 2, 1, 9, 5, 6]]
    assert p.segments == [Segment(0, 2), Segment(2, 4), Segment(4, 5), Segment(5, 6, 4, 5)]


def test_empty_response_and_unpack():
    p = pack_sequences([[1], [2]], [[], [3, 4]], width=3)
    values = torch.tensor([0.5, 0.25], requires_grad=True)
    out = unpack_responses(values, p)
    assert out.tolist() == [[0.0, 0.0, 0.0], [0.5, 0.25, 0.0]]
    out.sum().backward()
    assert values.grad.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError):
        pack_sequences([[]], [[1]])


@pytest.fixture(scope="module")
def model64(tiny_model_dir):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float64, attn_implementation="sdpa")
    upcast_norms(model)
    return model


def _compare(model, batch, *, share: bool, entropy_grad: bool, temperature: float = 0.9):
    mask = batch.response_mask
    weights = torch.randn(mask.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * mask
    params = [p for p in model.parameters() if p.requires_grad]

    def run(fn):
        lp, ent = fn()
        loss = (lp * weights).sum() + (0.1 * (ent * weights).sum() if entropy_grad else 0.0)
        return lp * mask, ent * mask, torch.autograd.grad(loss, params)

    ref = run(lambda: forward_logprobs(model, batch, temperature, entropy_grad=entropy_grad))
    packed = pack_train_batch(batch, share_prompts=share)
    ours = run(lambda: packed_forward_logprobs(model, packed, temperature, entropy_grad=entropy_grad,
                                               block_rows=16, block_vocab=128))
    assert_close(ours[0], ref[0], **F64)
    assert_close(ours[1], ref[1], **F64)
    for a, r in zip(ours[2], ref[2]):
        assert_close(a, r, **F64)
    return packed


BATCH = dict(group_size=3, prompt_lens=[4, 9], response_lens=[7, 1, 5, 12, 3, 8])


@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("entropy_grad", [False, True])
def test_packed_equals_padded_float64(model64, share, entropy_grad):
    enable_packed_attention(model64)
    assert model64.config._attn_implementation == PACKED_ATTENTION
    batch = ragged_batch(model64.config.vocab_size, **BATCH)
    packed = _compare(model64, batch, share=share, entropy_grad=entropy_grad)
    real = int(batch.attention_mask.sum())
    # one token fewer per row (the last response token is not an input); prompts once per group when shared
    expected = real - batch.size - (sum(BATCH["prompt_lens"]) * (BATCH["group_size"] - 1) if share else 0)
    assert packed.num_tokens == expected


def test_packed_equals_padded_with_gradient_checkpointing(model64):
    enable_packed_attention(model64)
    model64.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model64.train()
    try:
        batch = ragged_batch(model64.config.vocab_size, **BATCH, seed=4)
        _compare(model64, batch, share=True, entropy_grad=False)
    finally:
        model64.gradient_checkpointing_disable()
        model64.eval()


def test_transformers_native_packing_with_sdpa(model64):
    """No custom attention: sdpa with `attention_mask=None` and restarting `position_ids` -> transformers builds
    the block-diagonal causal mask itself (exact, but a dense [L, L] mask)."""
    model64.set_attn_implementation("sdpa")
    try:
        batch = ragged_batch(model64.config.vocab_size, **BATCH, seed=5)
        _compare(model64, batch, share=False, entropy_grad=False)
        with pytest.raises(ValueError, match="shared prompts"):
            packed_forward_logprobs(model64, pack_train_batch(batch, share_prompts=True))
    finally:
        enable_packed_attention(model64)


def test_packed_attention_leaves_ordinary_forwards_unchanged(model64):
    batch = ragged_batch(model64.config.vocab_size, **BATCH, seed=6)
    kw = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
    model64.set_attn_implementation("sdpa")
    with torch.no_grad():
        plain = model64(**kw).logits
        enable_packed_attention(model64)
        ours = model64(**kw).logits
    mask = batch.attention_mask.bool()
    assert_close(ours[mask], plain[mask], atol=1e-12, rtol=0.0)


def test_packing_removes_padding_from_a_long_tailed_mix():
    """Processed tokens / real tokens: padded to the longest row vs packed, for log-uniform lengths 64..4096."""
    gen = torch.Generator().manual_seed(0)
    g, groups = 8, 4
    lengths = [int(math.exp(x)) for x in (torch.rand(g * groups, generator=gen) * math.log(4096 / 64)
                                          + math.log(64)).tolist()]
    prompt_lens = [int(n) for n in torch.randint(20, 200, (groups,), generator=gen)]
    prompts = [[1] * prompt_lens[i // g] for i in range(g * groups)]
    responses = [[2] * n for n in lengths]
    real = sum(prompt_lens) * g + sum(lengths)
    padded = g * groups * (max(prompt_lens) + max(lengths))
    unshared = pack_sequences(prompts, responses).num_tokens
    shared = pack_sequences(prompts, responses, group_size=g, share_prompts=True).num_tokens
    assert padded / real > 2.0
    assert unshared / real <= 1.0 and unshared == real - g * groups
    assert shared == unshared - sum(prompt_lens) * (g - 1)


def test_drop_in_on_a_train_batch_and_as_a_module(model64):
    from reasoner.training.packing import PackedScorer, packed_batch_logprobs
    enable_packed_attention(model64)
    batch = ragged_batch(model64.config.vocab_size, **BATCH, seed=8)
    mask = batch.response_mask
    with torch.no_grad():
        ref_lp, ref_ent = forward_logprobs(model64, batch, 1.0)
        lp, ent = packed_batch_logprobs(model64, batch)
        mod_lp, _ = PackedScorer(model64)(batch)
    assert lp.shape == ref_lp.shape == mod_lp.shape
    assert_close(lp * mask, ref_lp * mask, **F64)
    assert_close(ent * mask, ref_ent * mask, **F64)
    assert_close(mod_lp, lp, atol=0.0, rtol=0.0)
