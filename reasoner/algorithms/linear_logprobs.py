"""Token log-probs and entropies straight from hidden states: `[N, T, V]` logits are never materialised.

At real shapes the output head dominates memory: one 4,096-token answer with Qwen's V = 151,936 has 2.5 GB of
float32 logits, and autograd keeps them (and as much again for their gradient). RL needs only two numbers per
position from them, the log-prob of the sampled token and the entropy, so this computes

    z = softcap(h @ W^T + b) * scale / temperature          # [M, V], one block at a time
    logprob = z[token] - logsumexp(z),   entropy = logsumexp(z) - sum_j softmax(z)_j z_j

over blocks of `block_rows` positions x `block_vocab` vocabulary entries, with an online (streaming) logsumexp
across vocabulary blocks, inside a custom `torch.autograd.Function` that saves only `logsumexp` and the entropy
(one float each per position) and recomputes each block of logits in backward: the fused-linear-cross-entropy
idea (Liger's `fused_linear_cross_entropy`, verl's `linear_cross_entropy`). Unlike Liger's, which computes the
gradients during forward because its loss is a scalar, RL's per-token outputs get their upstream gradients only in
backward (advantages, ratios and clipping are applied outside), so backward recomputes; this costs one extra
`h @ W^T` (forward 1 matmul, backward 3: recompute, grad of hidden, grad of weight; materialised autograd: 1 + 2).

Both passes loop vocabulary-outer: a block of `W` is read (and upcast) once per pass and its float32 gradient is
complete when the inner loop over positions ends, so the extra memory is one `[block_vocab, H]` weight block, one
`[block_rows, block_vocab]` logits block (a few temporaries of it) and a `[M, H]` float32 accumulator for the
hidden states' gradient — O(block + M*H), never O(M*V). bf16 (or fp16) inputs are upcast to float32 block by block
and all arithmetic accumulates in float32; float64 stays float64 (gradcheck, exactness tests). Outputs are float32
(float64 for float64 inputs).

Simplifications: no double backward (`once_differentiable`; RL never needs it); `logit_scale`, `softcap` and
`temperature` are plain Python floats (no gradient to them); the head is a dense `[V, H]` matrix (a ZeRO-3
partitioned or quantised head must be gathered/dequantised by the caller first).
"""
from __future__ import annotations

import torch
from torch import Tensor

# (block_rows, block_vocab) per device type. CPU: 1024 x 4096 (a 16 MiB float32 logits block). Measured on the
# shared 2-core dev machine (`python scripts/bench_head.py speed --t 1024 --hidden 256 --rows 256 1024 --vocab
# 2048 4096 16384`, V = 151,936, forward + backward): 1024 x {2048, 4096, 16384} and 256 x {4096, 16384} all took
# 8.1-9.7 s (within the machine's noise; 256 x 2048: 15.7 s), the materialised path 9.6 s. CUDA (not measured, no
# GPU here): 2048 x 32768 (256 MiB float32), larger matmuls to fill the device.
DEFAULT_BLOCKS: dict[str, tuple[int, int]] = {"cpu": (1024, 4096), "default": (2048, 32768)}


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


class _Head:
    """The elementwise map raw logits -> sampling logits: `softcap(raw) * scale / temperature`, and its slope."""

    def __init__(self, logit_scale: float, softcap: float | None, temperature: float):
        self.scale = logit_scale
        self.softcap = softcap
        self.mult = logit_scale / temperature if softcap is None else softcap / temperature

    def logits(self, hb: Tensor, wc: Tensor, bc: Tensor | None, slope: bool = False) -> tuple[Tensor, Tensor | None]:
        """`z [b, v]` for hidden rows `hb [b, H]` and weight rows `wc [v, H]`; with `slope` (softcapping only),
        also `(dz/draw) / mult [b, v]`; None when `dz/draw` is the constant `mult`."""
        if self.softcap is None:
            # the constant folds into the matmul (alpha, beta): no extra pass over the [b, v] block
            if bc is not None:
                return torch.addmm(bc, hb, wc.t(), beta=self.mult, alpha=self.mult), None
            if self.mult == 1.0:
                return hb @ wc.t(), None
            return torch.addmm(hb.new_zeros(()), hb, wc.t(), beta=0.0, alpha=self.mult), None
        raw = torch.addmm(bc, hb, wc.t()) if bc is not None else hb @ wc.t()  # [b, v]
        # Gemma-2 style: cap * tanh(scale * raw / cap)
        t = raw.mul_(self.scale / self.softcap).tanh_()  # [b, v] in (-1, 1)
        # dz/draw = (1 - t^2) * scale / cap * mult: the caller multiplies by `mult`
        d = (1.0 - t * t).mul_(self.scale / self.softcap) if slope else None
        return t.mul_(self.mult), d


