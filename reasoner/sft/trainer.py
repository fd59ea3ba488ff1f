"""The SFT loop: shuffled batches, next-token cross-entropy on response tokens, AdamW, the saved model.

The loss of a batch is the mean over its response tokens (micro-batches are normalised by the batch's global
token count, so gradient accumulation does not change it). The final model is written with `save_pretrained`
(plus the tokenizer) to `<out_dir>/model`, which the GRPO trainer, `reasoner eval` and `from_pretrained` load;
with LoRA that is the merged model, and the adapter alone goes to `<out_dir>/adapter`.

A step is three small pieces: `sft_loss` (forward + loss of one micro-batch), `backend.backward(loss)` and
`backend.step()` (clip, optimizer, scheduler). `TorchBackend` is plain PyTorch; a DeepSpeed engine offers the
same two calls (`engine.backward`, `engine.step`), so a backend wrapping it can replace this one without touching
the loop.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from reasoner.config import save_config
from reasoner.models import load_model, load_tokenizer
from reasoner.sft.config import SFTConfig
from reasoner.sft.data import SFTExample, load_sft_rows, pack_examples, tokenize_examples
from reasoner.training.optim import build_optimizer, build_scheduler
from reasoner.training.rng import set_seed


@dataclass
class SFTResult:
    out_dir: Path
    final_model: Path
    steps: int
    final_loss: float


class TorchBackend:
    """backward / optimizer step for a model in this process (the seam for a DeepSpeed backend)."""

    def __init__(self, model: torch.nn.Module, cfg: SFTConfig, total_steps: int):
        self.model = model
        self.optimizer = build_optimizer(model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, total_steps)
        self.max_grad_norm = cfg.optim.max_grad_norm

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        """Clip, step, schedule, zero; returns the gradient norm before clipping."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm or float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(grad_norm)

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]


def sft(cfg: SFTConfig, rows: list[dict] | None = None) -> SFTResult:
    """Fine-tunes `cfg.model` on `rows` (or on `cfg.data`); returns where the model was saved."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.model.tokenizer or cfg.model.path, trust_remote_code=cfg.model.trust_remote_code)
    examples = prepare_examples(tokenizer, rows, cfg)  # data errors surface before the model loads
    model = wrap_lora(load_model(cfg.model), cfg)
    total = cfg.max_steps or max(1, int(round(cfg.epochs * math.ceil(len(examples) / cfg.batch_size))))
    backend = TorchBackend(model, cfg, total)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    progress = _progress(cfg, total)
    loss_value, order = float("nan"), []
    model.train()
    with (out / "metrics.jsonl").open("w") as log:
        for step in range(1, total + 1):
            if len(order) < cfg.batch_size:
                order += torch.randperm(len(examples), generator=gen).tolist()
            batch_idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
            t0 = time.perf_counter()
            loss_value, tokens = train_batch(model, [examples[i] for i in batch_idx], tokenizer.pad_token_id, cfg,
                                             device, backward=backend.backward)
            grad_norm = backend.step()
            if step % cfg.log_every == 0 or step == total:
                log.write(json.dumps({"step": step, "loss": loss_value, "grad_norm": grad_norm, "lr": backend.lr,
                                      "tokens": tokens, "time/step": time.perf_counter() - t0}) + "\n")
                log.flush()
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{loss_value:.3f}")
    if progress is not None:
        progress.close()
    final = save_model(model, tokenizer, out, lora=cfg.lora.enabled)
    return SFTResult(out_dir=out, final_model=final, steps=total, final_loss=loss_value)


def prepare_examples(tokenizer, rows: list[dict] | None, cfg: SFTConfig) -> list[SFTExample]:
    """Rows (given, or read from `cfg.data`) -> tokenized examples, packed when `cfg.packing`."""
    if rows is None:
        rows = load_sft_rows(cfg.data, response_field=cfg.response_field, messages_field=cfg.messages_field,
                             row_format=cfg.row_format)
    examples = tokenize_examples(tokenizer, rows, template=cfg.data.template, system_prompt=cfg.data.system_prompt,
                                 instruction=cfg.data.instruction, response_field=cfg.response_field,
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


def wrap_lora(model, cfg: SFTConfig):
    """Low-rank adapters on `cfg.lora.target_modules` (base weights frozen), or the model unchanged."""
    if not cfg.lora.enabled:
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ImportError("lora.enabled needs the `peft` package (pip install 'reasoner[lora]')") from e
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def save_model(model, tokenizer, out: Path, *, lora: bool) -> Path:
    """`<out>/model`: a plain `from_pretrained` checkpoint (LoRA merged into it; the adapter in `<out>/adapter`)."""
    final = out / "model"
    if lora:
        model.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(final, safe_serialization=True)
    tokenizer.save_pretrained(final)
    return final


def train_batch(model, batch: list[SFTExample], pad_id: int, cfg: SFTConfig, device,
                backward=lambda loss: loss.backward()) -> tuple[float, int]:
    """Forward/backward over `batch` in micro-batches; returns (mean response-token loss, response tokens)."""
    num_tokens = sum(sum(e.loss_mask[1:]) for e in batch)  # the first token is never predicted
    if num_tokens == 0:
        return 0.0, 0
    micro = cfg.optim.micro_batch_size or len(batch)
    total = 0.0
    for start in range(0, len(batch), micro):
        loss = sft_loss(model, collate_sft(batch[start:start + micro], pad_id), num_tokens, device)
        backward(loss)
        total += float(loss.detach())
    return total, num_tokens


def sft_loss(model, tensors: dict[str, torch.Tensor], num_tokens: int, device) -> torch.Tensor:
    """Summed next-token cross-entropy over target tokens of one micro-batch, divided by the batch's target count."""
    labels = tensors["labels"].to(device)
    logits = model(**{k: v.to(device) for k, v in tensors.items() if k != "labels"}, use_cache=False).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                             ignore_index=-100, reduction="sum") / num_tokens


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


def _progress(cfg: SFTConfig, total: int):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="sft", dynamic_ncols=True)
