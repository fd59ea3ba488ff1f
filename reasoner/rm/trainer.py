"""`reasoner rm`: train a Bradley-Terry reward model on preference pairs, report held-out pairwise accuracy.

The loop is SFT's (`sft/trainer.py`) with a pair loss: shuffled batches of pairs, both sides of every pair in
one forward (`PairScorer`: the score head at each row's last real token), the loss of `algorithms/
bradley_terry.py` normalised by the batch's global pair count, AdamW, and the same backends (one process, DDP,
DeepSpeed ZeRO; every rank draws the same batch and scores its share, padded with weight-0 pairs so ranks run
equal passes). Held-out accuracy is the share of held-out pairs scored `r_chosen > r_rejected` (per group
too, e.g. per kind of wrong answer). The result, `<out_dir>/model`, is a `from_pretrained`
`AutoModelForSequenceClassification` with one label, plus `reward_model.json` (the prompt settings it was
trained with, which the `reward_model` verifier uses, and its held-out accuracy).
"""
from __future__ import annotations

import json
import math
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from reasoner.algorithms.bradley_terry import bradley_terry_loss
from reasoner.metrics.progress import progress_bar
from reasoner.models import tokenizer_for
from reasoner.models.value import load_reward_model, sequence_scores
from reasoner.rm.config import RMConfig
from reasoner.rm.data import PairExample, load_preference_rows, pair_examples
from reasoner.training.backend import Backend
from reasoner.training.optim import build_optimizer, build_scheduler
from reasoner.training.prologue import start_run

RM_INFO = "reward_model.json"


@dataclass
class RMResult:
    out_dir: Path
    final_model: Path
    steps: int
    eval_accuracy: float
    eval_by_group: dict[str, float]