class _LinearLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, token_ids: Tensor, head: _Head,
                with_entropy: bool, entropy_grad: bool, block_rows: int, block_vocab: int):
        m_rows, v_size = hidden.shape[0], weight.shape[0]
        dtype = _compute_dtype(torch.promote_types(hidden.dtype, weight.dtype))
        dev = hidden.device
        run_max = torch.empty(m_rows, dtype=dtype, device=dev)  # [M] running max of z
        run_sum = torch.empty(m_rows, dtype=dtype, device=dev)  # [M] sum_j exp(z_j - max)
        run_dot = torch.empty(m_rows, dtype=dtype, device=dev) if with_entropy else None  # [M] sum exp(z-max)(z-max)
        target = torch.zeros(m_rows, dtype=dtype, device=dev)   # [M] z at the token
        for v0 in range(0, v_size, block_vocab):
            v1 = min(v0 + block_vocab, v_size)
            wc = weight[v0:v1].to(dtype)                               # [v, H]
            bc = bias[v0:v1].to(dtype) if bias is not None else None   # [v]
            for r0 in range(0, m_rows, block_rows):
                r1 = min(r0 + block_rows, m_rows)
                z, _ = head.logits(hidden[r0:r1].to(dtype), wc, bc)   # [b, v]
                ids = token_ids[r0:r1] - v0                            # [b]
                inside = (ids >= 0) & (ids < v1 - v0)
                picked = z.gather(1, ids.clamp(0, v1 - v0 - 1).unsqueeze(1)).squeeze(1)
                target[r0:r1] += torch.where(inside, picked, torch.zeros_like(picked))
                block_max = z.amax(dim=1)                              # [b]
                if v0 == 0:
                    new_max = block_max
                else:
                    new_max = torch.maximum(run_max[r0:r1], block_max)
                shifted = z.sub_(new_max.unsqueeze(1))                 # [b, v] z - max, in place
                e = shifted.exp()                                      # [b, v]
                if v0 == 0:
                    run_sum[r0:r1] = e.sum(dim=1)
                    if run_dot is not None:
                        run_dot[r0:r1] = (e * shifted).sum(dim=1)
                else:
                    delta = run_max[r0:r1] - new_max                   # [b] <= 0
                    decay = delta.exp()
                    if run_dot is not None:
                        # the old terms are re-expressed against the new max: (z - m_new) = (z - m_old) + delta
                        run_dot[r0:r1] = decay * (run_dot[r0:r1] + delta * run_sum[r0:r1]) + (e * shifted).sum(1)
                    run_sum[r0:r1] = decay * run_sum[r0:r1] + e.sum(dim=1)
                run_max[r0:r1] = new_max
        lse = run_max + run_sum.log()                                  # [M]
        logprobs = target - lse                                        # [M]
        entropy = run_sum.log() - run_dot / run_sum if run_dot is not None else logprobs.new_empty(0)  # [M]
        ctx.save_for_backward(hidden, weight, bias, token_ids, lse, entropy)
        ctx.head, ctx.blocks = head, (block_rows, block_vocab)
        ctx.entropy_grad = with_entropy and entropy_grad
        ctx.set_materialize_grads(False)
        if not ctx.entropy_grad:
            ctx.mark_non_differentiable(entropy)
        return logprobs, entropy

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_lp: Tensor | None, g_ent: Tensor | None):
        hidden, weight, bias, token_ids, lse, entropy = ctx.saved_tensors
        if not ctx.entropy_grad:
            g_ent = None
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        if (g_lp is None and g_ent is None) or not (need_h or need_w or need_b):
            return None, None, None, None, None, None, None, None, None
        head: _Head = ctx.head
        block_rows, block_vocab = ctx.blocks
        m_rows, v_size = hidden.shape[0], weight.shape[0]
        dtype = lse.dtype
        g_lp = g_lp.to(dtype) if g_lp is not None else None
        g_ent = g_ent.to(dtype) if g_ent is not None else None
        grad_h = torch.zeros(hidden.shape, dtype=dtype, device=hidden.device) if need_h else None  # [M, H]
        grad_w = torch.empty_like(weight) if need_w else None                                    # [V, H]
        grad_b = torch.empty_like(bias) if need_b else None                                      # [V]
        for v0 in range(0, v_size, block_vocab):
            v1 = min(v0 + block_vocab, v_size)
            wc = weight[v0:v1].to(dtype)
            bc = bias[v0:v1].to(dtype) if bias is not None else None
            gw = torch.zeros_like(wc) if need_w else None              # [v, H] float32 accumulator
            gb = torch.zeros(v1 - v0, dtype=dtype, device=wc.device) if need_b else None
            for r0 in range(0, m_rows, block_rows):
                r1 = min(r0 + block_rows, m_rows)
                hb = hidden[r0:r1].to(dtype)                           # [b, H]
                z, slope = head.logits(hb, wc, bc, slope=True)         # [b, v]
                logp = z.sub_(lse[r0:r1].unsqueeze(1))                 # [b, v] in place
                p = logp.exp()
                # d logprob/dz_j = onehot_j - p_j;  d entropy/dz_j = -p_j (log p_j + H)
                if g_ent is not None:
                    dz = logp.add_(entropy[r0:r1].unsqueeze(1)).mul_(g_ent[r0:r1].unsqueeze(1))
                    if g_lp is not None:
                        dz.add_(g_lp[r0:r1].unsqueeze(1))
                    dz.mul_(p).neg_()
                    del p
                else:
                    assert g_lp is not None
                    dz = p.mul_(g_lp[r0:r1].unsqueeze(1)).neg_()
                if g_lp is not None:
                    ids = token_ids[r0:r1] - v0
                    rows = ((ids >= 0) & (ids < v1 - v0)).nonzero().squeeze(1)
                    dz.index_put_((rows, ids[rows]), g_lp[r0:r1][rows], accumulate=True)
                # d raw = dz * slope * mult; the constant `mult` goes into the matmuls' alpha
                draw = dz.mul_(slope) if slope is not None else dz  # [b, v]
                if grad_h is not None:
                    grad_h[r0:r1].addmm_(draw, wc, alpha=head.mult)
                if gw is not None:
                    gw.addmm_(draw.t(), hb, alpha=head.mult)
                if gb is not None:
                    gb.add_(draw.sum(dim=0), alpha=head.mult)
            if grad_w is not None and gw is not None:
                grad_w[v0:v1] = gw
            if grad_b is not None and gb is not None:
                grad_b[v0:v1] = gb
        grad_h_out = grad_h.to(hidden.dtype) if grad_h is not None else None
        return grad_h_out, grad_w, grad_b, None, None, None, None, None, None


