"""The policy update: μ passes over the rollout batch, split into minibatches (one optimizer step each) and
micro-batches (gradient accumulation).

Loss denominators are the minibatch's global token / sequence counts, so accumulating micro-batches gives exactly
the full-minibatch loss (the accumulation bug that made early GRPO implementations weight short sequences more).
When μ = 1 and there is a single minibatch the policy has not moved since sampling, so the "old" log-probs are the
current ones, detached: no extra forward pass.

Zero-advantage groups: with no KL term in the loss and no entropy bonus, a group whose advantages are all zero
(every completion got the same reward) contributes exactly nothing to the gradient, so its forward/backward is
skipped while the loss denominators still count its tokens — the update is unchanged, only cheaper. (DAPO's
`filter_zero_variance` instead removes such groups from the denominators too, which changes the update.) Loss
statistics (clip fractions, entropy) are then over the rows that were run.

Multi-process (`backend` other than a single process): each rank updates on its own shard of the step's rows. The
counts behind the loss denominators are summed over ranks and divided by the world size, because data-parallel
backends *average* gradients over ranks, so the averaged gradient is that of the global minibatch loss. Shards
are padded to equal size with whole groups that carry no loss (`batch.pad_rows`), and no rows are skipped, so
every rank runs the same number of forward / backward passes, which ZeRO-3 and DDP need. With
`minibatches == 1` the result equals the single-process update on the whole batch; with more, each rank shuffles
its own shard (as verl does), so minibatch membership differs.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import fields, replace

import torch

from reasoner.algorithms import POLICY_LOSSES, aggregate_loss, global_counts, kl_penalty, policy_loss
from reasoner.algorithms.rollout_correction import mismatch_metrics, mismatch_totals, rollout_correction
from reasoner.training.backend import Backend
from reasoner.training.batch import TrainBatch, group_order, pad_rows
from reasoner.training.config import AlgorithmConfig, OptimConfig
from reasoner.training.logprobs import as_scorer
from reasoner.training.micro_batches import plan_micro_batches


def corrects_rollout(algo: AlgorithmConfig) -> bool:
    return algo.tis_cap is not None or algo.rollout_is is not None or algo.rollout_rs is not None


def needs_old_logprobs(algo: AlgorithmConfig) -> bool:
    return algo.ppo_epochs > 1 or algo.minibatches > 1 or algo.kl_in_reward or corrects_rollout(algo)


def update_policy(backend: Backend, batch: TrainBatch, algo: AlgorithmConfig, optim: OptimConfig, *,
                  temperature: float, norm_length: int, generator: torch.Generator) -> dict[str, float]:
    """Runs the optimisation passes on `batch` with the model, optimizer and scheduler `backend` owns (one
    process: `SingleProcess.wrapping(model, optimizer, scheduler)`); returns token-weighted means of the loss
    statistics."""
    if batch.old_logprobs is None and needs_old_logprobs(algo):
        raise ValueError("this algorithm configuration needs batch.old_logprobs (computed before the update)")
    correction_metrics: dict[str, float] = {}
    if corrects_rollout(algo):
        batch, correction_metrics = correct_rollout(backend, batch, algo)
    weighted: dict[str, float] = defaultdict(float)   # token-weighted means (clip fractions, KL, entropy)
    additive: dict[str, float] = defaultdict(float)   # summed over micro-batches, averaged over minibatches
    weight_total = 0.0
    grad_norms = []
    skipped = 0
    backend.train_model.train()
    g = batch.group_size
    for _ in range(algo.ppo_epochs):
        # Shuffle whole groups (each group's rows stay together, so the prompt is shared within micro-batches).
        if algo.ppo_epochs == 1 and algo.minibatches == 1:
            order = torch.arange(batch.size)
        elif g > 1:
            order = group_order(batch.size, g, generator)
        else:
            order = torch.randperm(batch.size, generator=generator)
        for mb_index in _split(order, algo.minibatches, g):
            minibatch = batch.select(mb_index)
            num_tokens, num_seqs = _global_counts(backend, minibatch)
            if num_tokens == 0:  # the same on every rank: the counts are global
                continue
            # Skipping differs between ranks, and ranks must run the same passes: only a single process skips.
            rows = _rows_with_gradient(minibatch, algo) if backend.world_size == 1 else torch.arange(minibatch.size)
            skipped += minibatch.size - len(rows)
            parts = micro_batches(minibatch, rows, optim, backend)
            for i, part in enumerate(parts):
                with backend.micro_batch(last=i == len(parts) - 1):
                    stats = _micro_step(backend, part, algo, temperature, num_tokens=num_tokens, num_seqs=num_seqs,
                                        norm_length=norm_length)
                tokens = float(part.response_mask.sum())
                for key, value in stats.items():
                    if key in _ADDITIVE:
                        additive[key] += value
                    elif tokens:  # an all-padding micro-batch has no statistics to weigh
                        weighted[key] += value * tokens
                weight_total += tokens
            grad_norms.append(backend.step(optim.max_grad_norm))
    result = _reduce_stats(backend, weighted, additive, weight_total, grad_norms)
    result["skipped_rows"] = skipped / (batch.size * algo.ppo_epochs)
    result.update(correction_metrics)
    return result


def correct_rollout(backend: Backend, batch: TrainBatch, algo: AlgorithmConfig) -> tuple[TrainBatch, dict[str, float]]:
    """`batch` with its importance weights set and its rejected tokens masked out, and the step's mismatch
    statistics over every rank."""
    assert batch.old_logprobs is not None  # needs_old_logprobs
    tis = algo.tis_cap is not None  # shorthand: token-level truncation at the cap
    correction = rollout_correction(
        batch.old_logprobs, batch.engine_logprobs, batch.response_mask,
        is_level="token" if tis else algo.rollout_is, is_mode="truncate" if tis else algo.rollout_is_mode,
        is_min=None if tis else algo.rollout_is_min, is_max=algo.tis_cap if tis else algo.rollout_is_max,
        rs_level=algo.rollout_rs, rs_min=algo.rollout_rs_min, rs_max=algo.rollout_rs_max)
    sums, maxima = mismatch_totals(batch.old_logprobs, batch.engine_logprobs, batch.response_mask, correction)
    if backend.world_size > 1:
        keys = sorted(sums)
        sums = dict(zip(keys, backend.all_reduce_sum([sums[k] for k in keys])))
        gathered = backend.all_gather_object(maxima)
        maxima = {key: max(part[key] for part in gathered) for key in maxima}
    mask = batch.response_mask if correction.keep is None else batch.response_mask * correction.keep
    return replace(batch, response_mask=mask, is_weights=correction.weights), mismatch_metrics(sums, maxima)


def micro_batches(minibatch: TrainBatch, rows: torch.Tensor, optim: OptimConfig, backend: Backend) -> list[TrainBatch]:
    """The micro-batches of `rows` (indices into `minibatch`): `optim.micro_batch_size` rows each, or, with
    `optim.max_tokens_per_micro_batch`, rows bin-packed under that token budget (whole groups kept together when
    the minibatch is made of groups, so a shared prompt stays shared). Every rank runs the same number of
    micro-batches (DDP and ZeRO need equal passes): a rank with fewer adds passes that carry no loss."""
    if optim.max_tokens_per_micro_batch:
        lengths = minibatch.attention_mask.sum(dim=1).cpu()[rows].tolist()  # what a packed forward processes
        g = minibatch.group_size if minibatch.group_size > 1 and len(rows) % minibatch.group_size == 0 else 1
        plan = plan_micro_batches(lengths, optim.max_tokens_per_micro_batch, group_size=g, keep_groups=g > 1)
        groups = [rows[torch.tensor(mb, dtype=torch.long)] for mb in plan.ranks[0] if mb]
    else:
        micro = optim.micro_batch_size or max(len(rows), 1)
        groups = [rows[start:start + micro] for start in range(0, len(rows), micro)]
    parts = [minibatch.select(index) for index in groups]
    if backend.world_size > 1 and optim.max_tokens_per_micro_batch:
        most = max(backend.all_gather_object(len(parts)))
        parts += [blank_rows(minibatch)] * (most - len(parts))
    return parts


def blank_rows(batch: TrainBatch) -> TrainBatch:
    """One row of `batch` that carries no loss and counts nothing: a pass that only keeps ranks in step."""
    blank = pad_rows(batch.select([0]), 1)
    blank.response_mask.zero_()
    blank.advantages.zero_()
    blank.row_padding.fill_(True)
    return blank


def _global_counts(backend: Backend, minibatch: TrainBatch) -> tuple[float, float]:
    """Loss denominators: tokens and non-empty sequences of the global minibatch, divided by the world size
    (padding rows have no tokens, so they are not counted)."""
    tokens, seqs = global_counts(minibatch.response_mask)
    tokens, seqs = backend.all_reduce_sum([float(tokens), float(seqs)])
    return tokens / backend.world_size, seqs / backend.world_size


def _reduce_stats(backend: Backend, weighted: dict[str, float], additive: dict[str, float], weight_total: float,
                  grad_norms: list[float]) -> dict[str, float]:
    """Global statistics: token-weighted sums and the additive losses are summed over ranks (the keys are the same
    on every rank: they follow from the configuration)."""
    w_keys, a_keys = sorted(weighted), sorted(additive)
    sums = backend.all_reduce_sum([weighted[k] for k in w_keys] + [additive[k] for k in a_keys] + [weight_total])
    total = sums[-1]
    result = {key: value / max(total, 1.0) for key, value in zip(w_keys, sums)}
    # Each rank's loss was scaled by the world size (see _global_counts), so the sum over ranks is W × the loss.
    steps = max(len(grad_norms), 1)
    result.update({key: value / backend.world_size / steps for key, value in zip(a_keys, sums[len(w_keys):])})
    result["grad_norm"] = sum(grad_norms) / len(grad_norms) if grad_norms else 0.0
    result["optimizer_steps"] = float(len(grad_norms))
    return result


def _rows_with_gradient(minibatch: TrainBatch, algo: AlgorithmConfig) -> torch.Tensor:
    """Row indices whose loss terms can have a non-zero gradient (all rows unless zero-advantage skipping applies).

    Skipping is at group granularity when the batch is made of groups, so micro-batches keep whole groups.
    """
    everything = torch.arange(minibatch.size)
    if (algo.kl_beta > 0 and not algo.kl_in_reward) or algo.entropy_coef != 0:
        return everything
    adv = minibatch.advantages if minibatch.advantages.dim() == 1 else minibatch.advantages.abs().amax(dim=1)
    g = minibatch.group_size if minibatch.size % minibatch.group_size == 0 else 1
    live_groups = (adv.view(-1, g) != 0).any(dim=1)
    return everything.view(-1, g)[live_groups].flatten()


_ADDITIVE = ("loss", "pg_loss")


def _split(order: torch.Tensor, parts: int, group_size: int) -> list[torch.Tensor]:
    """`parts` minibatches of `order`, cut at group boundaries when the batch is made of groups."""
    if group_size > 1:
        return [c.flatten() for c in order.view(-1, group_size).chunk(parts)]
    return list(order.chunk(parts))


def _micro_step(backend: Backend, part: TrainBatch, algo: AlgorithmConfig, temperature: float, *, num_tokens: float,
                num_seqs: float, norm_length: int) -> dict[str, float]:
    want_entropy_grad = algo.entropy_coef != 0.0
    logprobs, entropy = as_scorer(backend.train_model)(part, temperature, want_entropy_grad)
    old = part.old_logprobs if part.old_logprobs is not None else logprobs.detach()
    agg = dict(num_tokens=num_tokens, num_seqs=num_seqs, norm_length=norm_length)
    loss, pl_stats = policy_loss(
        logprobs, old, part.advantages, part.response_mask, name=algo.policy_loss, loss_agg=algo.loss_agg,
        is_weights=part.is_weights, **agg, **POLICY_LOSSES.pick_options(algo.policy_loss, vars(algo)))
    stats = {"pg_loss": float(loss.detach())}
    if algo.kl_beta > 0 and not algo.kl_in_reward:
        kl = kl_penalty(algo.kl_estimator, logprobs, part.ref_logprobs)
        kl_loss = aggregate_loss(kl, part.response_mask, algo.loss_agg, **agg)
        loss = loss + algo.kl_beta * kl_loss
        stats["kl"] = _masked_mean(kl.detach(), part.response_mask)
    if want_entropy_grad:
        loss = loss - algo.entropy_coef * aggregate_loss(entropy, part.response_mask, algo.loss_agg, **agg)
    backend.backward(loss)
    stats["loss"] = float(loss.detach())
    stats.update({f.name: float(getattr(pl_stats, f.name)) for f in fields(pl_stats)})
    stats["entropy"] = _masked_mean(entropy.detach(), part.response_mask)
    return stats


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    return float((x * mask).sum() / mask.sum().clamp(min=1))
