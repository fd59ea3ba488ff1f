"""The GRPO loop.

One step:  sample G completions per prompt (rollout engine)
        -> score them (verifiers reward spec)
        -> group-relative advantages (reasoner.algorithms), or GAE over a critic's values (training/critic.py)
        -> μ optimisation passes over minibatches (reasoner.training.update), then the critic's update
        -> engine weight sync, verified by a probe (engines with their own weights: vLLM)
        -> metrics, samples, checkpoint.

Everything algorithmic is a named, pure function in `reasoner.algorithms`; this file only wires the stages
together, in the order they run. It runs as one process or as several data-parallel ones (torchrun / deepspeed
launchers); what differs between them lives in `backend.py` (process groups, DDP, ZeRO) and `sharding.py` (which
rank does which prompts, what they exchange). Only the main rank writes metrics, samples and reports.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from reasoner.algorithms import kl_penalty, sequence_kl, step_advantages
from reasoner.config import to_dict
from reasoner.data import build_prompts, load_examples
from reasoner.data.templates import Prompt
from reasoner.metrics.logger import MetricsLogger, read_metrics
from reasoner.metrics.plots import plot_run
from reasoner.metrics.progress import progress_bar
from reasoner.metrics.report import write_report
from reasoner.metrics.rollout_stats import rollout_metrics
from reasoner.metrics.sinks import check_sinks
from reasoner.models import load_model, tokenizer_for
from reasoner.models.card import ModelCard, card_metrics, write_model_card
from reasoner.rollout import RolloutEngine, SamplingParams, check_engine, make_engine
from reasoner.training.backend import Backend
from reasoner.training.batch import Rollouts, TrainBatch, collate
from reasoner.training.checkpoint import (
    TrainerState,
    latest_checkpoint,
    restore_checkpoint,
    save_checkpoint,
    truncate_jsonl,
)
from reasoner.training.config import TrainConfig
from reasoner.training.critic import (
    CRITIC_DIR,
    Critic,
    attach_targets,
    build_critic,
    policy_waits,
    token_inputs,
    update_critic,
)
from reasoner.training.interrupt import TrainingInterrupted, stop_between_steps
from reasoner.training.logprobs import PolicyScorer, score_logprobs
from reasoner.training.optim import build_optimizer, build_scheduler
from reasoner.training.prologue import start_run
from reasoner.training.rewards import GroupRewards, group_rewards_for, reward_spec_for
from reasoner.training.sampler import Sampler, make_sampler
from reasoner.training.sharding import RankRows, RolloutSummary, shard_prompts
from reasoner.training.sync_check import (
    SyncCheckError,
    SyncProbe,
    combine_probe_results,
    engine_gap_metrics,
    is_enabled,
)
from reasoner.training.update import needs_old_logprobs, update_policy
from reasoner_verifiers import RewardSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class Trainer:
    """Everything a step needs, built once by `setup`. The policy, its optimizer and scheduler live in `backend`
    (`backend.module`, `backend.train_model`, `backend.optimizer`, `backend.scheduler`)."""

    cfg: TrainConfig
    tokenizer: PreTrainedTokenizerBase
    backend: Backend
    ref: PolicyScorer | None                    # frozen reference policy (kl_beta > 0)
    engine: RolloutEngine
    reward_spec: RewardSpec
    prompts: list[Prompt]
    sampler: Sampler                            # data.sampling: uniform | curriculum | prioritized
    update_rng: torch.Generator                 # minibatch shuffling
    sampling: SamplingParams
    logger: MetricsLogger
    probe: SyncProbe | None = None              # verified weight sync (engines that own their weights)
    critic: Critic | None = None                # the value model (algorithm.advantage: gae)
    group_rewards: GroupRewards = field(default_factory=GroupRewards)  # length terms of reward.verifiers
    state: TrainerState = field(default_factory=TrainerState)

    @property
    def temperature(self) -> float:
        """The temperature log-probs are scored at: the sampling temperature (1 for greedy sampling)."""
        return self.sampling.temperature if self.sampling.temperature > 0 else 1.0


@dataclass
class TrainResult:
    out_dir: Path
    final_model: Path
    steps: int
    metrics: list[dict]


def train(cfg: TrainConfig) -> TrainResult:
    """Runs (or resumes) GRPO as configured; returns where the final model and metrics are."""
    trainer = setup(cfg)
    out = Path(cfg.out_dir)
    progress = progress_bar(cfg.log.progress and trainer.backend.is_main, total=cfg.steps,
                            initial=trainer.state.step, desc="grpo")
    try:
        with stop_between_steps() as stop:
            for step in range(trainer.state.step + 1, cfg.steps + 1):
                try:
                    metrics = run_step(trainer, step)
                except SyncCheckError as e:  # the update is done and sound: keep it, then stop loudly
                    trainer.state.step = step
                    trainer.logger.log(step, e.metrics)
                    e.add_checkpoint(_save(trainer))
                    raise
                trainer.state.step = step
                trainer.logger.log(step, metrics)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix({k: f"{metrics[k]:.3g}" for k in ("reward/mean", "pass@1", "length/mean")
                                          if k in metrics})
                saved = None
                if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.steps:
                    saved = _save(trainer)
                if step < cfg.steps and _stop_requested(trainer.backend, stop.requested):
                    path = saved or _save(trainer)
                    if trainer.backend.is_main:
                        finish_report(cfg, read_metrics(out / "metrics.jsonl"))
                    raise TrainingInterrupted(f"{stop.signal_name or 'a stop request'} after step {step} of "
                                              f"{cfg.steps}: checkpoint {path}; run the same command to resume")
    finally:
        if progress is not None:
            progress.close()
        trainer.logger.close()
        trainer.engine.close()
        trainer.reward_spec.close()
    final = out / "model"
    trainer.backend.save_model(final, trainer.tokenizer)
    if trainer.critic is not None:
        trainer.critic.backend.save_model(out / CRITIC_DIR, trainer.tokenizer)
    records = read_metrics(out / "metrics.jsonl")
    if trainer.backend.is_main:
        finish_report(cfg, records)
        write_model_card(final, grpo_card(cfg, records))
    trainer.backend.close()  # only on success: after a failure on one rank a final barrier would wait in vain
    return TrainResult(out_dir=out, final_model=final, steps=trainer.state.step, metrics=records)


def setup(cfg: TrainConfig) -> Trainer:
    backend = start_run(cfg, out_dir=cfg.out_dir, distributed=cfg.distributed, seed=cfg.seed, threads=cfg.threads,
                        keep_freed=cfg.keep_freed_memory, seed_per_rank=True)  # ranks sample differently
    if cfg.prompts_per_step % backend.world_size:
        raise ValueError(f"prompts_per_step={cfg.prompts_per_step} must be divisible by the number of processes "
                         f"({backend.world_size}): each rank samples whole groups")
    out = Path(cfg.out_dir)
    ckpt = latest_checkpoint(out) if cfg.resume else None
    # Everything that can be checked without a model is checked first: an error costs seconds, not a model load.
    check_engine(cfg.engine)
    check_sinks(cfg.log.report_to)
    reward_spec = reward_spec_for(cfg.reward.verifiers, "reward.verifiers", group_terms=True)
    group_rewards = group_rewards_for(cfg.reward.verifiers, "reward.verifiers", reward_spec)
    tokenizer = tokenizer_for(cfg.model)
    sampling = cfg.sampling.params_for(tokenizer)
    prompts = build_prompts(tokenizer, load_examples(cfg.data), cfg.prompt)
    policy = load_model(cfg.model, path=str(ckpt / "model") if ckpt else None)
    ref = None
    if cfg.algorithm.kl_beta > 0:  # with β = 0 no reference model is loaded at all
        ref = policy_scorer(load_model(cfg.model, path=cfg.ref_model or cfg.model.path, trainable=False), cfg)
    optimizer = build_optimizer(policy, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim,
                                cfg.steps * cfg.algorithm.ppo_epochs * cfg.algorithm.minibatches)
    backend.prepare(policy, optimizer, scheduler, max_grad_norm=cfg.optim.max_grad_norm,
                    scorer=policy_scorer(policy, cfg, partitioned=backend.partitions_parameters))
    with backend.full_weights() as module:
        engine = make_engine(cfg.engine, module, tokenizer)
    trainer = Trainer(
        cfg=cfg, tokenizer=tokenizer, backend=backend, ref=ref, engine=engine, reward_spec=reward_spec,
        prompts=prompts,
        sampler=make_sampler(cfg.data.sampling, [p.example for p in prompts], cfg.seed, total_steps=cfg.steps),
        update_rng=torch.Generator().manual_seed(cfg.seed + backend.rank), sampling=sampling,
        logger=MetricsLogger(out, report_to=cfg.log.report_to, enabled=backend.is_main, project=cfg.log.project,
                             run_name=cfg.log.run_name, config=to_dict(cfg)),
        probe=_make_probe(cfg, engine, prompts, sampling, tokenizer),
        critic=build_critic(cfg, ckpt),
        group_rewards=group_rewards,
    )
    if ckpt is not None:
        trainer.state, rng = restore_checkpoint(ckpt, backend, extra=_extra_models(trainer))
        trainer.sampler.load_state_dict(trainer.state.sampler)
        trainer.update_rng.set_state(rng["update"])
        if backend.is_main:
            truncate_jsonl(out / "metrics.jsonl", trainer.state.step)
            truncate_jsonl(out / "samples.jsonl", trainer.state.step)
    elif backend.is_main:  # a fresh run: no stale log from an earlier run in the same folder
        for name in ("metrics.jsonl", "samples.jsonl"):
            (out / name).unlink(missing_ok=True)
    if trainer.probe is not None:  # the engine's first load is checked before any training
        _sync_and_verify(trainer, step=0, push=False)
    backend.barrier()
    return trainer


def run_step(trainer: Trainer, step: int) -> dict[str, float]:
    cfg, algo, backend = trainer.cfg, trainer.cfg.algorithm, trainer.backend
    timer = _Timer()
    indices = trainer.sampler.next_batch(cfg.prompts_per_step)
    prompts = [trainer.prompts[i] for i in shard_prompts(indices, backend)]

    with timer("generate"):
        with _weights_for_generation(trainer):
            groups = trainer.engine.generate([p.token_ids for p in prompts], trainer.sampling)
        trainer.engine.release_memory()  # vLLM sleep mode: the GPU memory is training's until the next sync
    rollouts = Rollouts.from_groups([p.token_ids for p in prompts], groups, [p.example for p in prompts],
                                    trainer.tokenizer)

    with timer("score"):
        scored = trainer.reward_spec.score_batch(rollouts.texts, rollouts.examples)
        scored = trainer.group_rewards.apply(scored, rollouts.lengths, rollouts.group_size, step=step,
                                             max_length=cfg.sampling.max_new_tokens)
    rewards = torch.tensor(scored.totals, dtype=torch.float32)
    summary = RolloutSummary.gather(RolloutSummary.local(rollouts, rewards, scored), backend)  # whole step
    metrics = rollout_metrics(
        rewards=summary.rewards, correct=summary.correct, lengths=summary.lengths, truncated=summary.truncated,
        group_size=rollouts.group_size, verifier_values=summary.values, status_counts=summary.status_counts())
    metrics.update(trainer.sampler.observe(indices, summary.correct, rollouts.group_size))

    with timer("update"):
        batch = _prepare_batch(trainer, rollouts, summary, metrics)
        norm_length = algo.norm_length or cfg.sampling.max_new_tokens
        if batch is not None and batch.size and not policy_waits(trainer.critic, step):
            metrics.update(update_policy(
                backend, batch, algo, cfg.optim, temperature=trainer.temperature,
                norm_length=norm_length, generator=trainer.update_rng))
        if batch is not None and batch.size and trainer.critic is not None:
            metrics.update(update_critic(trainer.critic, batch, algo, norm_length=norm_length,
                                         generator=trainer.update_rng))
    with timer("sync"):
        metrics.update(_sync_and_verify(trainer, step))

    metrics.update(timer.metrics())
    metrics["tokens_per_s"] = sum(summary.lengths) / max(metrics["time/step"], 1e-9)
    metrics["lr"] = backend.scheduler.get_last_lr()[0]
    if cfg.log.sample_every and (step == 1 or step % cfg.log.sample_every == 0):
        trainer.logger.log_samples(step, _samples(rollouts, rewards, scored, cfg.log.num_samples))
    return metrics


def _prepare_batch(trainer: Trainer, rollouts: Rollouts, summary: RolloutSummary,
                   metrics: dict[str, float]) -> TrainBatch | None:
    """Collate this rank's rows, add the old / reference log-probs the algorithm needs, compute the step's
    advantages over the whole step (`step_advantages`), and take this rank's share of the rows kept."""
    cfg, algo, backend = trainer.cfg, trainer.cfg.algorithm, trainer.backend
    rows = RankRows.of(rollouts.size, backend)
    batch = collate(rollouts, torch.zeros(rollouts.size), trainer.tokenizer.pad_token_id,
                    mask_truncated=algo.mask_truncated, device=backend.device)
    chunks = dict(chunk_size=cfg.optim.micro_batch_size, max_tokens=cfg.optim.max_tokens_per_micro_batch)
    if trainer.ref is not None:  # not wrapped by the backend: its forward is no collective, even under ZeRO-3
        batch.ref_logprobs = score_logprobs(trainer.ref, batch, trainer.temperature, **chunks)
    if needs_old_logprobs(algo):
        batch.old_logprobs = score_logprobs(backend.train_model, batch, trainer.temperature, **chunks,
                                            backend=backend)
        metrics.update(engine_gap_metrics(batch, backend))
    seq_kl = kl = None
    if algo.kl_beta > 0 and algo.kl_in_reward:
        kl = kl_penalty(algo.kl_estimator, batch.old_logprobs, batch.ref_logprobs)
        kl_sum, tokens = backend.all_reduce_sum([float((kl * batch.response_mask).sum()),
                                                 float(batch.response_mask.sum())])
        metrics["kl"] = kl_sum / max(tokens, 1.0)
    # token-level estimators (gae, reinforce_pp): the whole step's per-token inputs; None for the others
    tokens_in = token_inputs(batch, rows, algo.advantage, kl=kl, critic=trainer.critic,
                             chunk_size=cfg.optim.micro_batch_size)
    if kl is not None and tokens_in is None:
        seq_kl = rows.gather(sequence_kl(kl, batch.response_mask))
    step = step_advantages(
        torch.tensor(summary.rewards, dtype=torch.float32), rollouts.group_size, estimator=algo.advantage,
        options=vars(algo), lengths=torch.tensor(summary.lengths), max_length=cfg.sampling.max_new_tokens,
        overlong_buffer=algo.overlong_buffer, overlong_penalty_value=algo.overlong_penalty,
        sequence_kl=seq_kl, kl_beta=algo.kl_beta if algo.kl_in_reward else 0.0,
        filter_zero_variance=algo.filter_zero_variance, tokens=tokens_in)
    if algo.overlong_buffer > 0 or kl is not None:
        metrics["reward/shaped_mean"] = float(step.rewards.mean())
    if step.groups_kept is not None:
        metrics["groups_kept"] = float(step.groups_kept)
    if tokens_in is not None and step.returns is not None:
        metrics.update(attach_targets(batch, rows, tokens_in, step.advantages, step.returns))
    else:
        batch.advantages = rows.local(step.advantages.to(backend.device))
    return rows.for_update(batch, step.keep, balance_tokens=cfg.optim.max_tokens_per_micro_batch > 0,
                           pad_id=trainer.tokenizer.pad_token_id)


