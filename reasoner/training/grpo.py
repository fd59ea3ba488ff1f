"""The GRPO loop.

One step:  sample G completions per prompt (rollout engine)
        -> score them (verifiers reward spec)
        -> group-relative advantages (reasoner.algorithms)
        -> μ optimisation passes over minibatches (reasoner.training.update)
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

import torch

from reasoner.algorithms import apply_kl_to_rewards, compute_advantages, kl_penalty
from reasoner.algorithms.shaping import overlong_penalty
from reasoner.config import save_config
from reasoner.data import build_prompts, load_examples
from reasoner.data.templates import Prompt
from reasoner.metrics.logger import MetricsLogger, read_metrics
from reasoner.metrics.plots import plot_run
from reasoner.metrics.report import write_report
from reasoner.metrics.rollout_stats import rollout_metrics
from reasoner.models import load_model, load_tokenizer
from reasoner.rollout import RolloutEngine, SamplingParams, make_engine
from reasoner.training.allocator import keep_freed_memory
from reasoner.training.backend import Backend, make_backend
from reasoner.training.batch import Rollouts, TrainBatch, collate
from reasoner.training.checkpoint import (
    TrainerState,
    latest_checkpoint,
    restore_checkpoint,
    save_checkpoint,
    truncate_jsonl,
)
from reasoner.training.config import TrainConfig
from reasoner.training.logprobs import score_logprobs
from reasoner.training.optim import build_optimizer, build_scheduler
from reasoner.training.rng import set_seed
from reasoner.training.sampler import PromptSampler
from reasoner.training.sharding import RolloutSummary, gather_tensor_rows, shard_for_update, shard_prompts
from reasoner.training.sync_check import (
    SyncCheckError,
    SyncProbe,
    combine_probe_results,
    engine_gap_metrics,
    is_enabled,
)
from reasoner.training.update import needs_old_logprobs, update_policy


@dataclass
class Trainer:
    """Everything a step needs, built once by `setup`."""

    cfg: TrainConfig
    tokenizer: object
    policy: torch.nn.Module
    ref: torch.nn.Module | None
    engine: RolloutEngine
    reward_spec: object
    prompts: list[Prompt]
    sampler: PromptSampler
    optimizer: torch.optim.Optimizer
    scheduler: object
    update_rng: torch.Generator
    sampling: SamplingParams
    logger: MetricsLogger
    backend: Backend
    probe: SyncProbe | None = None
    state: TrainerState = field(default_factory=TrainerState)


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
    progress = _progress(cfg, trainer.state.step) if trainer.backend.is_main else None
    try:
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
            if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.steps:
                _save(trainer)
    finally:
        if progress is not None:
            progress.close()
        trainer.logger.close()
        trainer.engine.close()
        _close(trainer.reward_spec)
    final = out / "model"
    trainer.backend.save_model(final, trainer.tokenizer)
    records = read_metrics(out / "metrics.jsonl")
    if trainer.backend.is_main:
        finish_report(cfg, records)
    trainer.backend.close()  # only on success: after a failure on one rank a final barrier would wait in vain
    return TrainResult(out_dir=out, final_model=final, steps=trainer.state.step, metrics=records)


def setup(cfg: TrainConfig) -> Trainer:
    backend = make_backend(cfg.distributed)  # first: it picks this rank's device
    if cfg.prompts_per_step % backend.world_size:
        raise ValueError(f"prompts_per_step={cfg.prompts_per_step} must be divisible by the number of processes "
                         f"({backend.world_size}): each rank samples whole groups")
    out = Path(cfg.out_dir)
    if backend.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.keep_freed_memory:
        keep_freed_memory()
    set_seed(cfg.seed + backend.rank)  # ranks sample different completions
    ckpt = latest_checkpoint(out) if cfg.resume else None

    tokenizer = load_tokenizer(cfg.model.tokenizer or cfg.model.path, trust_remote_code=cfg.model.trust_remote_code)
    policy = load_model(cfg.model, path=str(ckpt / "model") if ckpt else None)
    ref = None
    if cfg.algorithm.kl_beta > 0:  # with β = 0 no reference model is loaded at all
        ref = load_model(cfg.model, path=cfg.ref_model or cfg.model.path, trainable=False)
    optimizer = build_optimizer(policy, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim,
                                cfg.steps * cfg.algorithm.ppo_epochs * cfg.algorithm.minibatches)
    backend.prepare(policy, optimizer, scheduler, max_grad_norm=cfg.optim.max_grad_norm)
    with backend.full_weights() as module:
        engine = make_engine(cfg.rollout, module, tokenizer)
    reward_spec = _reward_spec(cfg)
    examples = load_examples(cfg.data)
    prompts = build_prompts(tokenizer, examples, template=cfg.data.template, system_prompt=cfg.data.system_prompt,
                            instruction=cfg.data.instruction, max_prompt_tokens=cfg.data.max_prompt_tokens)
    stop_ids = [tokenizer.convert_tokens_to_ids(s) for s in cfg.rollout.stop_strings]
    sampling = cfg.rollout.sampling(stop_token_ids=stop_ids)
    trainer = Trainer(
        cfg=cfg, tokenizer=tokenizer, policy=backend.module, ref=ref, engine=engine, reward_spec=reward_spec,
        prompts=prompts, sampler=PromptSampler(len(prompts), cfg.seed), optimizer=backend.optimizer,
        scheduler=backend.scheduler, update_rng=torch.Generator().manual_seed(cfg.seed + backend.rank),
        sampling=sampling, logger=MetricsLogger(out, tensorboard=cfg.log.tensorboard, enabled=backend.is_main),
        backend=backend, probe=_make_probe(cfg, engine, prompts, sampling, tokenizer),
    )
    if ckpt is not None:
        trainer.state, rng = restore_checkpoint(ckpt, backend)
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


def run_step(t: Trainer, step: int) -> dict[str, float]:
    cfg, algo = t.cfg, t.cfg.algorithm
    timer = _Timer()
    prompts = [t.prompts[i] for i in shard_prompts(t.sampler.next_batch(cfg.prompts_per_step), t.backend)]

    with timer("generate"):
        with _weights_for_generation(t):
            groups = t.engine.generate([p.token_ids for p in prompts], t.sampling)
        _release_engine_memory(t.engine)  # vLLM sleep mode: the GPU memory is training's until the next sync
    rollouts = Rollouts.from_groups([p.token_ids for p in prompts], groups, [p.example for p in prompts],
                                    t.tokenizer)

    with timer("score"):
        scored = t.reward_spec.score_batch(rollouts.texts, rollouts.examples)
    rewards = torch.tensor(scored.totals, dtype=torch.float32)
    if algo.overlong_buffer > 0:
        rewards = rewards + overlong_penalty(torch.tensor(rollouts.lengths), max_length=cfg.rollout.max_new_tokens,
                                             buffer=algo.overlong_buffer, penalty=algo.overlong_penalty)
    summary = RolloutSummary.gather(RolloutSummary.local(rollouts, rewards, scored), t.backend)  # whole step
    metrics = rollout_metrics(
        rewards=summary.rewards, correct=summary.correct, lengths=summary.lengths, truncated=summary.truncated,
        group_size=rollouts.group_size, verifier_values=summary.values, status_counts=summary.status_counts())

    with timer("update"):
        batch = _prepare_batch(t, rollouts, summary, metrics)
        if batch is not None and batch.size:
            metrics.update(update_policy(
                t.policy, t.optimizer, t.scheduler, batch, algo, cfg.optim, temperature=_temperature(t),
                norm_length=algo.norm_length or cfg.rollout.max_new_tokens, generator=t.update_rng,
                backend=t.backend))
    with timer("sync"):
        metrics.update(_sync_and_verify(t, step))

    metrics.update(timer.metrics())
    metrics["tokens_per_s"] = sum(summary.lengths) / max(metrics["time/step"], 1e-9)
    metrics["lr"] = t.scheduler.get_last_lr()[0]
    if cfg.log.sample_every and (step == 1 or step % cfg.log.sample_every == 0):
        t.logger.log_samples(step, _samples(rollouts, rewards, scored, cfg.log.num_samples))
    return metrics


def _prepare_batch(t: Trainer, rollouts: Rollouts, summary: RolloutSummary,
                   metrics: dict[str, float]) -> TrainBatch | None:
    """Collate this rank's rows, add old / reference log-probs where needed, compute advantages over the whole
    step, drop zero-variance groups, and even out the ranks' shares."""
    cfg, algo, backend = t.cfg, t.cfg.algorithm, t.backend
    device = backend.device
    offset = backend.rank * rollouts.size  # this rank's first global row
    batch = collate(rollouts, torch.zeros(rollouts.size), t.tokenizer.pad_token_id,
                    mask_truncated=algo.mask_truncated, device=device)
    chunk = cfg.optim.micro_batch_size
    if t.ref is not None:
        batch.ref_logprobs = score_logprobs(t.ref, batch, _temperature(t), chunk)
    if needs_old_logprobs(algo):
        batch.old_logprobs = score_logprobs(backend.train_model, batch, _temperature(t), chunk)
        metrics.update(engine_gap_metrics(batch, backend))
    rewards = torch.tensor(summary.rewards, dtype=torch.float32, device=device)
    if algo.kl_beta > 0 and algo.kl_in_reward:
        kl = kl_penalty(algo.kl_estimator, batch.old_logprobs, batch.ref_logprobs)
        local = apply_kl_to_rewards(rewards[offset:offset + rollouts.size], kl, batch.response_mask, algo.kl_beta)
        rewards = gather_tensor_rows(local, backend)
        kl_sum, tokens = backend.all_reduce_sum([float((kl * batch.response_mask).sum()),
                                                 float(batch.response_mask.sum())])
        metrics["kl"] = kl_sum / max(tokens, 1.0)
    advantages = compute_advantages(algo.advantage, rewards, rollouts.group_size, **_advantage_options(algo))
    batch.advantages = advantages[offset:offset + rollouts.size]
    keep = torch.arange(len(rewards))
    if algo.filter_zero_variance:
        g = rollouts.group_size
        grouped = rewards.view(-1, g)
        keep_groups = (grouped.max(dim=1).values > grouped.min(dim=1).values).nonzero().flatten().cpu()
        keep = (keep_groups[:, None] * g + torch.arange(g)).flatten()
        metrics["groups_kept"] = float(len(keep_groups))
    return shard_for_update(batch, keep, offset, backend)


