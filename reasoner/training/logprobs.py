"""Per-token log-probabilities (and entropies) of response tokens under a model: the trainer's forward pass.

Only the logits of response positions are materialised (`logits_to_keep`), and scoring without gradients runs in
chunks of rows, each trimmed of padding, so memory follows the chunk, not the batch.
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