class PairScorer(torch.nn.Module):
    """`[B]` scores of right-padded rows (backends wrap this module)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return sequence_scores(self.model, input_ids, attention_mask)


def train_rm(cfg: RMConfig) -> RMResult:
    backend = start_run(cfg, out_dir=cfg.out_dir, distributed=cfg.distributed, seed=cfg.seed, threads=cfg.threads,
                        keep_freed=cfg.keep_freed_memory)
    out = Path(cfg.out_dir)
    tokenizer = tokenizer_for(cfg.model)
    train_pairs, eval_pairs = _load_pairs(cfg, tokenizer)   # data errors before the model loads
    model = load_reward_model(cfg.model)
    model.config.pad_token_id = tokenizer.pad_token_id       # the saved model's own forward pools by it
    total = cfg.max_steps or max(1, int(round(cfg.epochs * math.ceil(len(train_pairs) / cfg.batch_size))))
    optimizer = build_optimizer(model, cfg.optim)
    backend.prepare(model, optimizer, build_scheduler(optimizer, cfg.optim, total),
                    max_grad_norm=cfg.optim.max_grad_norm, scorer=PairScorer(model))
    gen = torch.Generator().manual_seed(cfg.seed)
    log = (out / "metrics.jsonl").open("w") if backend.is_main else None
    progress = progress_bar(cfg.progress and backend.is_main, total=total, desc="rm")
    order: list[int] = []
    accuracy, by_group = float("nan"), {}
    for step in range(1, total + 1):
        if len(order) < cfg.batch_size:
            order += torch.randperm(len(train_pairs), generator=gen).tolist()
        index, order = order[:cfg.batch_size], order[cfg.batch_size:]
        t0 = time.perf_counter()
        backend.train_model.train()
        stats = train_pairs_step(backend, [train_pairs[i] for i in index], tokenizer.pad_token_id, cfg)
        stats["grad_norm"] = backend.step(cfg.optim.max_grad_norm)
        stats.update({"lr": backend.scheduler.get_last_lr()[0], "time/step": time.perf_counter() - t0})
        if cfg.eval_every and step % cfg.eval_every == 0 and step < total and eval_pairs:
            stats["eval/accuracy"], _ = pairwise_accuracy(backend, eval_pairs, tokenizer.pad_token_id, cfg)
        if log is not None and (step % cfg.log_every == 0 or step == total or "eval/accuracy" in stats):
            log.write(json.dumps({"step": step, **stats}) + "\n")
            log.flush()
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['accuracy']:.2f}")
    if eval_pairs:
        accuracy, by_group = pairwise_accuracy(backend, eval_pairs, tokenizer.pad_token_id, cfg)
    if progress is not None:
        progress.close()
    if log is not None:
        log.write(json.dumps({"step": total, "eval/accuracy": accuracy,
                              **{f"eval/accuracy/{k}": v for k, v in by_group.items()}}) + "\n")
        log.close()
    final = out / "model"
    backend.save_model(final, tokenizer)
    if backend.is_main:
        (final / RM_INFO).write_text(json.dumps({"prompt": asdict(cfg.prompt), "max_length": cfg.max_length,
                                                 "eval_accuracy": accuracy, "eval_by_group": by_group,
                                                 "eval_pairs": len(eval_pairs)}, indent=2))
    backend.close()
    return RMResult(out_dir=out, final_model=final, steps=total, eval_accuracy=accuracy, eval_by_group=by_group)


def _load_pairs(cfg: RMConfig, tokenizer) -> tuple[list[PairExample], list[PairExample]]:
    fields = dict(chosen_field=cfg.chosen_field, rejected_field=cfg.rejected_field, margin_field=cfg.margin_field)
    encode = dict(prompt=cfg.prompt, max_length=cfg.max_length, group_field=cfg.group_field, **fields)
    pairs = pair_examples(tokenizer, load_preference_rows(cfg.data, **fields), **encode)
    if cfg.eval_data is not None:
        held_out = pair_examples(tokenizer, load_preference_rows(cfg.eval_data, **fields), **encode)
    else:
        random.Random(cfg.seed).shuffle(pairs)
        n_eval = int(round(cfg.eval_fraction * len(pairs)))
        held_out, pairs = pairs[:n_eval], pairs[n_eval:]
    cut = sum(p.truncated for p in pairs + held_out)
    if cut:
        print(f"[rm] {cut} of {len(pairs) + len(held_out)} pairs truncated to max_length={cfg.max_length}")
    if not pairs:
        raise ValueError("no training pairs left after the held-out split")
    return pairs, held_out


def _share(pairs: list[PairExample], backend: Backend) -> tuple[list[PairExample], list[float]]:
    """This rank's pairs `rank, rank + W, ...` and their weights, padded with weight-0 copies to equal size."""
    mine = list(pairs[backend.rank::backend.world_size])
    size = -(-len(pairs) // backend.world_size)
    return mine + [pairs[0]] * (size - len(mine)), [1.0] * len(mine) + [0.0] * (size - len(mine))


def _collate(pairs: list[PairExample], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded `[2B, L]` ids and attention mask: the chosen sides, then the rejected ones."""
    seqs = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids.to(device), mask.to(device)


def train_pairs_step(backend: Backend, batch: list[PairExample], pad_id: int, cfg: RMConfig) -> dict[str, float]:
    """Forward / backward of one batch of pairs in micro-batches (no optimizer step); returns its statistics."""
    mine, weights = _share(batch, backend)
    micro = cfg.optim.micro_batch_size or len(mine)
    starts = list(range(0, len(mine), micro))
    sums = defaultdict(float)
    for i, start in enumerate(starts):
        part, w = mine[start:start + micro], torch.tensor(weights[start:start + micro], device=backend.device)
        with backend.micro_batch(last=i == len(starts) - 1):
            scores = backend.train_model(*_collate(part, pad_id, backend.device))
            chosen, rejected = scores[:len(part)], scores[len(part):]
            margin = torch.tensor([p.margin for p in part], device=backend.device) if cfg.margin_field else None
            # The global pair count over the world size: data-parallel backends average gradients over ranks.
            loss, stats = bradley_terry_loss(chosen, rejected, margin=margin, center_coef=cfg.center_coef,
                                             weights=w, num_pairs=len(batch) / backend.world_size)
            backend.backward(loss)
        live = float(w.sum())
        sums["loss"] += float(loss.detach())
        sums["accuracy"] += float(stats.accuracy) * live
        sums["margin"] += float(stats.margin) * live
        sums["score_mean"] += float((chosen.detach() + rejected.detach()).mul(w).sum()) / 2
    keys = sorted(sums)
    total = backend.all_reduce_sum([sums[k] for k in keys])
    out = dict(zip(keys, total))
    out["loss"] /= backend.world_size
    for key in ("accuracy", "margin", "score_mean"):
        out[key] /= len(batch)
    return out


@torch.no_grad()
def pairwise_accuracy(backend: Backend, pairs: list[PairExample], pad_id: int,
                      cfg: RMConfig) -> tuple[float, dict[str, float]]:
    """Share of `pairs` with `r_chosen > r_rejected`, overall and per group (every rank scores its share)."""
    mine, weights = _share(pairs, backend)
    model = backend.train_model
    model.eval()
    hits: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    step = cfg.optim.micro_batch_size or 64
    for start in range(0, len(mine), step):
        part = mine[start:start + step]
        scores = model(*_collate(part, pad_id, backend.device))
        for p, w, c, r in zip(part, weights[start:start + step], scores[:len(part)], scores[len(part):]):
            for key in ("", p.group) if p.group is not None else ("",):
                hits[key][0] += w * float(c > r)
                hits[key][1] += w
    model.train()
    keys = sorted(set(k for ranks in backend.all_gather_object(sorted(hits)) for k in ranks))
    sums = backend.all_reduce_sum([hits[k][0] for k in keys] + [hits[k][1] for k in keys])
    result = {k: sums[i] / max(sums[len(keys) + i], 1.0) for i, k in enumerate(keys)}
    return result.pop(""), result
