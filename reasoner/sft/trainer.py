"""The SFT loop: shuffled batches, next-token cross-entropy on response tokens, AdamW, the saved model.

The loss of a batch is the mean over its response tokens (micro-batches are normalised by the batch's global
token count, so gradient accumulation does not change it). Backward, optimizer step and saving go through a
training backend (reasoner.training.backend): one process, or several under torchrun with DDP or DeepSpeed ZeRO,
where every rank draws the same batch, trains on its share and only rank 0 writes. The final model is written
with `save_pretrained` (plus the tokenizer) to `<out_dir>/model`, which the GRPO trainer, `reasoner eval` and
`from_pretrained` load; with LoRA that is the merged model, and the adapter alone goes to `<out_dir>/adapter`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reasoner.config import to_dict
from reasoner.metrics.logger import MetricsLogger, read_metrics
from reasoner.metrics.plots import SFT_FIGURES, plot_run
from reasoner.metrics.progress import progress_bar
from reasoner.metrics.report import SFT_HEADLINE, write_report
from reasoner.models import load_model, tokenizer_for
from reasoner.models.card import ModelCard, card_metrics, write_model_card
from reasoner.sft.config import SFTConfig
from reasoner.sft.data import SFTExample, load_sft_rows, pack_examples, tokenize_examples
from reasoner.sft.loss import SFTLoss, as_sft_loss
from reasoner.training.backend import Backend, SingleProcess
from reasoner.training.optim import build_optimizer, build_scheduler
from reasoner.training.prologue import start_run
from reasoner.training.sharding import shard_examples


@dataclass
class SFTResult:
    out_dir: Path
    final_model: Path
    steps: int
    final_loss: float


def sft(cfg: SFTConfig, rows: list[dict] | None = None) -> SFTResult:
    """Fine-tunes `cfg.model` on `rows` (or on `cfg.data`); returns where the model was saved."""
    # The same seed on every rank: all draw the same batches, each trains on its share.
    backend = start_run(cfg, out_dir=cfg.out_dir, distributed=cfg.distributed, seed=cfg.seed, threads=cfg.threads,
                        keep_freed=cfg.keep_freed_memory)
    out = Path(cfg.out_dir)
    tokenizer = tokenizer_for(cfg.model)
    examples = prepare_examples(tokenizer, rows, cfg)  # data errors surface before the model loads
    model = wrap_lora(load_model(cfg.model), cfg)
    total = cfg.max_steps or max(1, int(round(cfg.epochs * math.ceil(len(examples) / cfg.batch_size))))
    optimizer = build_optimizer(model, cfg.optim)
    backend.prepare(model, optimizer, build_scheduler(optimizer, cfg.optim, total),
                    max_grad_norm=cfg.optim.max_grad_norm,
                    scorer=SFTLoss(model, fused_head=cfg.optim.fused_head, partitioned=backend.partitions_parameters))
    gen = torch.Generator().manual_seed(cfg.seed)
    (out / "metrics.jsonl").unlink(missing_ok=True)  # SFT does not resume: a fresh log per run
    logger = MetricsLogger(out, report_to=cfg.log.report_to, enabled=backend.is_main, project=cfg.log.project,
                           run_name=cfg.log.run_name, config=to_dict(cfg))
    progress = progress_bar(cfg.log.progress and backend.is_main, total=total, desc="sft")
    loss_value, order = float("nan"), []
    backend.train_model.train()
    for step in range(1, total + 1):
        if len(order) < cfg.batch_size:
            order += torch.randperm(len(examples), generator=gen).tolist()
        batch_idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        t0 = time.perf_counter()
        loss_value, tokens = train_batch(model, [examples[i] for i in batch_idx], tokenizer.pad_token_id, cfg,
                                         backend.device, backend=backend)
        grad_norm = backend.step(cfg.optim.max_grad_norm)
        if step % cfg.log.every == 0 or step == total:
            logger.log(step, {"loss": loss_value, "grad_norm": grad_norm, "lr": backend.scheduler.get_last_lr()[0],
                              "tokens": tokens, "time/step": time.perf_counter() - t0})
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.3f}")
    if progress is not None:
        progress.close()
    logger.close()
    final = save_model(backend, tokenizer, out, lora=cfg.lora.enabled)
    if backend.is_main:
        finish_report(cfg, total, len(examples))
    backend.close()
    return SFTResult(out_dir=out, final_model=final, steps=total, final_loss=loss_value)


def finish_report(cfg: SFTConfig, steps: int, num_examples: int) -> None:
    """`<out_dir>/report.md` and `plots/` (loss, grad norm, lr), as a GRPO run writes them."""
    out = Path(cfg.out_dir)
    records = read_metrics(out / "metrics.jsonl")
    plots = plot_run(records, out / "plots", figures=SFT_FIGURES) if cfg.log.plots and records else []
    summary = {"data": cfg.data.source, "examples": num_examples, "steps": steps, "batch size": cfg.batch_size,
               "lr": cfg.optim.lr, "packing": cfg.packing, "lora": cfg.lora.enabled}
    write_report(out / "report.md", title=f"SFT run: {out.name}", records=records, plots=plots,
                 headline=SFT_HEADLINE, summary={"model": cfg.model.path, **summary})
    write_model_card(out / "model", ModelCard(stage="sft", base_model=cfg.model.path, summary=summary,
                                              metrics=card_metrics(records, ["loss"])))


def prepare_examples(tokenizer, rows: list[dict] | None, cfg: SFTConfig) -> list[SFTExample]:
    """Rows (given, or read from `cfg.data`) -> tokenized examples, packed when `cfg.packing`."""
    if rows is None:
        rows = load_sft_rows(cfg.data, response_field=cfg.response_field, messages_field=cfg.messages_field,
                             row_format=cfg.row_format)
    examples = tokenize_examples(tokenizer, rows, prompt=cfg.prompt, response_field=cfg.response_field,
                                 messages_field=cfg.messages_field, max_length=cfg.max_length,
                                 row_format=cfg.row_format)
    n_truncated = sum(e.truncated for e in examples)
    if n_truncated:
        print(f"[sft] {n_truncated} of {len(examples)} examples truncated to max_length={cfg.max_length}")
    if cfg.packing:
        packed = pack_examples(examples, cfg.max_length)
        print(f"[sft] packed {len(examples)} examples into {len(packed)} rows of <= {cfg.max_length} tokens")
        return packed
    return examples


def wrap_lora(model, cfg: SFTConfig | Any):
    """Low-rank adapters on `cfg.lora.target_modules` (base weights frozen), or the model unchanged (`cfg`: any
    stage config with a `lora` section: SFT, DPO)."""
    if not cfg.lora.enabled:
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ImportError("lora.enabled needs the `peft` package (pip install 'reasoner-rl[lora]')") from e
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def save_model(backend: Backend, tokenizer, out: Path, *, lora: bool) -> Path:
    """`<out>/model`: a plain `from_pretrained` checkpoint (LoRA merged into it; the adapter in `<out>/adapter`)."""
    final = out / "model"
    if not lora:
        backend.save_model(final, tokenizer)
        return final
    with backend.full_weights() as model:
        if backend.is_main:
            model.save_pretrained(out / "adapter")
            merged = model.merge_and_unload()
            merged.save_pretrained(final, safe_serialization=True)
            tokenizer.save_pretrained(final)
    backend.barrier()
    return final


def train_batch(model, batch: list[SFTExample], pad_id: int, cfg: SFTConfig, device, *,
                backend: Backend | None = None) -> tuple[float, int]:
    """Forward/backward over `batch` in micro-batches; returns (mean response-token loss, response tokens).

    With a multi-process `backend`, `batch` is the whole step's batch: this rank runs its share, and the loss is
    normalised by the token count of the whole batch (divided by the world size: gradients are averaged)."""
    backend = backend or SingleProcess.wrapping(model, None, None)
    mine = shard_examples(batch, backend)
    local_tokens = sum(sum(e.loss_mask[1:]) for e in mine)  # the first token is never predicted
    num_tokens = backend.all_reduce_sum([local_tokens])[0]
    if num_tokens == 0:
        return 0.0, 0
    norm = num_tokens / backend.world_size
    micro = cfg.optim.micro_batch_size or len(mine)
    starts = list(range(0, len(mine), micro))
    total = 0.0
    for i, start in enumerate(starts):
        with backend.micro_batch(last=i == len(starts) - 1):
            tensors = {k: v.to(device) for k, v in collate_sft(mine[start:start + micro], pad_id).items()}
            loss = as_sft_loss(backend.train_model)(tensors, norm)
            backend.backward(loss)
        total += float(loss.detach())
    return backend.all_reduce_sum([total])[0] / backend.world_size, int(num_tokens)


def sft_loss(model, tensors: dict[str, torch.Tensor], num_tokens: int, device) -> torch.Tensor:
    """Summed next-token cross-entropy over target tokens of one micro-batch, divided by the batch's target count
    (`model` an `SFTLoss`, a backend's wrapper of one, or a bare model: the reference loss)."""
    return as_sft_loss(model)({k: v.to(device) for k, v in tensors.items()}, num_tokens)


def collate_sft(batch: list[SFTExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded model inputs and `labels` (-100 outside the loss mask).

    Unpacked rows get an attention mask; packed rows get `position_ids` instead (and no attention mask, which is
    how transformers recognises packed sequences); padding then continues as one more "sequence" of its own.
    """
    width = max(len(e.input_ids) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    packed = any(e.position_ids is not None for e in batch)
    extra = torch.zeros((len(batch), width), dtype=torch.long)  # attention mask, or position ids when packed
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids = torch.tensor(e.input_ids, dtype=torch.long)
        input_ids[i, :n] = ids
        labels[i, :n] = torch.where(torch.tensor(e.loss_mask, dtype=torch.bool), ids, torch.tensor(-100))
        if packed:
            positions = e.position_ids if e.position_ids is not None else list(range(n))
            extra[i, :n] = torch.tensor(positions, dtype=torch.long)
            extra[i, n:] = torch.arange(width - n)
        else:
            extra[i, :n] = 1
    key = "position_ids" if packed else "attention_mask"
    return {"input_ids": input_ids, key: extra, "labels": labels}