def _advantage_options(algo) -> dict:
    return {"eps": algo.advantage_eps} if algo.advantage in ("grpo", "reinforce_pp_baseline") else {}


def _temperature(t: Trainer) -> float:
    return t.sampling.temperature if t.sampling.temperature > 0 else 1.0


def _save(t: Trainer) -> Path:
    t.state.sampler = t.sampler.state_dict()
    return save_checkpoint(t.cfg.out_dir, t.state, t.backend, t.tokenizer,
                           rng_extra={"update": t.update_rng.get_state()}, keep=t.cfg.keep_checkpoints)


def _make_probe(cfg: TrainConfig, engine: RolloutEngine, prompts: list[Prompt], sampling: SamplingParams,
                tokenizer) -> SyncProbe | None:
    if not is_enabled(cfg.sync_check, engine):
        return None
    # The looser precision of the two sides sets the default thresholds.
    low = {cfg.model.dtype, str(getattr(engine, "dtype", ""))} & {"bfloat16", "float16", "half"}
    return SyncProbe.from_prompts(cfg.sync_check, [p.token_ids for p in prompts], temperature=sampling.temperature,
                                  pad_id=tokenizer.pad_token_id, dtype=torch.bfloat16 if low else torch.float32,
                                  max_len=cfg.rollout.vllm.get("max_model_len"))


