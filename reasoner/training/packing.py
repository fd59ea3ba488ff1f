"""Padding-free (packed) forward: the sequences of a micro-batch in one row, per-sequence positions, exact attention.

A padded micro-batch `[N, P + T]` computes every layer on `N * (P + T)` positions; with long-tailed answer lengths
most of them are padding. Here the real tokens of the N sequences are concatenated into one row `[1, L]` with
position ids restarting for each sequence (the transformers packed-sequence convention), attention is restricted
to each sequence, and only the hidden states that predict a response token are sent to the fused output head
(`linear_token_logprobs`), so neither padding nor prompt positions reach the `V`-sized head.

Attention. transformers 5.x builds a block-diagonal causal mask from `position_ids` when `attention_mask` is None
and there is no cache (`masking_utils.find_packed_sequence_indices`) for sdpa and eager — exact, but a dense
`[L, L]` mask and `L^2` attention work, and flash-attention varlen is GPU-only. `PACKED_ATTENTION` is a registered
attention implementation that instead runs one `scaled_dot_product_attention` call per segment (cost: the sum of
the segments' squares), reading the segment plan from a forward keyword (so gradient checkpointing, which replays
the layer with its keywords, stays exact); without a plan it is plain sdpa, so generation and every other forward
of a model switched to it are unchanged.

Shared prompts. A segment may name a prefix it attends to in full: with `share_prompts`, each GRPO group's prompt
is packed once, followed by its G responses, each a segment whose prefix is the prompt (keys of the prompt, then
its own causal block — the bottom-right-aligned causal mask of a KV cache). Positions of every response continue
from the prompt's end, as in generation. This equals G separate `[prompt | response]` sequences exactly (tested),
costs prompt tokens once per group, needs no KV cache (so it works under gradient checkpointing) and no `[L, L]`
mask. The same plan maps onto flash-attention varlen (`cu_seqlens_k` segments `[prompt | response]` with
bottom-right causal) or a flex-attention block mask on GPUs; neither is implemented here (no GPU to test on).

The last token of a response predicts nothing, so it is not part of the packed input (one token less per row).

Simplifications: sliding-window and attention-softcapping models are refused in a packed call (no mask for
them here); batch size of the packed call is 1.
"""
from __future__ import annotations

import contextvars
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from reasoner.training.fused_head import OutputHead, _unwrap, body_hidden_states, find_output_head, head_token_logprobs

PACKED_ATTENTION = "reasoner_packed_sdpa"
_PLAN_KWARG = "packed_plan"
_PACKED_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar("packed_call", default=False)


@dataclass(frozen=True)
class Segment:
    """Queries `[start, end)` of the packed row attend causally to themselves and fully to `[prefix_start,
    prefix_end)` (empty: no prefix)."""

    start: int
    end: int
    prefix_start: int = 0
    prefix_end: int = 0


@dataclass
class PackedBatch:
    """N sequences packed into one row, and where each response token's prediction is."""

    input_ids: Tensor            # [1, L] long: the real tokens (each response without its last token)
    position_ids: Tensor         # [1, L] long: per-sequence positions, as in the padded layout
    segments: list[Segment]      # attention plan, in row order, covering [0, L)
    target_index: Tensor         # [M] long: packed position whose hidden state predicts response token m
    target_ids: Tensor           # [M] long: that response token
    target_row: Tensor           # [M] long: its sequence (0..N-1)
    target_col: Tensor           # [M] long: its response position (0..T-1)
    num_rows: int                # N
    width: int                   # T: response width of the unpacked [N, T] outputs
    shared_groups: int = 0       # groups whose prompt is packed once

    @property
    def num_tokens(self) -> int:
        return self.input_ids.shape[1]

    @property
    def has_prefixes(self) -> bool:
        return any(s.prefix_end > s.prefix_start for s in self.segments)


def _as_list(x: Sequence[int] | Tensor) -> list[int]:
    return x.tolist() if isinstance(x, Tensor) else list(x)


