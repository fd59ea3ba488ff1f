"""Per-token log-probabilities (and entropies) of response tokens under a model: the trainer's forward pass.

`PolicyScorer` is that forward as a module — `scorer(batch, temperature, entropy_grad) -> (logprobs [N, T],
entropy [N, T])` — so the training backends can wrap it (DDP's gradient hooks and ZeRO's parameter gathering see
the whole computation). Per micro-batch it takes one of three exact paths:

- **padded, materialised logits** (the reference, `forward_logprobs`): `[prompt | response]` rows through the
  model's own forward with `logits_to_keep`, log-probs taken blockwise from the `[N, T, V]` logits
  (`reasoner.algorithms.entropy`). Each group's prompt is encoded once and its keys/values repeated for the G
  completions (a KV cache; gradients flow through it into the one prompt pass; disabled under gradient
  checkpointing, which turns the cache off).
- **padded, fused head**: the same body, then `linear_token_logprobs` on the hidden states, so the logits and
  their gradient never exist (the head is `hidden @ W_vocab`, computed block by block, recomputed in backward).
- **packed**: the micro-batch's real tokens in one row with per-sequence positions, one attention call per
  sequence, each group's prompt packed once (`reasoner.training.packing`), then the fused head on the positions
  that predict a response token: no padding, no logits, and it works under gradient checkpointing.

All three give the same values and gradients (float64 tests, 1e-6). `packed` / `fused_head` are `None` (auto),
`True` or `False`. Auto packs when a micro-batch's sequences average at least `PACK_FROM_TOKENS` real tokens
(below that, one attention call per sequence costs more on CPU than the padding it saves) and fuses the head when
the materialised logits would take more than `FUSE_ABOVE_BYTES`; both numbers are measured in docs/scaling.md.
Models whose head `reasoner.training.fused_head` does not recognise, and ZeRO-3 (its partitioned head weight
exists only inside the head module's forward) keep the reference path.
"""
from __future__ import annotations

import torch

from reasoner.algorithms import entropy_from_logits, token_logprobs
from reasoner.config import ConfigError
from reasoner.training.batch import TrainBatch
from reasoner.training.fused_head import OutputHead, find_output_head, head_token_logprobs, verify_output_head
from reasoner.training.packing import (
    PACKED_ATTENTION,
    enable_packed_attention,
    pack_train_batch,
    packed_forward_logprobs,
)

PACK_FROM_TOKENS = 256          # auto: pack micro-batches whose sequences average at least this many real tokens
FUSE_ABOVE_BYTES = 256 * 2**20  # auto: fuse the head when a micro-batch's float32 logits would exceed this