def _sync_and_verify(t: Trainer, step: int, *, push: bool = True) -> dict[str, float]:
    """Push the new weights to the engine; when the probe is due, check that the engine now computes what the
    trainer computes, on every rank, and raise `SyncCheckError` (all ranks together) when it does not."""
    due = t.probe is not None and step % t.cfg.sync_check.every == 0
    with t.backend.full_weights() as module:
        if push:
            t.engine.sync_weights(module)
        t.backend.barrier()  # a shared engine (server mode) has the new weights before any rank samples again
        result = t.probe.measure(t.engine, module) if due else None
    if result is None:
        return {}
    metrics = combine_probe_results(result, t.backend).metrics()  # every rank's engine (or server) counts
    failures = t.probe.failures(result)
    if t.backend.all_reduce_sum([1.0 if failures else 0.0])[0] > 0:
        where = f"rank {t.backend.rank}: " + "; ".join(failures) if failures else "on another rank"
        raise SyncCheckError(f"weight sync check failed after step {step} ({where}): the rollout engine does not "
                             "sample from the trainer's weights (stale or partial weights, a prefix cache served "
                             "from old weights, or a precision mismatch); see the sync/* metrics", metrics)
    return metrics


@contextmanager
def _weights_for_generation(t: Trainer):
    """Full parameters for an engine that samples from the trainer's own module (ZeRO-3 partitions them)."""
    if getattr(t.engine, "holds_own_weights", False):
        yield
    else:
        with t.backend.full_weights():
            yield


def _release_engine_memory(engine: RolloutEngine) -> None:
    release = getattr(engine, "release_memory", None)
    if release is not None:
        release()


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
                          "group size": cfg.rollout.group_size, "prompts/step": cfg.prompts_per_step,
                          "advantage": cfg.algorithm.advantage, "loss_agg": cfg.algorithm.loss_agg})


def _reward_spec(cfg: TrainConfig):
    from verifiers import RewardSpec
    return RewardSpec.from_config(cfg.reward.verifiers)


def _close(spec) -> None:
    close = getattr(spec, "close", None)
    if close is not None:
        close()


def _progress(cfg: TrainConfig, start: int):
    if not cfg.log.progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=cfg.steps, initial=start, desc="grpo", dynamic_ncols=True)


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