def policy_scorer(model: torch.nn.Module, cfg: TrainConfig, *, partitioned: bool = False) -> PolicyScorer:
    """The trainer's forward over `model` as `optim` configures it (packed / fused head / shared prompts)."""
    return PolicyScorer(model, packed=cfg.optim.packed, fused_head=cfg.optim.fused_head, partitioned=partitioned)


def _stop_requested(backend: Backend, local: bool) -> bool:
    """Whether any rank was asked to stop (one scalar all-reduce per step, only with several processes)."""
    if backend.world_size == 1:
        return local
    return backend.all_reduce_sum([1.0 if local else 0.0])[0] > 0


def _save(trainer: Trainer) -> Path:
    trainer.state.sampler = trainer.sampler.state_dict()
    return save_checkpoint(trainer.cfg.out_dir, trainer.state, trainer.backend, trainer.tokenizer,
                           rng_extra={"update": trainer.update_rng.get_state()}, keep=trainer.cfg.keep_checkpoints,
                           extra=_extra_models(trainer))


def _extra_models(trainer: Trainer) -> dict[str, Backend]:
    """Models checkpointed beside the policy: the critic, when there is one."""
    return {CRITIC_DIR: trainer.critic.backend} if trainer.critic is not None else {}


def _make_probe(cfg: TrainConfig, engine: RolloutEngine, prompts: list[Prompt], sampling: SamplingParams,
                tokenizer) -> SyncProbe | None:
    if not is_enabled(cfg.sync_check, engine):
        return None
    # The looser precision of the two sides sets the default thresholds.
    low = {cfg.model.dtype, engine.dtype or ""} & {"bfloat16", "float16", "half"}
    return SyncProbe.from_prompts(cfg.sync_check, [p.token_ids for p in prompts], temperature=sampling.temperature,
                                  pad_id=tokenizer.pad_token_id, dtype=torch.bfloat16 if low else torch.float32,
                                  max_len=cfg.engine.vllm.max_model_len)


