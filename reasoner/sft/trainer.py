"""The SFT loop: shuffled batches, next-token cross-entropy on response tokens, AdamW, the saved model.

The loss of a batch is the mean over its response tokens (micro-batches are normalised by the batch's global
token count, so gradient accumulation does not change it). The final model is written with `save_pretrained`
(plus the tokenizer) to `<out_dir>/model`, which the GRPO trainer, `reasoner eval` and `from_pretrained` load.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from reasoner.config import save_config
from reasoner.data import load_examples
from reasoner.models import load_model, load_tokenizer
from reasoner.sft.config import SFTConfig
from reasoner.sft.data import SFTExample, tokenize_examples
from reasoner.training.optim import build_optimizer, build_scheduler
from reasoner.training.rng import set_seed


@dataclass
class SFTResult:
    out_dir: Path
    final_model: Path
    steps: int
    final_loss: float


def sft(cfg: SFTConfig, rows: list[dict] | None = None) -> SFTResult:
    """Fine-tunes `cfg.model` on `rows` (or on `cfg.data`); returns where the model was saved."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.model.tokenizer or cfg.model.path, trust_remote_code=cfg.model.trust_remote_code)
    model = load_model(cfg.model)
    rows = rows if rows is not None else load_examples(cfg.data, require_answer=False)
    examples = tokenize_examples(tokenizer, rows, template=cfg.data.template, system_prompt=cfg.data.system_prompt,
                                 instruction=cfg.data.instruction, response_field=cfg.response_field,
                                 messages_field=cfg.messages_field, max_length=cfg.max_length)
    n_truncated = sum(e.truncated for e in examples)
    if n_truncated:
        print(f"[sft] {n_truncated} of {len(examples)} examples truncated to max_length={cfg.max_length}")
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = cfg.max_steps or max(1, int(round(cfg.epochs * steps_per_epoch)))
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, total)
    pad_id = tokenizer.pad_token_id
    gen = torch.Generator().manual_seed(cfg.seed)
    device = next(model.parameters()).device
    log = (out / "metrics.jsonl").open("w")
    progress = _progress(cfg, total)
    loss_value = float("nan")
    order: list[int] = []
    model.train()
    for step in range(1, total + 1):
        if len(order) < cfg.batch_size:
            order += torch.randperm(len(examples), generator=gen).tolist()
        batch_idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        t0 = time.perf_counter()
        loss_value, tokens = train_batch(model, [examples[i] for i in batch_idx], pad_id, cfg, device)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            model.parameters(), cfg.optim.max_grad_norm if cfg.optim.max_grad_norm else float("inf"))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % cfg.log_every == 0 or step == total:
            rec = {"step": step, "loss": loss_value, "grad_norm": float(grad_norm), "lr": scheduler.get_last_lr()[0],
                   "tokens": tokens, "time/step": time.perf_counter() - t0}
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.3f}")
    if progress is not None:
        progress.close()
    log.close()
    final = out / "model"
    model.save_pretrained(final, safe_serialization=True)
    tokenizer.save_pretrained(final)
    return SFTResult(out_dir=out, final_model=final, steps=total, final_loss=loss_value)


def train_batch(model, batch: list[SFTExample], pad_id: int, cfg: SFTConfig, device) -> tuple[float, int]:
    """Forward/backward over `batch` in micro-batches; returns (mean response-token loss, response tokens)."""
    num_tokens = sum(sum(e.loss_mask[1:]) for e in batch)  # the first token is never predicted
    if num_tokens == 0:
        return 0.0, 0
    micro = cfg.optim.micro_batch_size or len(batch)
    total = 0.0
    for start in range(0, len(batch), micro):
        input_ids, attention, labels = collate_sft(batch[start:start + micro], pad_id)
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(),
                                                 labels[:, 1:].flatten().to(device), ignore_index=-100,
                                                 reduction="sum") / num_tokens
        loss.backward()
        total += float(loss.detach())
    return total, num_tokens


def collate_sft(batch: list[SFTExample], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded `(input_ids, attention_mask, labels)`; labels are -100 outside the loss mask."""
    width = max(len(e.input_ids) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids = torch.tensor(e.input_ids, dtype=torch.long)
        input_ids[i, :n] = ids
        attention[i, :n] = 1
        labels[i, :n] = torch.where(torch.tensor(e.loss_mask, dtype=torch.bool), ids, torch.tensor(-100))
    return input_ids, attention, labels


def _progress(cfg: SFTConfig, total: int):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="sft", dynamic_ncols=True)