def pack_sequences(prompts: Sequence[Sequence[int] | Tensor], responses: Sequence[Sequence[int] | Tensor], *,
                   group_size: int = 1, share_prompts: bool = False, width: int | None = None,
                   device: torch.device | str = "cpu") -> PackedBatch:
    """Pack `[prompt_i | response_i]` (real tokens, no padding) into one row.

    With `share_prompts`, rows come in contiguous groups of `group_size`; a group whose rows have identical prompts
    has its prompt packed once (any other group is packed row by row). `width` (default: the longest response)
    sets T of the unpacked outputs.
    """
    n = len(prompts)
    if len(responses) != n:
        raise ValueError(f"{n} prompts but {len(responses)} responses")
    prompts_l = [_as_list(p) for p in prompts]
    responses_l = [_as_list(r) for r in responses]
    if any(len(p) == 0 for p in prompts_l):
        raise ValueError("every prompt needs at least one token (it predicts the first response token)")
    t_width = max((len(r) for r in responses_l), default=0) if width is None else width
    if any(len(r) > t_width for r in responses_l):
        raise ValueError(f"a response is longer than width={t_width}")
    g = group_size if share_prompts and group_size > 1 and n % group_size == 0 else 1
    tokens: list[int] = []
    positions: list[int] = []
    segments: list[Segment] = []
    t_index: list[int] = []
    t_ids: list[int] = []
    t_row: list[int] = []
    t_col: list[int] = []
    shared = 0

    def add_response(row: int, prompt_last: int, position0: int, prefix: tuple[int, int]) -> None:
        """Response `row` after a prompt whose last token is at `prompt_last`; positions from `position0`."""
        resp = responses_l[row]
        if not resp:
            return
        start = len(tokens)
        body = resp[:-1]  # the last token predicts nothing
        tokens.extend(body)
        positions.extend(range(position0, position0 + len(body)))
        if body:
            if prefix[1] > prefix[0]:
                segments.append(Segment(start, start + len(body), *prefix))
            elif segments and segments[-1].end == start:  # extends the row's own [prompt | ...] segment
                segments[-1] = Segment(segments[-1].start, start + len(body))
        t_index.extend([prompt_last, *range(start, start + len(body))])
        t_ids.extend(resp)
        t_row.extend([row] * len(resp))
        t_col.extend(range(len(resp)))

    for first in range(0, n, g):
        rows = range(first, first + g)
        if g > 1 and all(prompts_l[i] == prompts_l[first] for i in rows):
            shared += 1
            p0, prompt = len(tokens), prompts_l[first]
            tokens.extend(prompt)
            positions.extend(range(len(prompt)))
            segments.append(Segment(p0, p0 + len(prompt)))
            for i in rows:
                add_response(i, p0 + len(prompt) - 1, len(prompt), (p0, p0 + len(prompt)))
        else:
            for i in rows:
                p0, prompt = len(tokens), prompts_l[i]
                tokens.extend(prompt)
                positions.extend(range(len(prompt)))
                segments.append(Segment(p0, p0 + len(prompt)))
                add_response(i, p0 + len(prompt) - 1, len(prompt), (0, 0))

    def long(x: list[int]) -> Tensor:
        return torch.tensor(x, dtype=torch.long, device=device)

    return PackedBatch(input_ids=long(tokens).unsqueeze(0), position_ids=long(positions).unsqueeze(0),
                       segments=segments, target_index=long(t_index), target_ids=long(t_ids), target_row=long(t_row),
                       target_col=long(t_col), num_rows=n, width=t_width, shared_groups=shared)


def pack_train_batch(batch, *, share_prompts: bool = True) -> PackedBatch:
    """`pack_sequences` of a `TrainBatch` (left-padded prompt | right-padded response): its real tokens, its
    response width, its group size (prompts shared only where a group's prompts are identical)."""
    t = batch.response_width
    p_width = batch.input_ids.shape[1] - t
    ids, mask = batch.input_ids.cpu(), batch.attention_mask.cpu().bool()
    prompts = [ids[i, :p_width][mask[i, :p_width]] for i in range(batch.size)]
    responses = [ids[i, p_width:][mask[i, p_width:]] for i in range(batch.size)]
    return pack_sequences(prompts, responses, group_size=batch.group_size, share_prompts=share_prompts, width=t,
                          device=batch.input_ids.device)


def unpack_responses(values: Tensor, packed: PackedBatch) -> Tensor:
    """`[M]` per-response-token values -> `[N, T]` (zeros where there is no token); differentiable."""
    out = values.new_zeros((packed.num_rows, packed.width))
    return out.index_put((packed.target_row, packed.target_col), values)


# ---- attention ----------------------------------------------------------------------------------------------------

def packed_sdpa_attention(module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                          dropout: float = 0.0, scaling: float | None = None, **kwargs) -> tuple[Tensor, None]:
    """A transformers attention function: per-segment sdpa when a `packed_plan` keyword is given, else sdpa.

    `query [1, heads, L, d]`, `key`/`value [1, kv_heads, L, d]`; returns `[1, L, heads, d]` as transformers'
    attention functions do."""
    plan: list[Segment] | None = kwargs.pop(_PLAN_KWARG, None)
    if plan is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        raise ValueError(f"a packed call needs one row and no cache, got query {tuple(query.shape)}, key "
                         f"{tuple(key.shape)}")
    window = kwargs.get("sliding_window")
    if window is not None and any(max(s.end - s.start + s.prefix_end - s.prefix_start, 0) > window for s in plan):
        raise NotImplementedError("sliding-window attention is not supported in a packed call")
    if kwargs.get("softcap") is not None:
        raise NotImplementedError("attention softcapping is not supported in a packed call")
    gqa = query.shape[1] != key.shape[1]
    outs = []
    for s in plan:
        q, k, v = query[:, :, s.start:s.end], key[:, :, s.start:s.end], value[:, :, s.start:s.end]
        if s.prefix_end > s.prefix_start:
            p = s.prefix_end - s.prefix_start
            k = torch.cat([key[:, :, s.prefix_start:s.prefix_end], k], dim=2)
            v = torch.cat([value[:, :, s.prefix_start:s.prefix_end], v], dim=2)
            # bottom-right causal: query i sees the whole prefix and its own keys 0..i
            allowed = torch.ones(s.end - s.start, p + s.end - s.start, dtype=torch.bool, device=q.device).tril(p)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout, scale=scaling,
                                               enable_gqa=gqa)
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout, scale=scaling,
                                               enable_gqa=gqa)
        outs.append(o)
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def _packed_mask(*args, **kwargs):
    """Mask factory for `PACKED_ATTENTION`: none in a packed call (the plan replaces it), else sdpa's."""
    if _PACKED_CALL.get():
        return None
    from transformers.masking_utils import sdpa_mask
    return sdpa_mask(*args, **kwargs)