def _sync_and_verify(trainer: Trainer, step: int, *, push: bool = True) -> dict[str, float]:
    """Push the new weights to the engine; when the probe is due, check that the engine now computes what the
    trainer computes, on every rank, and raise `SyncCheckError` (all ranks together) when it does not."""
    due = trainer.probe is not None and step % trainer.cfg.sync_check.every == 0
    with trainer.backend.full_weights() as module:
        if push:
            trainer.engine.sync_weights(module)
        trainer.backend.barrier()  # a shared engine (server mode) has the new weights before any rank samples again
        result = trainer.probe.measure(trainer.engine, module) if due else None
    if result is None:
        return {}
    metrics = combine_probe_results(result, trainer.backend).metrics()  # every rank's engine (or server) counts
    failures = trainer.probe.failures(result)
    if trainer.backend.all_reduce_sum([1.0 if failures else 0.0])[0] > 0:
        where = f"rank {trainer.backend.rank}: " + "; ".join(failures) if failures else "on another rank"
        raise SyncCheckError(f"weight sync check failed after step {step} ({where}): the rollout engine does not "
                             "sample from the trainer's weights (stale or partial weights, a prefix cache served "
                             "from old weights, or a precision mismatch); see the sync/* metrics", metrics)
    return metrics


@contextmanager
def _weights_for_generation(trainer: Trainer):
    """Full parameters for an engine that samples from the trainer's own module (ZeRO-3 partitions them)."""
    if trainer.engine.owns_weights:
        yield
    else:
        with trainer.backend.full_weights():
            yield


