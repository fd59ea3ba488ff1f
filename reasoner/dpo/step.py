"""One DPO optimisation step's forward/backward over a list of pairs, shared by offline and on-policy DPO.

Each rank's loss is normalised by the whole step's pair and chosen-token counts divided by the world size, so
the averaged gradient is the gradient of the step's mean loss whatever the micro-batching (tested).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from reasoner.algorithms import PairLogps, preference_loss
from reasoner.dpo.config import DPOConfig
from reasoner.dpo.data import PairExample, collate_pairs
from reasoner.dpo.reference import Reference
from reasoner.dpo.scorer import SequenceLogps
from reasoner.training.backend import Backend


@dataclass
class DPOResult:
    out_dir: Path
    final_model: Path
    steps: int
    final_loss: float
    metrics: dict[str, float]


def sequence_scorer(model: torch.nn.Module, cfg: DPOConfig, backend: Backend | None = None) -> SequenceLogps:
    return SequenceLogps(model, fused_head=cfg.optim.fused_head,
                         partitioned=bool(backend and backend.partitions_parameters))


def dpo_step(backend: Backend, pairs: Sequence[PairExample], reference: Reference, cfg: DPOConfig,
             pad_id: int) -> dict[str, float]:
    """Forward/backward of this rank's `pairs` in micro-batches (no optimizer step); the batch's metrics."""
    world = backend.world_size
    num_pairs, num_tokens = backend.all_reduce_sum([len(pairs), sum(sum(p.chosen.loss_mask[1:]) for p in pairs)])
    num_pairs, num_tokens = max(num_pairs, 1.0), max(num_tokens, 1.0)
    micro = cfg.optim.micro_batch_size or len(pairs)
    starts = list(range(0, len(pairs), micro))
    sums: Counter = Counter()
    loss_sum = 0.0
    for i, start in enumerate(starts):
        part = pairs[start:start + micro]
        batch = collate_pairs(part, pad_id, packed=cfg.packing, max_length=cfg.max_length)
        with backend.micro_batch(last=i == len(starts) - 1):
            logps = backend.train_model(batch.to(backend.device), batch.num_sequences)
            ref = reference.logps(part, batch, backend.device)
            m, tokens = len(part), batch.tokens.to(backend.device)
            loss, stats = preference_loss(
                cfg.loss.name, PairLogps(logps[:m], logps[m:], ref[:m], ref[m:], tokens[:m], tokens[m:]),
                num_pairs=num_pairs / world, options=vars(cfg.loss), sft_weight=cfg.loss.sft_weight,
                num_chosen_tokens=num_tokens / world)
            backend.backward(loss)
        loss_sum += float(loss.detach())
        sums.update(stats.sums())
    keys = sorted(sums)
    totals = backend.all_reduce_sum([loss_sum] + [sums[k] for k in keys])
    return {"loss": totals[0] / world, "pairs": num_pairs, **{k: v / num_pairs for k, v in zip(keys, totals[1:])}}
