"""DeepSpeed ZeRO-2 / ZeRO-3 behind the `Backend` interface.

Configs ship in `reasoner/configs/deepspeed/` (`zero2`, `zero3`, `zero3_offload`); `distributed.deepspeed_config`
names one of them or a JSON file of the user's. Values written `"auto"` are filled from the run's own settings:
- batch sizes: DeepSpeed's `train_micro_batch_size_per_gpu` / `gradient_accumulation_steps` are set to 1 and the
  accumulation boundary is set by hand (`set_gradient_accumulation_boundary`), because the trainer decides how
  many micro-batches make an optimizer step (it varies with filtering and μ/minibatch settings) and normalises the
  loss by global token counts itself. A config that fixes these to other numbers is rejected;
- `gradient_clipping` from `optim.max_grad_norm`; `bf16.enabled` from the model's dtype.
The optimizer is the trainer's own `torch.optim.AdamW` (`zero_allow_untested_optimizer`), which avoids compiling
DeepSpeed's CPU Adam; the learning-rate scheduler is handed to DeepSpeed, which steps it with the optimizer.

ZeRO-3 partitions parameters, so every forward is a collective: the trainer keeps the number of forward/backward
passes equal on every rank (see `batch.pad_rows`), and generation, engine weight sync and model saving run
inside `full_weights()`, which gathers the parameters and detaches ZeRO's hooks for that time (the same approach
as TRL's `unwrap_model_for_generation`).
"""
from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from reasoner.training.backend import DistributedConfig, _ProcessGroup

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "deepspeed"
_FIXED_ONE = ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps")


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_deepspeed_config(name_or_path: str) -> tuple[dict, str]:
    """`(config dict, where it came from)` for a shipped config name or a JSON path."""
    path = Path(name_or_path)
    if not path.suffix and (CONFIG_DIR / f"{name_or_path}.json").is_file():
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise ValueError(f"distributed.deepspeed_config '{name_or_path}' is neither a shipped config "
                         f"({', '.join(shipped_configs())}) nor an existing JSON file")
    try:
        return json.loads(path.read_text()), str(path)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON: {e}") from None


def resolve_deepspeed_config(raw: dict, where: str, *, world_size: int, max_grad_norm: float | None,
                             dtype: torch.dtype) -> dict:
    """Fill the `"auto"` values from the run's settings; reject settings that would fight the trainer's."""
    cfg = json.loads(json.dumps(raw))  # deep copy
    for key in _FIXED_ONE:
        if cfg.get(key, "auto") not in ("auto", 1):
            raise ValueError(f"{where}: '{key}' must be \"auto\" or 1: the trainer sets micro-batches itself "
                             "(optim.micro_batch_size) and marks the accumulation boundary by hand")
        cfg[key] = 1
    if cfg.get("train_batch_size", "auto") not in ("auto", world_size):
        raise ValueError(f"{where}: 'train_batch_size' must be \"auto\" (the trainer sets batch sizes itself)")
    cfg["train_batch_size"] = world_size
    if cfg.get("gradient_clipping", "auto") == "auto":
        cfg["gradient_clipping"] = float(max_grad_norm) if max_grad_norm else 0.0
    for key, want in (("bf16", dtype == torch.bfloat16), ("fp16", dtype == torch.float16)):
        section = cfg.setdefault(key, {})
        if section.get("enabled", "auto") == "auto":
            section["enabled"] = want
    if cfg.get("fp16", {}).get("enabled"):
        raise ValueError(f"{where}: fp16 training is not supported (use bf16 or fp32)")
    stage = cfg.get("zero_optimization", {}).get("stage", 0)
    if stage not in (2, 3):
        raise ValueError(f"{where}: zero_optimization.stage must be 2 or 3, got {stage}")
    cfg.setdefault("zero_allow_untested_optimizer", True)
    return cfg


class DeepSpeedBackend(_ProcessGroup):
    name = "deepspeed"

    def __init__(self, cfg: DistributedConfig):
        _single_process_defaults()
        self._raw_config, self._config_where = load_deepspeed_config(cfg.deepspeed_config)
        super().__init__(cfg)
        self.engine = None
        self.stage = int(self._raw_config.get("zero_optimization", {}).get("stage", 0))

    def _init_process_group(self) -> None:
        import deepspeed
        deepspeed.init_distributed(dist_backend=self.comm_backend, timeout=self.timeout, verbose=False)

    @property
    def partitions_parameters(self) -> bool:
        return self.stage >= 3

    def prepare(self, model, optimizer, scheduler, *, max_grad_norm: float | None = None,
                scorer: torch.nn.Module | None = None) -> None:
        import deepspeed

        config = resolve_deepspeed_config(self._raw_config, self._config_where, world_size=self.world_size,
                                          max_grad_norm=max_grad_norm, dtype=next(model.parameters()).dtype)
        engine, ds_optimizer, _, ds_scheduler = deepspeed.initialize(model=scorer or model, optimizer=optimizer,
                                                                     lr_scheduler=scheduler, config=config)
        self.engine = engine
        self.module, self.train_model = model, engine
        self.optimizer, self.scheduler = ds_optimizer, scheduler
        self.config = config

    # ------------------------------------------------------------------------------------------ update
    @contextmanager
    def micro_batch(self, last: bool):
        self.engine.set_gradient_accumulation_boundary(last)
        yield

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self, max_grad_norm: float | None) -> float:
        # Clipping comes from the config's gradient_clipping (filled from optim.max_grad_norm); the scheduler is
        # stepped by DeepSpeed together with the optimizer.
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    # ------------------------------------------------------------------------------------------ ZeRO-3 weights
    @contextmanager
    def full_weights(self) -> Iterator[torch.nn.Module]:
        if self.stage < 3 or self.engine is None:
            yield self.module
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
            _remove_zero3_hooks(self.engine)
            try:
                yield self.module
            finally:
                _add_zero3_hooks(self.engine)

    # ------------------------------------------------------------------------------------------ checkpoints
    def save_training_state(self, ckpt: Path) -> None:
        # Collective: every rank writes its own optimizer partition (same world size needed to resume).
        self.engine.save_checkpoint(str(ckpt / "deepspeed"), tag="state", save_latest=False)

    def load_training_state(self, ckpt: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(ckpt / "deepspeed"), tag="state", load_optimizer_states=True,
                                              load_lr_scheduler_states=True)
        if path is None:
            raise FileNotFoundError(f"{ckpt / 'deepspeed'}: no DeepSpeed checkpoint 'state' to resume from")


def _offload(engine) -> Any:
    """ZeRO-3's parameter-offload object, which owns the module hooks."""
    opt = engine.optimizer
    return opt.parameter_offload if hasattr(opt, "parameter_offload") else opt


def _remove_zero3_hooks(engine) -> None:
    offload = _offload(engine)
    for param in offload.module.parameters(recurse=True):
        param.ds_active_sub_modules.clear()
    for hook in offload.forward_hooks + offload.backward_hooks:
        hook.remove()
    offload.forward_hooks, offload.backward_hooks = [], []


def _add_zero3_hooks(engine) -> None:
    offload = _offload(engine)
    coordinator = getattr(offload, "param_coordinator", None)
    if coordinator is not None and not coordinator.is_invalid_trace():
        coordinator._invalidate_trace()  # the generation passes changed the module call order it recorded
    offload._register_deepspeed_module(offload.module)


def _single_process_defaults() -> None:
    """Let DeepSpeed run as one process without a launcher (a 1-process ZeRO run, e.g. to compare against)."""
    if "WORLD_SIZE" in os.environ:
        return
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
