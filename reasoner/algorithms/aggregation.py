"""Reduce a per-token loss `[N, T]` to a scalar: the switch that separates GRPO, DAPO and Dr. GRPO.

- `token-mean` (DAPO): `sum(loss * mask) / sum(mask)`; every token weighs the same, so long answers weigh more.
- `seq-mean-token-mean` (original GRPO): mean over sequences of each sequence's token mean; every sequence
  weighs the same, so tokens of short answers weigh more (the length bias Dr. GRPO points out).
- `seq-mean-token-sum-norm` (Dr. GRPO): `sum(loss * mask) / (num_seqs * norm_length)` with a constant
  `norm_length` (default `T`; pass the generation budget, `max_response_length`, to make it truly constant).

Gradient accumulation: when a minibatch is split into micro-batches, averaging per-micro-batch means is not
the minibatch mean (micro-batches hold different numbers of tokens). Pass the minibatch's counts as
`num_tokens` / `num_seqs` (see `global_counts`) and a fixed `norm_length`, and the micro-batch losses then sum
to exactly the minibatch loss. Under data-parallel training that *averages* gradients over W ranks, pass the
all-reduced counts divided by W.

Counting: "sequences" are rows with at least one real token; an all-padding row contributes 0 to every sum
and is not counted, so it neither yields NaN nor dilutes the mean. Masked positions are excluded with
`torch.where`, so a NaN/inf in padding cannot leak into the result.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from reasoner.algorithms.registry import Registry

Count = int | float | Tensor | None
AggregationFn = Callable[..., Tensor]
LOSS_AGGREGATIONS: Registry[AggregationFn] = Registry("loss aggregation mode")


def aggregate_loss(
    loss: Tensor,
    mask: Tensor,
    mode: str,
    *,
    num_tokens: Count = None,
    num_seqs: Count = None,
    norm_length: int | float | None = None,
) -> Tensor:
    """Scalar loss from `loss[N, T]` over the real tokens `mask[N, T]` (1.0 real, 0.0 padding).

    Args:
        mode: one of `LOSS_AGGREGATIONS.names()`.
        num_tokens: token-mean denominator; default `mask.sum()` (this batch). Pass the minibatch's count
            when `loss` is one micro-batch of it.
        num_seqs: sequence-mode denominator; default the number of rows with a real token in this batch.
        norm_length: `seq-mean-token-sum-norm` length constant; default `T`.

    Returns:
        0-dim tensor, dtype of `loss` promoted to at least float32. 0 (not NaN) when nothing is masked in.
    """
    fn = LOSS_AGGREGATIONS.get(mode)
    if loss.dim() != 2 or loss.shape != mask.shape:
        raise ValueError(f"expected loss and mask of one shape [N, T]; got {tuple(loss.shape)} and {tuple(mask.shape)}")
    dtype = torch.promote_types(loss.dtype, torch.float32)
    mask = mask.to(dtype)
    masked = torch.where(mask != 0, loss.to(dtype) * mask, torch.zeros((), dtype=dtype, device=loss.device))
    return fn(masked, mask, num_tokens=num_tokens, num_seqs=num_seqs, norm_length=norm_length)


def global_counts(mask: Tensor) -> tuple[Tensor, Tensor]:
    """`(num_tokens, num_seqs)` of a whole minibatch `mask[N, T]`, to pass to each of its micro-batches."""
    tokens_per_seq = mask.to(torch.float32).sum(dim=-1)
    return tokens_per_seq.sum(), (tokens_per_seq > 0).sum().to(torch.float32)


def _safe_denominator(count: Count, default: Tensor, what: str) -> Tensor:
    """`count` (or `default`) as a tensor, with 0 replaced by 1: a zero count means a zero numerator."""
    if count is None:
        value = default
    else:
        # Python numbers are checked here; tensors are not, because reading a GPU value would force a device
        # sync on every micro-batch.
        if not isinstance(count, Tensor) and count < 0:
            raise ValueError(f"{what} must be >= 0, got {count}")
        value = torch.as_tensor(count, dtype=default.dtype, device=default.device)
        if value.dim() != 0:
            raise ValueError(f"{what} must be a scalar, got shape {tuple(value.shape)}")
    return torch.where(value > 0, value, torch.ones_like(value))


@LOSS_AGGREGATIONS.register("token-mean")
def token_mean(masked: Tensor, mask: Tensor, *, num_tokens: Count, **_: object) -> Tensor:
    """`sum(loss * mask) / num_tokens`; `masked` is `loss * mask` `[N, T]`."""
    return masked.sum() / _safe_denominator(num_tokens, mask.sum(), "num_tokens")


@LOSS_AGGREGATIONS.register("seq-mean-token-mean")
def seq_mean_token_mean(masked: Tensor, mask: Tensor, *, num_seqs: Count, **_: object) -> Tensor:
    """`sum_i (sum_t loss * mask / sum_t mask) / num_seqs`; empty rows contribute 0."""
    tokens_per_seq = mask.sum(dim=-1)
    seq_means = masked.sum(dim=-1) / torch.where(tokens_per_seq > 0, tokens_per_seq, torch.ones_like(tokens_per_seq))
    non_empty = (tokens_per_seq > 0).sum().to(masked.dtype)
    return seq_means.sum() / _safe_denominator(num_seqs, non_empty, "num_seqs")


@LOSS_AGGREGATIONS.register("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(
    masked: Tensor, mask: Tensor, *, num_seqs: Count, norm_length: int | float | None, **_: object
) -> Tensor:
    """`sum(loss * mask) / (num_seqs * norm_length)` (Dr. GRPO); `norm_length` defaults to `T`."""
    length = max(masked.shape[1], 1) if norm_length is None else norm_length
    if length <= 0:
        raise ValueError(f"norm_length must be > 0, got {length}")
    non_empty = (mask.sum(dim=-1) > 0).sum().to(masked.dtype)
    return masked.sum() / (_safe_denominator(num_seqs, non_empty, "num_seqs") * length)