def default_blocks(device: torch.device) -> tuple[int, int]:
    return DEFAULT_BLOCKS.get(device.type, DEFAULT_BLOCKS["default"])


def linear_token_logprobs(
    hidden: Tensor,
    weight: Tensor,
    token_ids: Tensor,
    *,
    bias: Tensor | None = None,
    temperature: float = 1.0,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    with_entropy: bool = False,
    entropy_grad: bool = False,
    block_rows: int | None = None,
    block_vocab: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """`log softmax(z)[token_ids]` and (optionally) the entropy of `softmax(z)`, where
    `z = softcap(hidden @ weight^T + bias) * logit_scale / temperature`, without materialising `z`.

    Args:
        hidden: `[N, T, H]` or `[M, H]` final hidden states (after the model's last norm); position `i` predicts
            `token_ids[i]` (shift before calling). Any float dtype; gradients flow to it.
        weight: `[V, H]` the output head (for tied embeddings, the embedding parameter itself: its gradient
            accumulates with the embedding's). Gradients flow to it.
        token_ids: `[N, T]` / `[M]` integer ids in `[0, V)`.
        bias: optional `[V]` head bias.
        temperature: the sampling temperature (> 0), as in `logits / temperature`.
        logit_scale: a constant the model multiplies its logits by (Cohere's `logit_scale`; Granite's
            `1 / logits_scaling`).
        softcap: Gemma-2's `final_logit_softcapping`: logits become `softcap * tanh(logits / softcap)` (applied
            after `logit_scale`, before the temperature, as the model and sampler do).
        with_entropy: also return the entropy per position.
        entropy_grad: the entropy carries gradient (an entropy bonus); implies `with_entropy`. Otherwise the
            entropy is returned non-differentiable.
        block_rows, block_vocab: block sizes (memory / speed trade-off); None: `DEFAULT_BLOCKS` for the device.

    Returns:
        `(logprobs, entropy)`, each shaped like `token_ids`, float32 (float64 for float64 inputs); entropy is None
        unless requested.
    """
    with_entropy = with_entropy or entropy_grad
    if hidden.dim() not in (2, 3) or hidden.shape[:-1] != token_ids.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} must be [N, T, H] or [M, H] with token_ids "
                         f"{tuple(token_ids.shape)} equal to its leading dimensions")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"weight must be [V, H] with H = {hidden.shape[-1]}, got {tuple(weight.shape)}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias must be [V] = [{weight.shape[0]}], got {tuple(bias.shape)}")
    if not (hidden.is_floating_point() and weight.is_floating_point()):
        raise ValueError("hidden and weight must be floating point")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if softcap is not None and not softcap > 0:
        raise ValueError(f"softcap must be > 0 or None, got {softcap}")
    if not logit_scale > 0:
        raise ValueError(f"logit_scale must be > 0, got {logit_scale}")
    ids = token_ids.reshape(-1).long()  # [M]
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= weight.shape[0]):
        raise ValueError(f"token ids must lie in [0, {weight.shape[0]}), got [{int(ids.min())}, {int(ids.max())}]")
    rows_default, vocab_default = default_blocks(hidden.device)
    block_rows = int(block_rows or rows_default)
    block_vocab = int(block_vocab or vocab_default)
    if block_rows < 1 or block_vocab < 1:
        raise ValueError(f"block sizes must be >= 1, got {block_rows} x {block_vocab}")
    flat = hidden.reshape(-1, hidden.shape[-1])  # [M, H]
    head = _Head(float(logit_scale), float(softcap) if softcap is not None else None, float(temperature))
    logprobs, entropy = _LinearLogprobs.apply(flat, weight, bias, ids, head, with_entropy, entropy_grad,
                                              block_rows, block_vocab)
    shape = token_ids.shape
    return logprobs.view(shape), (entropy.view(shape) if with_entropy else None)
