"""Shared by the fused-head and packing tests: a ragged, collated TrainBatch."""
from __future__ import annotations

import torch

from reasoner.rollout.base import Completion
from reasoner.training.batch import Rollouts, TrainBatch, collate


def ragged_batch(vocab: int, group_size: int, prompt_lens, response_lens, seed: int = 0) -> TrainBatch:
    """A `collate`d batch: one prompt per group (lengths `prompt_lens`), responses of `response_lens`."""
    gen = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(3, vocab, (p,), generator=gen).tolist() for p in prompt_lens]
    comps = [Completion(token_ids=torch.randint(3, vocab, (n,), generator=gen).tolist(), logprobs=[0.0] * n,
                        finish_reason="stop") for n in response_lens]
    g = group_size
    rollouts = Rollouts(prompt_ids=[p for p in prompts for _ in range(g)], completions=comps,
                        texts=[""] * len(comps), examples=[{}] * len(comps), group_size=g)
    return collate(rollouts, torch.zeros(len(comps)), pad_id=0)
