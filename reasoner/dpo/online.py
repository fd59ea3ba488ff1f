"""On-policy DPO from verifier rankings: `reasoner dpo --online`.

One round: prompts from the RL loop's sampler (`PromptSampler`) -> `sampling.n` answers each from the current
policy (the rollout engine) -> graded by `verifiers` (the training reward spec) -> pairs within each prompt's
answers (`reasoner.algorithms.pair_indices`: best vs worst, every correct x incorrect, or long2short; prompts
whose answers all score alike give none) -> reference log-probs of the round's pairs from a frozen copy of the
starting model -> `updates_per_round` optimizer steps of `dpo_step` on them. Pairs are the sampled token ids
themselves (prompt + completion, EOS included when it was sampled), so nothing is re-tokenized.

This is DPO's update on the RL loop's data: the same engine, sampler, verifiers and rollout metrics
(`pass@1`, `reward/mean`, `length/mean` of the sampled answers), with `rewards/*` and `logps/*` as offline DPO
logs them. One process only (its pairs vary per rank; DDP would need equal micro-batch counts).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from reasoner.algorithms import pair_indices
from reasoner.config import ConfigError
from reasoner.data import build_prompts, load_examples
from reasoner.dpo.config import DPOConfig
from reasoner.dpo.data import PairExample
from reasoner.dpo.reference import Reference, precompute_reference
from reasoner.dpo.scorer import SequenceLogps
from reasoner.dpo.step import DPOResult, dpo_step, sequence_scorer
from reasoner.metrics.logger import MetricsLogger
from reasoner.metrics.progress import progress_bar
from reasoner.metrics.rollout_stats import rollout_metrics
from reasoner.models import load_model, tokenizer_for
from reasoner.rollout import check_engine, make_engine
from reasoner.sft.data import SFTExample
from reasoner.sft.trainer import save_model, wrap_lora
from reasoner.training.batch import Rollouts
from reasoner.training.optim import build_optimizer, build_scheduler
from reasoner.training.prologue import start_run
from reasoner.training.rewards import reward_spec_for
from reasoner.training.sampler import PromptSampler


def online_dpo(cfg: DPOConfig) -> DPOResult:
    """Runs `cfg.online.rounds` rounds of sample -> grade -> pair -> DPO update; returns the saved model."""
    on = cfg.online
    backend = start_run(cfg, out_dir=cfg.out_dir, distributed=cfg.distributed, seed=cfg.seed, threads=cfg.threads,
                        keep_freed=cfg.keep_freed_memory)
    if backend.world_size > 1:
        raise ConfigError("online DPO runs as one process (the rounds' pairs differ per rank)")
    check_engine(cfg.engine)
    spec = reward_spec_for(cfg.verifiers, "verifiers")
    out = Path(cfg.out_dir)
    tokenizer = tokenizer_for(cfg.model)
    params = cfg.sampling.params_for(tokenizer)
    prompts = build_prompts(tokenizer, load_examples(cfg.data), cfg.prompt)
    model = wrap_lora(load_model(cfg.model), cfg)
    optimizer = build_optimizer(model, cfg.optim)
    backend.prepare(model, optimizer, build_scheduler(optimizer, cfg.optim, on.rounds * on.updates_per_round),
                    max_grad_norm=cfg.optim.max_grad_norm, scorer=sequence_scorer(model, cfg, backend))
    ref = SequenceLogps(load_model(cfg.model, path=cfg.ref_model or cfg.model.path, trainable=False),
                        fused_head=cfg.optim.fused_head)
    with backend.full_weights() as module:
        engine = make_engine(cfg.engine, module, tokenizer)
    sampler = PromptSampler(len(prompts), cfg.seed)
    pair_gen = torch.Generator().manual_seed(cfg.seed)
    logger = MetricsLogger(out, report_to=[], enabled=backend.is_main)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    progress = progress_bar(cfg.progress, total=on.rounds, desc="online dpo")
    metrics: dict[str, float] = {}
    try:
        for round_ in range(1, on.rounds + 1):
            t0 = time.perf_counter()
            batch = [prompts[i] for i in sampler.next_batch(on.prompts_per_round)]
            backend.train_model.eval()   # sample and score the reference without dropout
            groups = engine.generate([p.token_ids for p in batch], params)
            rollouts = Rollouts.from_groups([p.token_ids for p in batch], groups, [p.example for p in batch],
                                            tokenizer)
            scored = spec.score_batch(rollouts.texts, rollouts.examples)
            metrics = rollout_metrics(rewards=scored.totals, correct=scored.correct, lengths=rollouts.lengths,
                                      truncated=rollouts.truncated, group_size=rollouts.group_size)
            pairs = round_pairs(rollouts, scored.totals, cfg, pair_gen)
            metrics["pairs"] = float(len(pairs))
            if pairs:
                table = precompute_reference(ref, pairs, backend, pad_id=tokenizer.pad_token_id,
                                             chunk=cfg.optim.micro_batch_size or len(pairs), packed=cfg.packing,
                                             max_length=cfg.max_length)
                backend.train_model.train()
                for _ in range(on.updates_per_round):
                    metrics.update(dpo_step(backend, pairs, Reference(table=table), cfg, tokenizer.pad_token_id))
                    metrics["grad_norm"] = backend.step(cfg.optim.max_grad_norm)
                if engine.owns_weights:
                    with backend.full_weights() as module:
                        engine.sync_weights(module)
            metrics.update({"lr": backend.scheduler.get_last_lr()[0], "time/round": time.perf_counter() - t0,
                            "answers_sampled": float(round_ * rollouts.size)})
            logger.log(round_, metrics)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(pass1=f"{metrics['pass@1']:.3f}", pairs=len(pairs))
    finally:
        if progress is not None:
            progress.close()
        logger.close()
        engine.close()
        spec.close()
    final = save_model(backend, tokenizer, out, lora=cfg.lora.enabled)
    backend.close()
    return DPOResult(out_dir=out, final_model=final, steps=on.rounds * on.updates_per_round,
                     final_loss=metrics.get("loss", float("nan")), metrics=metrics)


def round_pairs(rollouts: Rollouts, rewards: list[float], cfg: DPOConfig,
                generator: torch.Generator) -> list[PairExample]:
    """The round's preference pairs as token-id examples (prompt + sampled completion, loss on the completion);
    truncated completions are left out (`online.drop_truncated`, like `distill --pairs`' default)."""
    g = rollouts.group_size
    keep = [i for i in range(rollouts.size) if not (cfg.online.drop_truncated and rollouts.truncated[i])]
    if not keep:
        return []
    idx = pair_indices(torch.tensor([rewards[i] for i in keep]), torch.tensor([rollouts.lengths[i] for i in keep]),
                       torch.tensor([i // g for i in keep]), rule=cfg.online.pair_rule,
                       max_pairs_per_group=cfg.online.max_pairs_per_prompt, generator=generator)
    out = []
    for k, (a, b) in enumerate(idx.tolist()):
        ca, cb = keep[a], keep[b]
        out.append(PairExample(k, f"{rollouts.examples[ca].get('id')}#{ca % g}>{cb % g}",
                               _example(rollouts, ca, cfg.max_length), _example(rollouts, cb, cfg.max_length)))
    return out


def _example(rollouts: Rollouts, i: int, max_length: int) -> SFTExample:
    prompt, answer = rollouts.prompt_ids[i], rollouts.completions[i].token_ids
    ids, mask = prompt + list(answer), [0] * len(prompt) + [1] * len(answer)
    return SFTExample(ids[:max_length], mask[:max_length], len(ids) > max_length)

