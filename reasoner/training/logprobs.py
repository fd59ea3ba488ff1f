"""Per-token log-probabilities (and entropies) of response tokens under a model: the trainer's forward pass.

Only the logits of response positions are materialised (`logits_to_keep`), and scoring without gradients runs in
chunks of rows, each trimmed of padding, so memory follows the chunk, not the batch.

Shared prompts: the G completions of a GRPO group share one prompt, so when a batch is made of whole groups the
prompt is encoded once per group and its keys/values are repeated for the G completions, which then attend to
them as to a KV cache. Gradients flow through the repeated cache into the single prompt pass, so values and
gradients equal the plain forward's (tested), at a cost of prompt tokens / G instead of prompt tokens. Disabled
under gradient checkpointing (which turns the cache off).
"""
from __future__ import annotations

import torch

from reasoner.algorithms import entropy_from_logits, token_logprobs
from reasoner.training.batch import TrainBatch


def forward_logprobs(model, batch: TrainBatch, temperature: float = 1.0, *,
                     entropy_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns `(logprobs [n, T], entropy [n, T])` for the response tokens of `batch`.

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


@torch.no_grad()
def score_logprobs(model, batch: TrainBatch, temperature: float = 1.0, chunk_size: int = 0) -> torch.Tensor:
    """`[N, T]` log-probs of the whole batch without gradients, `chunk_size` rows at a time (0 -> all)."""
    was_training = model.training
    model.eval()
    try:
        out = torch.zeros_like(batch.response_mask, dtype=torch.float32)
        step = chunk_size or batch.size
        for start in range(0, batch.size, step):
            rows = torch.arange(start, min(start + step, batch.size))
            part = batch.select(rows)
            lp, _ = forward_logprobs(model, part, temperature)
            out[start:start + len(rows), :lp.shape[1]] = lp.float()
        return out
    finally:
        model.train(was_training)
