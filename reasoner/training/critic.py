"""The critic of actor-critic PPO: a value model with its own backend, optimizer and schedule.

`algorithm.advantage: gae` makes the one RL loop (`grpo.py`) actor-critic, by configuration:

    values  = score_values(critic, batch)                 one more forward (no gradient): V(s_t) per token
    step    = step_advantages(..., tokens=TokenInputs)    token rewards -> GAE advantages [N, T] and returns
    update_policy(...)                                    the policy's update, unchanged (per-token advantages)
    update_critic(critic, batch, ...)                     then the critic's: the clipped value loss

The critic trains on the rows the policy trains on (after the zero-variance filter and the rank balancing),
with the same minibatch / micro-batch machinery and loss denominators (global token counts, divided by the
world size because data-parallel backends average gradients), so one process and DDP / ZeRO agree. Its
backend is a second one of the same kind (`distributed.backend`): under DDP and ZeRO the two models sit in the
same process group. Checkpoints hold it under `critic/` (weights, optimizer, scheduler), and the finished run
writes `<out_dir>/critic` (a `from_pretrained` token-classification model).

Simplifications: the critic's forward is the padded reference path (no packing, fused head or shared-prompt
cache: its head is one number, so logits cost nothing; the body is the cost); values are scored and trained in
the model's own dtype.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from reasoner.algorithms import (
    TokenInputs,
    explained_variance,
    global_counts,
    is_token_level,
    needs_critic,
    value_loss,
)
from reasoner.models.value import load_value_model, token_values
from reasoner.training.backend import Backend
from reasoner.training.backend_factory import make_backend
from reasoner.training.batch import TrainBatch, group_order
from reasoner.training.config import AlgorithmConfig, CriticConfig, TrainConfig
from reasoner.training.optim import build_optimizer, build_scheduler
from reasoner.training.sharding import RankRows
from reasoner.training.update import micro_batches

CRITIC_DIR = "critic"  # in checkpoints and in the run folder


class ValueScorer(torch.nn.Module):
    """The critic's forward as a module (backends wrap it): `[n, T]` values of the states before each response
    token, i.e. the value head at the positions that predict the response tokens."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: TrainBatch) -> torch.Tensor:
        t = batch.response_width
        values = token_values(self.model, batch.input_ids, batch.attention_mask, batch.position_ids)
        return values[:, -(t + 1):-1]


@dataclass
class Critic:
    backend: Backend        # owns the value model (`backend.module`), its optimizer and scheduler
    cfg: CriticConfig


def build_critic(cfg: TrainConfig, ckpt: Path | None) -> Critic | None:
    """The critic when the advantage estimator needs one (gae), else None; resumed from `ckpt/critic` (its
    training state is restored with the policy's, `restore_checkpoint(..., extra=...)`)."""
    if not needs_critic(cfg.algorithm.advantage):
        return None
    c = cfg.critic
    backend = make_backend(cfg.distributed)
    # The fresh value head is drawn from its own seed, the same on every rank (ZeRO-3 keeps each rank's own
    # partition of it), and the run's RNG streams are the same with or without a critic.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = load_value_model(cfg.model, path=str(ckpt / CRITIC_DIR) if ckpt else (c.path or cfg.model.path))
    optimizer = build_optimizer(model, c.optim)
    epochs, parts = critic_passes(c, cfg.algorithm)
    scheduler = build_scheduler(optimizer, c.optim, cfg.steps * epochs * parts)
    backend.prepare(model, optimizer, scheduler, max_grad_norm=c.optim.max_grad_norm, scorer=ValueScorer(model))
    return Critic(backend=backend, cfg=c)


def critic_passes(c: CriticConfig, algo: AlgorithmConfig) -> tuple[int, int]:
    """(passes over each rollout batch, minibatches per pass) of the critic's update."""
    return c.ppo_epochs or algo.ppo_epochs, c.minibatches or algo.minibatches


def policy_waits(critic: Critic | None, step: int) -> bool:
    """Whether `step` is one of the critic's warm-up steps, in which only the critic trains."""
    return critic is not None and step <= critic.cfg.warmup_steps


@torch.no_grad()
def score_values(critic: Critic, batch: TrainBatch, chunk_size: int = 0) -> torch.Tensor:
    """`[N, T]` float32 values of the whole batch, `chunk_size` rows at a time (0: all). Every rank holds the
    same number of rows here (before filtering), so every rank runs the same number of passes (ZeRO-3)."""
    model = critic.backend.train_model
    was_training = model.training
    model.eval()
    try:
        out = torch.zeros_like(batch.response_mask, dtype=torch.float32)
        step = chunk_size or batch.size
        for start in range(0, batch.size, step):
            rows = list(range(start, min(start + step, batch.size)))
            v = model(batch.select(rows))
            out[torch.tensor(rows), :v.shape[1]] = v.float()
        return out * batch.response_mask
    finally:
        model.train(was_training)


