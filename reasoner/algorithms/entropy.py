"""Token log-probs and entropies from logits `[N, T, V]`, in bounded extra memory.

These sit on the trainer's hot path: logits are the largest tensor of a step (`N * T * V`, e.g. 64 x 1024 x
151k floats = 40 GB in float32), so the naive `torch.log_softmax(logits).gather(...)` — which materialises and,
under autograd, *keeps* a full float32 copy of the logits — can double the step's peak memory. Here:

- the work is done in blocks of at most `chunk_elements` logits (over N, and over T when one sequence is
  larger than a block), each upcast to float32 (bf16 logsumexp is inaccurate) and then freed;
- `token_logprobs` is `z[id] / tau - logsumexp(z / tau)`: no log-softmax copy is formed;
- both are custom `autograd.Function`s that save only the logits (already alive: the model produced them) and
  one float per token (the logsumexp, or the entropy), and recompute the softmax block by block in backward.
  The backward writes the logits' gradient directly, in the logits' dtype.

Simplification: double backward (grad of grad) is not supported; nothing in RL training needs it.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

DEFAULT_CHUNK_ELEMENTS = 1 << 25  # 32M logits per block: 128 MiB in float32


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, float64 stays float64 (gradcheck)."""
    return torch.promote_types(dtype, torch.float32)


def _blocks(n: int, t: int, v: int, chunk_elements: int) -> Iterator[tuple[slice, slice]]:
    """Index blocks `(rows of N, columns of T)` of at most ~`chunk_elements` logits each."""
    if chunk_elements < 1:
        raise ValueError(f"chunk_elements must be >= 1, got {chunk_elements}")
    per_seq = t * v
    if per_seq <= chunk_elements:
        rows = max(1, chunk_elements // max(per_seq, 1))
        for i in range(0, n, rows):
            yield slice(i, i + rows), slice(None)
    else:
        cols = max(1, chunk_elements // max(v, 1))
        for i in range(n):
            for j in range(0, t, cols):
                yield slice(i, i + 1), slice(j, j + cols)


def _scaled_block(logits: Tensor, rows: slice, cols: slice, temperature: float, copy: bool) -> Tensor:
    """`logits[rows, cols] / temperature` upcast; a private copy when `copy` (safe for in-place ops)."""
    z = logits[rows, cols].to(_compute_dtype(logits.dtype), copy=copy)
    if temperature != 1.0:
        z = z.div_(temperature) if copy else z / temperature
    return z


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, token_ids: Tensor, temperature: float, chunk_elements: int) -> Tensor:
        n, t, v = logits.shape
        dtype = _compute_dtype(logits.dtype)
        out = torch.empty((n, t), dtype=dtype, device=logits.device)
        lse = torch.empty((n, t), dtype=dtype, device=logits.device)
        for rows, cols in _blocks(n, t, v, chunk_elements):
            z = _scaled_block(logits, rows, cols, temperature, copy=False)
            block_lse = torch.logsumexp(z, dim=-1)
            picked = z.gather(-1, token_ids[rows, cols].unsqueeze(-1)).squeeze(-1)
            out[rows, cols] = picked - block_lse
            lse[rows, cols] = block_lse
        ctx.save_for_backward(logits, token_ids, lse)
        ctx.temperature = temperature
        ctx.chunk_elements = chunk_elements
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        logits, token_ids, lse = ctx.saved_tensors
        tau = ctx.temperature
        n, t, v = logits.shape
        grad_logits = torch.empty_like(logits)
        # d(z_id/tau - lse(z/tau))/dz = (onehot(id) - softmax(z/tau)) / tau
        for rows, cols in _blocks(n, t, v, ctx.chunk_elements):
            g = grad_out[rows, cols].to(lse.dtype).unsqueeze(-1)
            p = _scaled_block(logits, rows, cols, tau, copy=True)
            p.sub_(lse[rows, cols].unsqueeze(-1)).exp_().mul_(-g)
            p.scatter_add_(-1, token_ids[rows, cols].unsqueeze(-1), g)
            if tau != 1.0:
                p.div_(tau)
            grad_logits[rows, cols] = p
        return grad_logits, None, None, None


class _Entropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float, chunk_elements: int) -> Tensor:
        n, t, v = logits.shape
        dtype = _compute_dtype(logits.dtype)
        out = torch.empty((n, t), dtype=dtype, device=logits.device)
        lse = torch.empty((n, t), dtype=dtype, device=logits.device)
        for rows, cols in _blocks(n, t, v, chunk_elements):
            z = _scaled_block(logits, rows, cols, temperature, copy=False)
            block_lse = torch.logsumexp(z, dim=-1)
            p = torch.exp(z - block_lse.unsqueeze(-1))
            # H = -sum p log p; xlogy gives 0 where p = 0 (logits of -inf) instead of 0 * -inf = NaN.
            out[rows, cols] = -torch.special.xlogy(p, p).sum(dim=-1)
            lse[rows, cols] = block_lse
        ctx.save_for_backward(logits, lse, out)
        ctx.temperature = temperature
        ctx.chunk_elements = chunk_elements
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        logits, lse, entropy = ctx.saved_tensors
        tau = ctx.temperature
        n, t, v = logits.shape
        grad_logits = torch.empty_like(logits)
        # dH/dz_j = -(p_j log p_j + p_j H) / tau
        for rows, cols in _blocks(n, t, v, ctx.chunk_elements):
            g = grad_out[rows, cols].to(lse.dtype).unsqueeze(-1)
            p = _scaled_block(logits, rows, cols, tau, copy=True)
            p.sub_(lse[rows, cols].unsqueeze(-1)).exp_()
            grad = torch.special.xlogy(p, p).add_(p.mul_(entropy[rows, cols].unsqueeze(-1)))
            grad.mul_(-g / tau if tau != 1.0 else -g)
            grad_logits[rows, cols] = grad
        return grad_logits, None, None


def _check_logits(logits: Tensor, temperature: float) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must be [N, T, V], got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def token_logprobs(
    logits: Tensor,
    token_ids: Tensor,
    temperature: float = 1.0,
    *,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Tensor:
    """`log softmax(logits / temperature)[token_ids]`, `[N, T]` in float32 (float64 for float64 logits).

    Args:
        logits: `[N, T, V]`, any float dtype; row `t` predicts `token_ids[:, t]` (shift before calling).
        token_ids: `[N, T]` integer ids in `[0, V)`.
        temperature: the sampling temperature; logits are divided by it first, so that the log-probs match
            those of the sampler.
        chunk_elements: upper bound on the logits processed per block (memory / speed trade-off).
    """
    _check_logits(logits, temperature)
    if token_ids.shape != logits.shape[:2]:
        raise ValueError(f"token_ids has shape {tuple(token_ids.shape)}, expected {tuple(logits.shape[:2])}")
    return _TokenLogprobs.apply(logits, token_ids.long(), float(temperature), int(chunk_elements))


def entropy_from_logits(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Tensor:
    """Entropy of `softmax(logits / temperature)` per position, `[N, T]` in float32 (float64 for float64).

    Args:
        logits: `[N, T, V]`, any float dtype.
        temperature: entropy of the temperature-scaled distribution (1.0: the model's own).
        chunk_elements: upper bound on the logits processed per block.
    """
    _check_logits(logits, temperature)
    return _Entropy.apply(logits, float(temperature), int(chunk_elements))