def _samples(rollouts: Rollouts, rewards: torch.Tensor, scored, n: int) -> list[dict]:
    out = []
    for i in range(min(n, rollouts.size)):
        out.append({"prompt_id": rollouts.examples[i].get("id"), "answer": rollouts.examples[i].get("answer"),
                    "completion": rollouts.texts[i], "reward": float(rewards[i]), "correct": bool(scored.correct[i]),
                    "status": {k: v[i].status for k, v in scored.scores.items()},
                    "finish_reason": rollouts.completions[i].finish_reason})
    return out


def finish_report(cfg: TrainConfig, records: list[dict]) -> None:
    out = Path(cfg.out_dir)
    plots = plot_run(records, out / "plots") if cfg.log.plots and records else []
    write_report(out / "report.md", title=f"GRPO run: {out.name}", records=records, plots=plots,
                 summary={"model": cfg.model.path, "data": cfg.data.source, "steps": len(records),
                          "group size": cfg.sampling.group_size, "prompts/step": cfg.prompts_per_step,
                          "advantage": cfg.algorithm.advantage, "loss_agg": cfg.algorithm.loss_agg})


def grpo_card(cfg: TrainConfig, records: list[dict]) -> ModelCard:
    return ModelCard(stage="grpo", base_model=cfg.model.path,
                     summary={"data": cfg.data.source, "steps": len(records), "group size": cfg.sampling.group_size,
                              "prompts per step": cfg.prompts_per_step, "advantage": cfg.algorithm.advantage,
                              "policy loss": cfg.algorithm.policy_loss, "kl_beta": cfg.algorithm.kl_beta,
                              "lr": cfg.optim.lr, "rewards": ", ".join(cfg.reward.verifiers)},
                     metrics=card_metrics(records, ["reward/mean", "pass@1", "length/mean"]))


class _Timer:
    def __init__(self):
        self.times: dict[str, float] = {}
        self.start = time.perf_counter()

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        yield
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0

    def metrics(self) -> dict[str, float]:
        m = {f"time/{k}": v for k, v in self.times.items()}
        m["time/step"] = time.perf_counter() - self.start
        return m