def token_inputs(batch: TrainBatch, rows: RankRows, estimator: str, *, kl: torch.Tensor | None,
                 critic: Critic | None, chunk_size: int = 0) -> TokenInputs | None:
    """For a token-level `estimator`, the whole step's per-token inputs (gathered over ranks, right-padded to the
    widest rank); with a critic, this rank's values are also kept on `batch.values` (the value loss's clip
    centre). None for sequence-level estimators."""
    if not is_token_level(estimator):
        return None
    if critic is not None:
        batch.values = score_values(critic, batch, chunk_size)
    return TokenInputs(mask=rows.gather_padded(batch.response_mask),
                       kl=None if kl is None else rows.gather_padded(kl.detach().float()),
                       values=None if batch.values is None else rows.gather_padded(batch.values))


def attach_targets(batch: TrainBatch, rows: RankRows, tokens: TokenInputs, advantages: torch.Tensor,
                   returns: torch.Tensor) -> dict[str, float]:
    """Put this rank's share of the step's `[N, T]` advantages and returns on `batch`; returns the critic's
    step metrics (over the whole step, before its update)."""
    width = batch.response_width
    batch.advantages = rows.local(advantages.to(batch.input_ids.device))[:, :width]
    batch.returns = rows.local(returns.to(batch.input_ids.device))[:, :width]
    if tokens.values is None:
        return {}
    live = tokens.mask.bool()
    n = max(int(live.sum()), 1)
    return {"critic/explained_variance": explained_variance(tokens.values, returns, tokens.mask),
            "critic/values_mean": float(tokens.values[live].sum()) / n,
            "critic/returns_mean": float(returns.to(tokens.mask.device)[live].sum()) / n}


def update_critic(critic: Critic, batch: TrainBatch, algo: AlgorithmConfig, *, norm_length: int,
                  generator: torch.Generator) -> dict[str, float]:
    """The critic's optimisation passes on `batch` (its rows carry `values` and `returns`); returns its
    metrics: token-weighted means of the loss statistics, the loss summed over micro-batches and averaged over
    optimizer steps, the mean pre-clip gradient norm."""
    if batch.values is None or batch.returns is None:
        raise ValueError("update_critic needs batch.values and batch.returns (from a gae step)")
    backend, c = critic.backend, critic.cfg
    epochs, parts = critic_passes(c, algo)
    loss_sum, weighted, weight, grad_norms = 0.0, defaultdict(float), 0.0, []
    backend.train_model.train()
    for _ in range(epochs):
        for index in _minibatches(batch, epochs, parts, generator):
            minibatch = batch.select(index)
            tokens, seqs = global_counts(minibatch.response_mask)
            tokens, seqs = (x / backend.world_size for x in backend.all_reduce_sum([float(tokens), float(seqs)]))
            if tokens == 0:  # the same on every rank: the counts are global
                continue
            micro = micro_batches(minibatch, torch.arange(minibatch.size), c.optim, backend)
            for i, part in enumerate(micro):
                with backend.micro_batch(last=i == len(micro) - 1):
                    loss, stats = value_loss(backend.train_model(part), part.values, part.returns,
                                             part.response_mask, cliprange_value=c.cliprange_value,
                                             loss_agg=c.loss_agg, num_tokens=tokens, num_seqs=seqs,
                                             norm_length=norm_length)
                    backend.backward(loss)
                n = float(part.response_mask.sum())
                loss_sum += float(loss.detach())
                weighted["vf_clipfrac"] += float(stats.vf_clipfrac) * n
                weighted["vpred_mean"] += float(stats.vpred_mean) * n
                weight += n
            grad_norms.append(backend.step(c.optim.max_grad_norm))
    keys = sorted(weighted)
    sums = backend.all_reduce_sum([weighted[k] for k in keys] + [loss_sum, weight])
    steps = max(len(grad_norms), 1)
    metrics = {f"critic/{k}": v / max(sums[-1], 1.0) for k, v in zip(keys, sums)}
    metrics["critic/value_loss"] = sums[-2] / backend.world_size / steps
    metrics["critic/grad_norm"] = sum(grad_norms) / steps
    metrics["critic/lr"] = backend.scheduler.get_last_lr()[0]
    return metrics


def _minibatches(batch: TrainBatch, epochs: int, parts: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One pass's minibatches of `batch` (shuffled whole groups, unless one pass of one minibatch)."""
    g = batch.group_size
    if epochs == 1 and parts == 1:
        return [torch.arange(batch.size)]
    order = group_order(batch.size, g, generator) if g > 1 else torch.randperm(batch.size, generator=generator)
    if g > 1:
        return [chunk.flatten() for chunk in order.view(-1, g).chunk(parts)]
    return list(order.chunk(parts))
