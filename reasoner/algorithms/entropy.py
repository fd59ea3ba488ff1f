"""Token log-probs and entropies from logits `[N, T, V]`, fast and in bounded extra memory.

These sit on the trainer's hot path: logits are the largest tensor of a step (`N * T * V`; 64 x 1024 x 151k
is 40 GB in float32), and the naive `torch.log_softmax(logits.float()).gather(...)` materialises a full float32
copy of them and, under autograd, keeps it alive until backward. Here:

- the logits are processed in blocks of at most `chunk_elements` (over N, and over T when one sequence is larger
  than a block), each through PyTorch's fused (log-)softmax kernel, upcasting to float32 as it reads (softmax
  arithmetic in bf16 is inaccurate); a block's temporaries are freed before the next block;
- both are custom `autograd.Function`s that save only the logits (already alive: the model produced them; plus
  the entropy, one float per token) and recompute the softmax block by block in backward, writing the logits'
  gradient in the logits' dtype. Peak extra memory is then the gradient itself plus a few blocks.

Simplification: double backward (grad of grad) is not supported; nothing in RL training needs it.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

# Logits per block. CPU: 256k (1 MiB in float32), so that a block's few passes run in cache (the sizes tried are
# in docs/ARCHITECTURE.md, "Runtime settings"; `python scripts/bench_logits.py` measures against peers). Other
# devices (CUDA): 64M, where fewer, larger kernels win and the caching allocator makes the size cheap.
DEFAULT_CHUNK_ELEMENTS = {"cpu": 1 << 18, "default": 1 << 26}


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, float64 stays float64 (gradcheck)."""
    return torch.promote_types(dtype, torch.float32)


def _blocks(n: int, t: int, v: int, chunk_elements: int) -> Iterator[tuple[slice, slice]]:
    """Index blocks `(rows of N, columns of T)` of at most ~`chunk_elements` logits each (the first is largest)."""
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


def _scaled(src: Tensor, temperature: float, dtype: torch.dtype) -> Tensor:
    """`src / temperature`, upcast to `dtype` *before* dividing (bf16 division would round); `src` when tau = 1."""
    return src.to(dtype, copy=True).div_(temperature) if temperature != 1.0 else src


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, token_ids: Tensor, temperature: float, chunk_elements: int) -> Tensor:
        n, t, v = logits.shape
        dtype = _compute_dtype(logits.dtype)
        out = torch.empty((n, t), dtype=dtype, device=logits.device)
        for rows, cols in _blocks(n, t, v, chunk_elements):
            z = _scaled(logits[rows, cols], temperature, dtype)
            # the fused log_softmax kernel (upcasting as it reads) was ~2x faster on CPU than a hand-written
            # in-place logsumexp; its block-sized result is freed at once and reused by the next block
            logp = torch.log_softmax(z, dim=-1, dtype=dtype)
            out[rows, cols] = logp.gather(-1, token_ids[rows, cols].unsqueeze(-1)).squeeze(-1)
        ctx.save_for_backward(logits, token_ids)
        ctx.temperature = temperature
        ctx.chunk_elements = chunk_elements
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        logits, token_ids = ctx.saved_tensors
        tau = ctx.temperature
        n, t, v = logits.shape
        dtype = _compute_dtype(logits.dtype)
        grad_logits = torch.empty_like(logits)
        # d(z_id/tau - lse(z/tau))/dz = (onehot(id) - softmax(z/tau)) / tau
        for rows, cols in _blocks(n, t, v, ctx.chunk_elements):
            g = grad_out[rows, cols].to(dtype).unsqueeze(-1)
            if tau != 1.0:
                g = g / tau
            p = torch.softmax(_scaled(logits[rows, cols], tau, dtype), dim=-1, dtype=dtype)
            p.mul_(-g).scatter_add_(-1, token_ids[rows, cols].unsqueeze(-1), g)
            grad_logits[rows, cols] = p
        return grad_logits, None, None, None


class _Entropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float, chunk_elements: int) -> Tensor:
        n, t, v = logits.shape
        dtype = _compute_dtype(logits.dtype)
        out = torch.empty((n, t), dtype=dtype, device=logits.device)
        for rows, cols in _blocks(n, t, v, chunk_elements):
            logp = torch.log_softmax(_scaled(logits[rows, cols], temperature, dtype), dim=-1, dtype=dtype)
            p = logp.exp()
            out[rows, cols] = -p.mul_(_finite(logp)).sum(dim=-1)
        ctx.save_for_backward(logits, out)
        ctx.temperature = temperature
        ctx.chunk_elements = chunk_elements
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        logits, entropy = ctx.saved_tensors
        tau = ctx.temperature
        n, t, v = logits.shape
        dtype = _compute_dtype(logits.dtype)
        grad_logits = torch.empty_like(logits)
        # dH/dz_j = -p_j (log p_j + H) / tau
        for rows, cols in _blocks(n, t, v, ctx.chunk_elements):
            g = grad_out[rows, cols].to(dtype).unsqueeze(-1)
            logp = torch.log_softmax(_scaled(logits[rows, cols], tau, dtype), dim=-1, dtype=dtype)
            p = logp.exp()
            grad = _finite(logp).add_(entropy[rows, cols].unsqueeze(-1)).mul_(p).mul_(-g / tau if tau != 1.0 else -g)
            grad_logits[rows, cols] = grad
        return grad_logits, None, None


def _finite(logp: Tensor) -> Tensor:
    """In place: log-probs of -inf (a masked vocabulary entry, p = 0) become the lowest finite float, so that
    `p * log p` is 0 there rather than `0 * -inf = NaN`. NaN stays NaN."""
    return logp.clamp_(min=torch.finfo(logp.dtype).min)


def _chunk(logits: Tensor, chunk_elements: int | None) -> int:
    if chunk_elements is None:
        return DEFAULT_CHUNK_ELEMENTS.get(logits.device.type, DEFAULT_CHUNK_ELEMENTS["default"])
    if chunk_elements < 1:
        raise ValueError(f"chunk_elements must be >= 1, got {chunk_elements}")
    return int(chunk_elements)


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
    chunk_elements: int | None = None,
) -> Tensor:
    """`log softmax(logits / temperature)[token_ids]`, `[N, T]` in float32 (float64 for float64 logits).

    Args:
        logits: `[N, T, V]`, any float dtype; row `t` predicts `token_ids[:, t]` (shift before calling).
        token_ids: `[N, T]` integer ids in `[0, V)`.
        temperature: the sampling temperature; logits are divided by it first, so that the log-probs match
            those of the sampler.
        chunk_elements: upper bound on the logits processed per block (memory / speed trade-off); None:
            `DEFAULT_CHUNK_ELEMENTS` for the device.
    """
    _check_logits(logits, temperature)
    if token_ids.shape != logits.shape[:2]:
        raise ValueError(f"token_ids has shape {tuple(token_ids.shape)}, expected {tuple(logits.shape[:2])}")
    return _TokenLogprobs.apply(logits, token_ids.long(), float(temperature), _chunk(logits, chunk_elements))


def entropy_from_logits(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    chunk_elements: int | None = None,
) -> Tensor:
    """Entropy of `softmax(logits / temperature)` per position, `[N, T]` in float32 (float64 for float64).

    Args:
        logits: `[N, T, V]`, any float dtype.
        temperature: entropy of the temperature-scaled distribution (1.0: the model's own).
        chunk_elements: upper bound on the logits processed per block; None: the device default.
    """
    _check_logits(logits, temperature)
    return _Entropy.apply(logits, float(temperature), _chunk(logits, chunk_elements))
