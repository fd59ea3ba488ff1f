"""Chunked token log-probs and entropy against the naive full log_softmax, values and gradients."""
from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from reasoner.algorithms import entropy_from_logits, token_logprobs


def naive_logprobs(logits, ids, temperature=1.0):
    return torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def naive_entropy(logits, temperature=1.0):
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


# (N, T, V, chunk_elements): one block; blocks over N; blocks over T inside a sequence (chunk < T * V)
SHAPES = [(2, 3, 11, 1 << 25), (5, 7, 64, 3 * 7 * 64), (3, 9, 50, 120), (1, 1, 5, 1)]


@pytest.mark.parametrize("n,t,v,chunk", SHAPES)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("seed", range(2))
def test_logprobs_match_naive_values_and_gradients(n, t, v, chunk, temperature, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(n, t, v, generator=gen)).requires_grad_(True)
    ids = torch.randint(0, v, (n, t), generator=gen)
    weights = torch.randn(n, t, generator=gen)

    ours = token_logprobs(logits, ids, temperature, chunk_elements=chunk)
    (ours * weights).sum().backward()
    ours_grad, logits.grad = logits.grad, None
    ref = naive_logprobs(logits, ids, temperature)
    (ref * weights).sum().backward()

    assert ours.dtype == torch.float32 and ours.shape == (n, t)
    assert_close(ours, ref)
    assert_close(ours_grad, logits.grad)


@pytest.mark.parametrize("n,t,v,chunk", SHAPES)
@pytest.mark.parametrize("temperature", [1.0, 1.3])
def test_entropy_matches_naive_values_and_gradients(n, t, v, chunk, temperature):
    gen = torch.Generator().manual_seed(n * t)
    logits = (2 * torch.randn(n, t, v, generator=gen)).requires_grad_(True)
    weights = torch.randn(n, t, generator=gen)

    ours = entropy_from_logits(logits, temperature=temperature, chunk_elements=chunk)
    (ours * weights).sum().backward()
    ours_grad, logits.grad = logits.grad, None
    ref = naive_entropy(logits, temperature)
    (ref * weights).sum().backward()

    assert ours.dtype == torch.float32
    assert_close(ours, ref)
    assert_close(ours_grad, logits.grad)


def test_hand_computed_values():
    # uniform over V=4: entropy log 4, every log-prob -log 4; logits [0, log 3]: p = [1/4, 3/4],
    # entropy = -(1/4 log 1/4 + 3/4 log 3/4) = 0.562335
    uniform = torch.zeros(1, 1, 4)
    assert_close(entropy_from_logits(uniform), torch.tensor([[math.log(4)]]))
    assert_close(token_logprobs(uniform, torch.tensor([[2]])), torch.tensor([[-math.log(4)]]))
    two = torch.tensor([[[0.0, math.log(3)]]])
    assert_close(entropy_from_logits(two), torch.tensor([[0.562335]]))
    assert_close(token_logprobs(two, torch.tensor([[1]])), torch.tensor([[math.log(0.75)]]))
    # temperature 0.5 doubles the logit gap: p = [1/10, 9/10]
    assert_close(token_logprobs(two, torch.tensor([[1]]), temperature=0.5), torch.tensor([[math.log(0.9)]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inputs_are_not_modified(dtype):
    logits = torch.randn(3, 4, 9).to(dtype).requires_grad_(True)
    ids = torch.randint(0, 9, (3, 4))
    before = logits.detach().clone()
    (token_logprobs(logits, ids, 0.7, chunk_elements=20).sum() + entropy_from_logits(logits, temperature=0.7).sum()).backward()
    token_logprobs(logits.detach(), ids)
    assert torch.equal(logits.detach(), before)


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 5, (2, 3), generator=gen)
    assert torch.autograd.gradcheck(lambda x: token_logprobs(x, ids, 0.8, chunk_elements=7), (logits,))
    assert torch.autograd.gradcheck(lambda x: entropy_from_logits(x, temperature=0.8, chunk_elements=7), (logits,))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_are_upcast(dtype):
    gen = torch.Generator().manual_seed(0)
    logits = (4 * torch.randn(4, 6, 300, generator=gen)).to(dtype).requires_grad_(True)
    ids = torch.randint(0, 300, (4, 6), generator=gen)
    ours = token_logprobs(logits, ids, chunk_elements=1000)
    assert ours.dtype == torch.float32
    # the reference on the same (rounded) logits in float32: no precision lost beyond float32 round-off
    assert_close(ours, naive_logprobs(logits.detach().float(), ids))
    assert_close(entropy_from_logits(logits.detach()), naive_entropy(logits.detach().float()))
    ours.sum().backward()
    assert logits.grad.dtype == dtype


def test_minus_inf_logits_give_no_nan():
    # a vocabulary mask: -inf logits have probability 0 and contribute 0 to the entropy and its gradient
    logits = torch.tensor([[[0.0, math.log(3), -math.inf, -math.inf]]], requires_grad=True)
    h = entropy_from_logits(logits)
    assert_close(h, torch.tensor([[0.562335]]))
    h.sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert torch.equal(logits.grad[0, 0, 2:], torch.zeros(2))
    lp = token_logprobs(logits.detach(), torch.tensor([[1]]))
    assert_close(lp, torch.tensor([[math.log(0.75)]]))


def _saved_bytes(fn, logits):
    """Bytes saved for backward by `fn(logits)`, not counting the logits themselves."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(logits)
    return sum(t.numel() * t.element_size() for t in saved if t.data_ptr() != logits.data_ptr())


def test_backward_saves_one_float_per_token_not_a_logits_copy():
    n, t, v = 4, 8, 1000
    logits = torch.randn(n, t, v, requires_grad=True)
    ids = torch.randint(0, v, (n, t))
    per_token_budget = 3 * 8 * n * t  # a few floats / ids per token
    assert _saved_bytes(lambda x: token_logprobs(x, ids), logits) <= per_token_budget
    assert _saved_bytes(lambda x: entropy_from_logits(x), logits) <= per_token_budget
    # the naive version keeps a full [N, T, V] log-softmax for backward
    assert _saved_bytes(lambda x: naive_logprobs(x, ids), logits) >= n * t * v * 4


def test_errors():
    with pytest.raises(ValueError, match=r"\[N, T, V\]"):
        token_logprobs(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="token_ids has shape"):
        token_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        entropy_from_logits(torch.zeros(2, 3, 4), temperature=0.0)
    with pytest.raises(ValueError, match="floating point"):
        entropy_from_logits(torch.zeros(2, 3, 4, dtype=torch.long))
