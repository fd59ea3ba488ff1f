"""Token log-probs and entropies from logits `[N, T, V]`, fast and in bounded extra memory.

These sit on the trainer's hot path: logits are the largest tensor of a step (`N * T * V`; 64 x 1024 x 151k
is 40 GB in float32), and the naive `torch.log_softmax(logits.float()).gather(...)` materialises a full float32
copy of them and, under autograd, keeps it alive until backward. Here:

- the logits are processed in blocks of at most `chunk_elements` (over N, and over T when one sequence is larger
  than a block); each block is upcast into one reused float32 workspace (bf16 arithmetic in a softmax is
  inaccurate) and every step is done in place there, so a block allocates nothing of size V;
- `token_logprobs` is `z[id] / tau - logsumexp(z / tau)`, with the logsumexp computed by hand in place;
- both are custom `autograd.Function`s that save only the logits (already alive: the model produced them) and
  one float per token (the logsumexp, and the entropy), and recompute the softmax block by block in backward,
  writing straight into the gradient's memory when the logits are float32.

Simplification: double backward (grad of grad) is not supported; nothing in RL training needs it.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

# Logits per block. CPU: 256k (1 MiB in float32), so that a block's several in-place passes run in cache; on
# the 2-core dev machine, single-thread CPU time for V = 1k, 32k and 152k vocabularies was lowest at 2^16-2^18
# and 1.2-1.8x higher at 2^22 (`python -m reasoner.algorithms.benchmark` measures it against peers). Other
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


class _Workspace:
    """One block-sized float buffer, reused by every block: in-place ops then allocate nothing per block."""

    def __init__(self, numel: int, dtype: torch.dtype, device: torch.device) -> None:
        self.flat = torch.empty(numel, dtype=dtype, device=device)

    def view(self, shape: torch.Size) -> Tensor:
        return self.flat[: shape.numel()].view(shape)


def _largest_block(logits: Tensor, chunk_elements: int) -> int:
    n, t, v = logits.shape
    rows, cols = next(_blocks(n, t, v, chunk_elements), (slice(0, 0), slice(None)))
    return logits[rows, cols].numel()


def _load_scaled(dest: Tensor, src: Tensor, temperature: float) -> Tensor:
    """`dest <- src / temperature` (upcast), in place."""
    dest.copy_(src)
    return dest.div_(temperature) if temperature != 1.0 else dest


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, token_ids: Tensor, temperature: float, chunk_elements: int) -> Tensor:
        n, t, v = logits.shape
        dtype = _compute_dtype(logits.dtype)
        out = torch.empty((n, t), dtype=dtype, device=logits.device)
        lse = torch.empty((n, t), dtype=dtype, device=logits.device)
        work = _Workspace(_largest_block(logits, chunk_elements), dtype, logits.device)
        for rows, cols in _blocks(n, t, v, chunk_elements):
            src = logits[rows, cols]
            z = _load_scaled(work.view(src.shape), src, temperature)
            picked = z.gather(-1, token_ids[rows, cols].unsqueeze(-1)).squeeze(-1)
            # logsumexp by hand, in place: torch.logsumexp allocates a block-sized temporary
            zmax = z.amax(dim=-1, keepdim=True)
            block_lse = z.sub_(zmax).exp_().sum(dim=-1).log_().add_(zmax.squeeze(-1))
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
        # float32 logits: compute straight into the gradient's memory; half types: in a float32 workspace
        direct = grad_logits.dtype == lse.dtype
        work = None if direct else _Workspace(_largest_block(logits, ctx.chunk_elements), lse.dtype, logits.device)
        # d(z_id/tau - lse(z/tau))/dz = (onehot(id) - softmax(z/tau)) / tau
        for rows, cols in _blocks(n, t, v, ctx.chunk_elements):
            src = logits[rows, cols]
            g = grad_out[rows, cols].to(lse.dtype).unsqueeze(-1)
            if tau != 1.0:
                g = g / tau
            p = _load_scaled(grad_logits[rows, cols] if direct else work.view(src.shape), src, tau)
            p.sub_(lse[rows, cols].unsqueeze(-1)).exp_().mul_(-g)
            p.scatter_add_(-1, token_ids[rows, cols].unsqueeze(-1), g)
            if not direct:
                grad_logits[rows, cols] = p
        return grad_logits, None, None, None


class _Entropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float, chunk_elements: int) -> Tensor:
        n, t, v = logits.shape
        dtype = _compute_dtype(logits.dtype)
        lowest = torch.finfo(dtype).min
        out = torch.empty((n, t), dtype=dtype, device=logits.device)
        lse = torch.empty((n, t), dtype=dtype, device=logits.device)
        largest = _largest_block(logits, chunk_elements)
        work, exp_work = _Workspace(largest, dtype, logits.device), _Workspace(largest, dtype, logits.device)
        for rows, cols in _blocks(n, t, v, chunk_elements):
            src = logits[rows, cols]
            z = _load_scaled(work.view(src.shape), src, temperature)
            zmax = z.amax(dim=-1, keepdim=True)
            # shifted logits; -inf (a masked vocabulary entry) becomes the lowest finite float so that its
            # weight exp(.) = 0 times its value is 0 rather than 0 * -inf = NaN
            z.sub_(zmax).clamp_(min=lowest)
            e = torch.exp(z, out=exp_work.view(src.shape))
            total = e.sum(dim=-1)
            # H = log sum e - sum(e z) / sum e, with z the shifted logits
            log_total = total.log()
            out[rows, cols] = log_total - e.mul_(z).sum(dim=-1) / total  # in place: no [.., V] temporary
            lse[rows, cols] = log_total + zmax.squeeze(-1)
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
        lowest = torch.finfo(lse.dtype).min
        grad_logits = torch.empty_like(logits)
        direct = grad_logits.dtype == lse.dtype
        largest = _largest_block(logits, ctx.chunk_elements)
        work = None if direct else _Workspace(largest, lse.dtype, logits.device)
        exp_work = _Workspace(largest, lse.dtype, logits.device)
        # dH/dz_j = -p_j (log p_j + H) / tau
        for rows, cols in _blocks(n, t, v, ctx.chunk_elements):
            src = logits[rows, cols]
            g = grad_out[rows, cols].to(lse.dtype).unsqueeze(-1)
            log_p = _load_scaled(grad_logits[rows, cols] if direct else work.view(src.shape), src, tau)
            log_p.sub_(lse[rows, cols].unsqueeze(-1)).clamp_(min=lowest)
            p = torch.exp(log_p, out=exp_work.view(src.shape))
            grad = log_p.add_(entropy[rows, cols].unsqueeze(-1)).mul_(p).mul_(-g / tau if tau != 1.0 else -g)
            if not direct:
                grad_logits[rows, cols] = grad
        return grad_logits, None, None


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