def register_packed_attention() -> str:
    """Register `PACKED_ATTENTION` with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface
    AttentionInterface.register(PACKED_ATTENTION, packed_sdpa_attention)
    AttentionMaskInterface.register(PACKED_ATTENTION, _packed_mask)
    return PACKED_ATTENTION


def enable_packed_attention(model) -> None:
    """Switch `model` to `PACKED_ATTENTION`: sdpa everywhere, per-segment attention in packed calls."""
    register_packed_attention()
    _unwrap(model).set_attn_implementation(PACKED_ATTENTION)


@contextmanager
def _packed_call():
    token = _PACKED_CALL.set(True)
    try:
        yield
    finally:
        _PACKED_CALL.reset(token)


def packed_hidden_states(model, packed: PackedBatch) -> Tensor:
    """`[1, L, H]` final hidden states of the packed row.

    With `PACKED_ATTENTION` the segment plan is passed to the attention; with another implementation, a plan
    without prefixes relies on transformers' own packed-sequence detection from `position_ids` (flash-attention
    varlen on GPUs; a dense block-diagonal mask for sdpa/eager)."""
    impl = _unwrap(model).config._attn_implementation
    if impl == PACKED_ATTENTION:
        with _packed_call():
            return body_hidden_states(model, packed.input_ids, None, packed.position_ids,
                                      **{_PLAN_KWARG: packed.segments})
    if packed.has_prefixes:
        raise ValueError(f"shared prompts in a packed row need attention {PACKED_ATTENTION!r} "
                         f"(enable_packed_attention(model)); the model uses {impl!r}")
    return body_hidden_states(model, packed.input_ids, None, packed.position_ids)


def packed_forward_logprobs(model, packed: PackedBatch, temperature: float = 1.0, *, entropy_grad: bool = False,
                            head: OutputHead | None = None, block_rows: int | None = None,
                            block_vocab: int | None = None) -> tuple[Tensor, Tensor]:
    """`(logprobs [N, T], entropy [N, T])` of the packed responses, from the body's hidden states and the fused
    head: the same outputs as `reasoner.training.logprobs.forward_logprobs` on the padded batch. The entropy
    carries gradient only with `entropy_grad`."""
    head = head or find_output_head(model)
    hidden = packed_hidden_states(model, packed)[0, packed.target_index]  # [M, H]
    logprobs, entropy = head_token_logprobs(head, hidden, packed.target_ids, temperature=temperature,
                                            with_entropy=True, entropy_grad=entropy_grad, block_rows=block_rows,
                                            block_vocab=block_vocab)
    assert entropy is not None
    return unpack_responses(logprobs, packed), unpack_responses(entropy, packed)


def packed_batch_logprobs(model, batch, temperature: float = 1.0, *, entropy_grad: bool = False,
                          share_prompts: bool = True) -> tuple[Tensor, Tensor]:
    """Drop-in for `forward_logprobs(model, batch, temperature, entropy_grad=...)` on a `TrainBatch`: packs it
    (each group's prompt once where the group's prompts are identical and `share_prompts`) and runs
    `packed_forward_logprobs`. Needs `enable_packed_attention(model)` for shared prompts."""
    return packed_forward_logprobs(model, pack_train_batch(batch, share_prompts=share_prompts), temperature,
                                   entropy_grad=entropy_grad)


class PackedScorer(torch.nn.Module):
    """`forward(batch, temperature, entropy_grad) -> (logprobs [N, T], entropy [N, T])` as a module over the causal
    LM, so that a DDP / DeepSpeed wrapper can wrap it: calling the LM's decoder directly from outside the
    wrapper's forward skips DDP's `prepare_for_backward`, and its gradients would then not be all-reduced."""

    def __init__(self, lm: torch.nn.Module, *, share_prompts: bool = True):
        super().__init__()
        self.lm = lm
        self.share_prompts = share_prompts

    def forward(self, batch, temperature: float = 1.0, entropy_grad: bool = False) -> tuple[Tensor, Tensor]:
        return packed_batch_logprobs(self.lm, batch, temperature, entropy_grad=entropy_grad,
                                     share_prompts=self.share_prompts)
