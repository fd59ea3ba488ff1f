"""Loss aggregation: hand values, loop reference, empty rows, and micro-batch accumulation equivalence."""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from reasoner.algorithms import LOSS_AGGREGATIONS, aggregate_loss, global_counts

MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


def test_hand_computed_values():
    # token-mean: (1 + 2 + 3 + 4) / 4 tokens = 2.5
    assert_close(aggregate_loss(LOSS, MASK, "token-mean"), torch.tensor(2.5))
    # seq-mean-token-mean: mean(6/3, 4/1) = (2 + 4) / 2 = 3
    assert_close(aggregate_loss(LOSS, MASK, "seq-mean-token-mean"), torch.tensor(3.0))
    # seq-mean-token-sum-norm: 10 / (2 seqs * T=3) = 1.6667; with norm_length=5: 10 / 10 = 1
    assert_close(aggregate_loss(LOSS, MASK, "seq-mean-token-sum-norm"), torch.tensor(10 / 6))
    assert_close(aggregate_loss(LOSS, MASK, "seq-mean-token-sum-norm", norm_length=5), torch.tensor(1.0))
    # explicit denominators: 10 / 8 tokens; (2 + 4) / 4 seqs; 10 / (4 * 3)
    assert_close(aggregate_loss(LOSS, MASK, "token-mean", num_tokens=8), torch.tensor(1.25))
    assert_close(aggregate_loss(LOSS, MASK, "seq-mean-token-mean", num_seqs=4), torch.tensor(1.5))
    assert_close(aggregate_loss(LOSS, MASK, "seq-mean-token-sum-norm", num_seqs=4), torch.tensor(10 / 12))


@pytest.mark.parametrize("mode", MODES)
def test_empty_rows_and_garbage_in_padding(mode):
    # an all-padding row holding NaN/inf changes nothing: same values as the hand-computed case above
    loss = torch.cat([LOSS, torch.tensor([[float("nan"), float("inf"), 9.0]])])
    mask = torch.cat([MASK, torch.zeros(1, 3)])
    assert_close(aggregate_loss(loss, mask, mode), aggregate_loss(LOSS, MASK, mode))
    # nothing masked in at all: 0, not NaN, and the gradient is 0 too
    loss = torch.randn(2, 3, requires_grad=True)
    out = aggregate_loss(loss, torch.zeros(2, 3), mode)
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(loss.grad, torch.zeros(2, 3))


# ---- reference: loops over rows and tokens ----

def ref_aggregate(loss, mask, mode, num_tokens=None, num_seqs=None, norm_length=None):
    n, t = loss.shape
    total, tokens, seq_mean_sum, seqs = 0.0, 0.0, 0.0, 0
    for i in range(n):
        row_sum, row_tokens = 0.0, 0.0
        for j in range(t):
            if mask[i, j] != 0:
                row_sum += float(loss[i, j]) * float(mask[i, j])
                row_tokens += float(mask[i, j])
        total += row_sum
        tokens += row_tokens
        if row_tokens > 0:
            seqs += 1
            seq_mean_sum += row_sum / row_tokens
    num_tokens = tokens if num_tokens is None else num_tokens
    num_seqs = seqs if num_seqs is None else num_seqs
    if mode == "token-mean":
        return total / num_tokens if num_tokens else 0.0
    if mode == "seq-mean-token-mean":
        return seq_mean_sum / num_seqs if num_seqs else 0.0
    length = t if norm_length is None else norm_length
    return total / (num_seqs * length) if num_seqs else 0.0


def random_batch(gen, n, t, empty_rows=True):
    loss = torch.randn(n, t, generator=gen, dtype=torch.float64)
    lengths = torch.randint(0 if empty_rows else 1, t + 1, (n,), generator=gen)
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).double()
    return loss, mask


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(4))
def test_matches_loop_reference(mode, seed):
    gen = torch.Generator().manual_seed(seed)
    for n, t in ((1, 1), (4, 7), (16, 33)):
        loss, mask = random_batch(gen, n, t)
        assert_close(aggregate_loss(loss, mask, mode), torch.tensor(ref_aggregate(loss, mask, mode), dtype=torch.float64))
        kwargs = {"num_tokens": 50.0, "num_seqs": 9, "norm_length": 40}
        assert_close(
            aggregate_loss(loss, mask, mode, **kwargs),
            torch.tensor(ref_aggregate(loss, mask, mode, **kwargs), dtype=torch.float64),
        )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(3))
def test_micro_batch_accumulation_equals_full_minibatch(mode, seed):
    """Summing micro-batch losses built with the minibatch's counts gives the minibatch loss and gradient."""
    gen = torch.Generator().manual_seed(seed)
    loss, mask = random_batch(gen, 12, 20)
    mask[3] = 0  # an empty row somewhere
    weights = torch.randn(12, 20, generator=gen, dtype=torch.float64, requires_grad=True)
    norm_length = 20

    full = aggregate_loss(loss * weights, mask, mode, norm_length=norm_length)
    (full_grad,) = torch.autograd.grad(full, weights)

    num_tokens, num_seqs = global_counts(mask)
    total = torch.zeros((), dtype=torch.float64)
    naive = torch.zeros((), dtype=torch.float64)
    splits = [slice(0, 5), slice(5, 6), slice(6, 12)]  # uneven micro-batches
    for s in splits:
        micro = aggregate_loss(
            (loss * weights)[s], mask[s], mode, num_tokens=num_tokens, num_seqs=num_seqs, norm_length=norm_length
        )
        total = total + micro
        naive = naive + aggregate_loss((loss * weights)[s], mask[s], mode, norm_length=norm_length) / len(splits)
    (accumulated_grad,) = torch.autograd.grad(total, weights)

    assert_close(total, full)
    assert_close(accumulated_grad, full_grad)
    # the bug this guards against: averaging per-micro-batch means is *not* the minibatch loss
    assert abs(naive.item() - full.item()) > 1e-3


def test_global_counts():
    num_tokens, num_seqs = global_counts(torch.cat([MASK, torch.zeros(1, 3)]))
    assert num_tokens.item() == 4 and num_seqs.item() == 2


def test_errors():
    with pytest.raises(KeyError) as info:
        aggregate_loss(LOSS, MASK, "seq-sum")
    for mode in MODES:
        assert mode in str(info.value)
    with pytest.raises(ValueError, match="one shape"):
        aggregate_loss(LOSS, MASK[:, :2], "token-mean")
    with pytest.raises(ValueError, match="num_tokens must be >= 0"):
        aggregate_loss(LOSS, MASK, "token-mean", num_tokens=-1)
    with pytest.raises(ValueError, match="norm_length"):
        aggregate_loss(LOSS, MASK, "seq-mean-token-sum-norm", norm_length=0)
    assert LOSS_AGGREGATIONS.names() == sorted(MODES)


def test_bool_mask_and_bf16_loss():
    out = aggregate_loss(LOSS.bfloat16(), MASK.bool(), "token-mean")
    assert out.dtype == torch.float32
    assert_close(out, torch.tensor(2.5))