def forward_logprobs(model, batch: TrainBatch, temperature: float = 1.0, *,
                     entropy_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference path: `(logprobs [n, T], entropy [n, T])` from the model's own logits.

    Log-probs are taken from `logits / temperature`, the distribution the engine sampled from, so that on-policy
    ratios start at 1. The entropy is computed without gradient unless `entropy_grad` (an entropy bonus).
    """
    if _can_share_prompts(model, batch):
        logits = _shared_prompt_logits(model, batch)
    else:
        t = batch.response_width
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                    use_cache=False, logits_to_keep=t + 1)
        logits = out.logits[:, :-1]  # position p predicts token p + 1: drop the last kept position
    # The temperature is applied inside the blockwise kernels: no full-size scaled copy of the logits.
    logprobs = token_logprobs(logits, batch.response_ids, temperature)
    if entropy_grad:
        entropy = entropy_from_logits(logits, temperature=temperature)
    else:
        with torch.no_grad():
            entropy = entropy_from_logits(logits.detach(), temperature=temperature)
    return logprobs, entropy


class PolicyScorer(torch.nn.Module):
    """The trainer's forward over a causal LM `lm`, choosing the path per micro-batch (module docstring).

    `partitioned`: the backend partitions parameters outside module forwards (ZeRO-3): reference path only."""

    def __init__(self, lm: torch.nn.Module, *, packed: bool | None = None, fused_head: bool | None = None,
                 share_prompts: bool = True, partitioned: bool = False):
        super().__init__()
        self.lm = lm
        self.share_prompts = share_prompts
        self.head: OutputHead | None = None
        self.fuse, self.pack = fused_head, packed
        if partitioned:
            self._refuse("ZeRO-3 partitions the output head outside its own forward")
        elif fused_head is not False or packed is not False:
            try:
                verify_output_head(lm)
            except NotImplementedError as e:
                self._refuse(str(e))
        if self.pack is not False and not self._packable():
            if self.pack:
                raise ConfigError(f"optim.packed=true needs sdpa or flash attention; the model uses "
                                  f"{lm.config._attn_implementation!r}")
            self.pack = False
        if self.pack is not False and lm.config._attn_implementation in ("sdpa", None):
            enable_packed_attention(lm)

    def _refuse(self, why: str) -> None:
        if self.fuse or self.pack:
            raise ConfigError(f"optim.fused_head / optim.packed cannot be used with this model: {why}")
        self.fuse = self.pack = False

    def _packable(self) -> bool:
        return self.lm.config._attn_implementation in ("sdpa", None, PACKED_ATTENTION, "flash_attention_2")

    def plan(self, batch: TrainBatch) -> tuple[bool, bool]:
        """`(packed, fused)` for this micro-batch."""
        if self.pack is False and self.fuse is False:
            return False, False
        real = float(batch.attention_mask.sum())
        pack = self.pack if self.pack is not None else real >= PACK_FROM_TOKENS * max(batch.size, 1)
        logit_bytes = batch.size * batch.response_width * self.lm.config.get_text_config().vocab_size * 4
        fuse = pack or (self.fuse if self.fuse is not None else logit_bytes > FUSE_ABOVE_BYTES)
        return bool(pack), bool(fuse)

    def forward(self, batch: TrainBatch, temperature: float = 1.0,
                entropy_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        pack, fuse = self.plan(batch)
        if pack:
            share = self.share_prompts and self.lm.config._attn_implementation == PACKED_ATTENTION
            return packed_forward_logprobs(self.lm, pack_train_batch(batch, share_prompts=share), temperature,
                                           entropy_grad=entropy_grad, head=self._head())
        if not fuse:
            return forward_logprobs(self.lm, batch, temperature, entropy_grad=entropy_grad)
        hidden = _shared_prompt_hidden(self.lm, batch) if _can_share_prompts(self.lm, batch) else \
            _plain_hidden(self.lm, batch)
        logprobs, entropy = head_token_logprobs(self._head(), hidden, batch.response_ids, temperature=temperature,
                                                with_entropy=True, entropy_grad=entropy_grad)
        assert entropy is not None
        return logprobs, entropy

    def _head(self) -> OutputHead:
        # Looked up on each call: the parameter objects are the model's own, and cheap to find.
        return find_output_head(self.lm)


def as_scorer(model) -> torch.nn.Module:
    """`model` when it is (or wraps) a `PolicyScorer`; else the reference path over `model` as a scorer."""
    inner = model
    while hasattr(inner, "module") and isinstance(inner.module, torch.nn.Module):
        inner = inner.module
    return model if isinstance(inner, PolicyScorer) else PolicyScorer(model, packed=False, fused_head=False)


def _can_share_prompts(model, batch: TrainBatch) -> bool:
    g = batch.group_size
    return g > 1 and batch.size % g == 0 and not _checkpointing(model)


def _checkpointing(model) -> bool:
    name = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") \
        else "is_gradient_checkpointing"
    return bool(getattr(model, name, False))


def _shared_prompt_logits(model, batch: TrainBatch) -> torch.Tensor:
    """[n, T, V] response logits, each group's prompt encoded once (rows of a group share their prompt)."""
    g, t = batch.group_size, batch.response_width
    p = batch.input_ids.shape[1] - t
    heads = slice(None, None, g)  # the first row of every group
    prompt = model(input_ids=batch.input_ids[heads, :p], attention_mask=batch.attention_mask[heads, :p],
                   position_ids=batch.position_ids[heads, :p], use_cache=True, logits_to_keep=1)
    first = prompt.logits.repeat_interleave(g, dim=0)  # [n, 1, V]: the last prompt position predicts token 0
    if t == 1:
        return first
    cache = prompt.past_key_values
    cache.batch_repeat_interleave(g)  # differentiable: gradients of all G rows reach the one prompt pass
    rest = model(input_ids=batch.input_ids[:, p:-1], attention_mask=batch.attention_mask[:, :-1],
                 position_ids=batch.position_ids[:, p:-1], past_key_values=cache, use_cache=True).logits
    return torch.cat([first, rest], dim=1)


def _plain_hidden(model, batch: TrainBatch) -> torch.Tensor:
    """[n, T, H] hidden states of the positions that predict the response tokens (no logits)."""
    t = batch.response_width
    out = model.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                              position_ids=batch.position_ids, use_cache=False)
    return out.last_hidden_state[:, -(t + 1):-1]


