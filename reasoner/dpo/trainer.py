"""`reasoner dpo`: offline preference optimisation on SFT's backends, LoRA, packing and saved-model layout.

Reads top to bottom: the prologue every stage shares (`start_run`), pairs tokenized by SFT's tokenizer, the model
(LoRA when configured), the backend wrapping `SequenceLogps` (DPO's forward), the reference (precomputed once or a
frozen copy, `reference.py`), then per step: a batch of pairs from the same seeded epoch permutation the RL loop
draws prompts with (`PromptSampler`), `dpo_step` (micro-batches of pairs -> `preference_loss` -> backward), the
optimizer step, the metrics TRL logs (`rewards/chosen`, `rewards/rejected`, `rewards/margin`, `rewards/accuracy`,
`logps/chosen`, `logps/rejected`). The model goes to `<out_dir>/model` exactly as SFT saves it.

Every rank draws the same batch and trains on its slice (`batch_size` must divide by the number of processes);
each rank's loss is normalised by the whole batch's counts divided by the world size, so the averaged gradient is
the gradient of the batch's mean loss whatever the micro-batching.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

from reasoner.config import ConfigError
from reasoner.dpo.config import DPOConfig
from reasoner.dpo.data import PairExample, load_preference_rows, tokenize_pairs
from reasoner.dpo.reference import Reference, load_or_precompute
from reasoner.dpo.scorer import SequenceLogps
from reasoner.dpo.step import DPOResult, dpo_step, sequence_scorer
from reasoner.metrics.logger import MetricsLogger
from reasoner.metrics.progress import progress_bar
from reasoner.models import load_model, tokenizer_for
from reasoner.sft.trainer import save_model, wrap_lora
from reasoner.training.backend import Backend
from reasoner.training.optim import build_optimizer, build_scheduler
from reasoner.training.prologue import start_run
from reasoner.training.sampler import PromptSampler


def dpo(cfg: DPOConfig, rows: list[dict] | None = None) -> DPOResult:
    """Trains `cfg.model` on the preference pairs `rows` (or `cfg.data`); returns where the model was saved.
    With `online.enabled`, on-policy DPO instead (`reasoner.dpo.online`: pairs sampled and graded each round)."""
    if cfg.online.enabled:
        from reasoner.dpo.online import online_dpo
        return online_dpo(cfg)
    backend = start_run(cfg, out_dir=cfg.out_dir, distributed=cfg.distributed, seed=cfg.seed, threads=cfg.threads,
                        keep_freed=cfg.keep_freed_memory)
    if cfg.batch_size % backend.world_size:
        raise ConfigError(f"batch_size={cfg.batch_size} must be divisible by the number of processes "
                          f"({backend.world_size}): every rank trains on an equal slice of each batch")
    out = Path(cfg.out_dir)
    tokenizer = tokenizer_for(cfg.model)
    pairs = prepare_pairs(tokenizer, rows, cfg)   # data errors surface before the model loads
    model = wrap_lora(load_model(cfg.model), cfg)
    total = cfg.max_steps or max(1, int(round(cfg.epochs * math.ceil(len(pairs) / cfg.batch_size))))
    optimizer = build_optimizer(model, cfg.optim)
    backend.prepare(model, optimizer, build_scheduler(optimizer, cfg.optim, total),
                    max_grad_norm=cfg.optim.max_grad_norm, scorer=sequence_scorer(model, cfg, backend))
    reference = build_reference(cfg, backend, pairs, tokenizer.pad_token_id)
    sampler = PromptSampler(len(pairs), cfg.seed)
    logger = MetricsLogger(out, report_to=[], enabled=backend.is_main)
    if backend.is_main:
        (out / "metrics.jsonl").unlink(missing_ok=True)  # a fresh run: no stale log in the same folder
    progress = progress_bar(cfg.progress and backend.is_main, total=total, desc="dpo")
    metrics: dict[str, float] = {}
    backend.train_model.train()
    for step in range(1, total + 1):
        t0 = time.perf_counter()
        batch = sampler.next_batch(cfg.batch_size)[backend.rank::backend.world_size]
        metrics = dpo_step(backend, [pairs[i] for i in batch], reference, cfg, tokenizer.pad_token_id)
        metrics["grad_norm"] = backend.step(cfg.optim.max_grad_norm)
        metrics.update({"lr": backend.scheduler.get_last_lr()[0], "epoch": sampler.state.epoch,
                        "time/step": time.perf_counter() - t0})
        if step % cfg.log_every == 0 or step == total:
            logger.log(step, metrics)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['rewards/accuracy']:.2f}")
    if progress is not None:
        progress.close()
    logger.close()
    final = save_model(backend, tokenizer, out, lora=cfg.lora.enabled)
    backend.close()
    return DPOResult(out_dir=out, final_model=final, steps=total, final_loss=metrics.get("loss", float("nan")),
                     metrics=metrics)


def prepare_pairs(tokenizer, rows: list[dict] | None, cfg: DPOConfig) -> list[PairExample]:
    if rows is None:
        rows = load_preference_rows(cfg.data, chosen_field=cfg.chosen_field, rejected_field=cfg.rejected_field)
    pairs = tokenize_pairs(tokenizer, rows, prompt=cfg.prompt, max_length=cfg.max_length)
    cut = sum(p.chosen.truncated or p.rejected.truncated for p in pairs)
    if cut:
        print(f"[dpo] {cut} of {len(pairs)} pairs have a side truncated to max_length={cfg.max_length}")
    return pairs


def build_reference(cfg: DPOConfig, backend: Backend, pairs: Sequence[PairExample], pad_id: int) -> Reference:
    """The reference as `cfg.reference` says: a precomputed table (by the policy before training, or by
    `ref_model`) or a frozen copy of `ref_model` / `model.path` (module docstring of `reference.py`)."""
    source = cfg.ref_model or cfg.model.path
    frozen = None
    if cfg.reference == "frozen" or cfg.ref_model:
        frozen = SequenceLogps(load_model(cfg.model, path=source, trainable=False), fused_head=cfg.optim.fused_head)
    if cfg.reference == "frozen":
        return Reference(scorer=frozen)
    chunk = cfg.optim.micro_batch_size or cfg.batch_size // backend.world_size
    table, fresh = load_or_precompute(Path(cfg.out_dir), source, frozen or backend.train_model, pairs, backend,
                                      pad_id=pad_id, chunk=chunk, packed=cfg.packing, max_length=cfg.max_length)
    if backend.is_main:
        print(f"[dpo] reference log-probs of {len(pairs)} pairs {'computed' if fresh else 'read from the store'}")
    return Reference(table=table)