def _shared_prompt_hidden(model, batch: TrainBatch) -> torch.Tensor:
    """`_plain_hidden` with each group's prompt encoded once, as `_shared_prompt_logits` does."""
    g, t = batch.group_size, batch.response_width
    p = batch.input_ids.shape[1] - t
    heads = slice(None, None, g)
    decoder = model.get_decoder()
    prompt = decoder(input_ids=batch.input_ids[heads, :p], attention_mask=batch.attention_mask[heads, :p],
                     position_ids=batch.position_ids[heads, :p], use_cache=True)
    first = prompt.last_hidden_state[:, -1:].repeat_interleave(g, dim=0)  # [n, 1, H]
    if t == 1:
        return first
    cache = prompt.past_key_values
    cache.batch_repeat_interleave(g)
    rest = decoder(input_ids=batch.input_ids[:, p:-1], attention_mask=batch.attention_mask[:, :-1],
                   position_ids=batch.position_ids[:, p:-1], past_key_values=cache, use_cache=True)
    return torch.cat([first, rest.last_hidden_state], dim=1)


@torch.no_grad()
def score_logprobs(scorer, batch: TrainBatch, temperature: float = 1.0, chunk_size: int = 0, *,
                   max_tokens: int = 0, backend=None) -> torch.Tensor:
    """`[N, T]` log-probs of the whole batch without gradients, `chunk_size` rows at a time (0 -> all), or rows
    bin-packed under a budget of `max_tokens` tokens (whole groups together).

    `scorer` is a `PolicyScorer` (or a backend's wrapper of one); a bare model is scored on the reference path.
    With a token budget and a multi-process `backend`, every rank runs the same number of passes (ZeRO-3 gathers
    parameters in every forward, a collective)."""
    from reasoner.training.micro_batches import plan_micro_batches

    scorer = as_scorer(scorer)
    was_training = scorer.training
    scorer.eval()
    try:
        out = torch.zeros_like(batch.response_mask, dtype=torch.float32)
        if max_tokens:
            g = batch.group_size if batch.group_size > 1 and batch.size % batch.group_size == 0 else 1
            lengths = batch.attention_mask.sum(dim=1).tolist()
            chunks = [mb for mb in plan_micro_batches(lengths, max_tokens, group_size=g, keep_groups=g > 1).ranks[0]
                      if mb]
        else:
            step = chunk_size or batch.size
            chunks = [list(range(start, min(start + step, batch.size))) for start in range(0, batch.size, step)]
        for rows in chunks:
            lp, _ = scorer(batch.select(rows), temperature)
            out[torch.tensor(rows), :lp.shape[1]] = lp.float()
        if max_tokens and backend is not None and backend.world_size > 1:
            for _ in range(max(backend.all_gather_object(len(chunks))) - len(chunks)):
                scorer(batch.select([0]), temperature)  # a pass that only keeps the ranks in step
        return out
    finally:
        scorer.train(was_training)
