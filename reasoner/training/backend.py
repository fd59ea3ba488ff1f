"""How a training loop runs on one process or many: the single-process, DDP and DeepSpeed ZeRO backends.

The GRPO loop (`grpo.py`), the policy update (`update.py`) and the SFT loop are written once against `Backend`;
process groups, gradient synchronisation, ZeRO parameter gathering and sharded checkpoints live here and in
`deepspeed_backend.py` (built by name in `backend_factory.py`, so neither backend module imports the other's
factory), and the loops carry no `if deepspeed:` branches.

Launch: `torchrun --nproc_per_node N -m reasoner train ...` (or the `deepspeed` launcher). `distributed.backend:
auto` picks DDP when the launcher started more than one process, else a plain single process; `deepspeed` picks
ZeRO with the config named by `distributed.deepspeed_config`.

Simplifications, on purpose:
- Data parallel only. Every rank holds a full copy of the model for generation (ZeRO-3 gathers it for the
  length of a generate call, as TRL does); tensor/pipeline parallel training is out of scope.
- Collectives run with a timeout (`distributed.timeout_s`), so a rank that dies or hangs turns into an error on
  the others instead of a silent stall. `close()` ends every multi-process run with a barrier and
  `destroy_process_group`: without them, two-process gloo runs sometimes crash at exit (docs/scaling.md).
"""
from __future__ import annotations

import os
from abc import ABC
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from reasoner.training.state_files import load_state_file

BACKENDS = ("auto", "single", "ddp", "deepspeed")


@dataclass
class DistributedConfig:
    backend: str = "auto"                 # auto | single | ddp | deepspeed; auto -> ddp when WORLD_SIZE > 1
    deepspeed_config: str = "zero2"       # shipped config (zero2, zero3, zero3_offload) or a path to a JSON file
    timeout_s: float = 1800.0             # a collective waiting longer than this fails instead of hanging

    def __post_init__(self):
        from reasoner.config import ConfigError
        if self.backend not in BACKENDS:
            raise ConfigError(f"distributed.backend: unknown backend {self.backend!r}; valid backends: "
                              f"{', '.join(BACKENDS)}")
        if self.timeout_s <= 0:
            raise ConfigError(f"distributed.timeout_s must be > 0, got {self.timeout_s}")


def launched_world_size() -> int:
    """The number of processes the launcher (torchrun / deepspeed) started; 1 without a launcher."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class Backend(ABC):
    """One training process's view of the run: its rank, the model as training sees it, and the collectives."""

    name = "single"
    rank = 0
    local_rank = 0
    world_size = 1

    def __init__(self) -> None:
        self.module: torch.nn.Module | None = None       # the bare Hugging Face model (generate, save, weights)
        self.train_model: Any = None                     # what training forward passes call (a wrapper or module)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    # ------------------------------------------------------------------------------------------ set-up
    #: the backend partitions parameters outside module forwards (ZeRO-3): code that reads a weight directly
    #: (the fused output head) must not run
    partitions_parameters = False

    def prepare(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, *,
                max_grad_norm: float | None = None, scorer: torch.nn.Module | None = None) -> None:
        """Take ownership of the model, optimizer and scheduler (wrapping them as the backend needs).

        `scorer`: the module training forwards call (a `PolicyScorer` over `model`); the backend wraps it instead
        of the bare model, so its gradient hooks see the whole forward. `max_grad_norm` is for backends that clip
        inside their own step (DeepSpeed); the others clip in `step`."""
        self.module, self.train_model, self.optimizer, self.scheduler = model, scorer or model, optimizer, scheduler

    def close(self) -> None:
        """End the run's process group cleanly (a barrier, then `destroy_process_group`)."""

    # ------------------------------------------------------------------------------------------ update
    def micro_batch(self, last: bool):
        """Context for one micro-batch's forward + backward; `last` marks the optimizer step's final one."""
        return nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self, max_grad_norm: float | None) -> float:
        """Clip, take the optimizer and scheduler step, zero the gradients; returns the pre-clip grad norm."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        for p in params:  # rows skipped (or none run): their gradient is exactly zero, and the optimizer
            if p.grad is None:  # must still step (momentum, weight decay) as it would have
                p.grad = torch.zeros_like(p)
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm is not None else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    # ------------------------------------------------------------------------------------------ collectives
    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        return [float(v) for v in values]

    def all_gather_object(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        pass

    @contextmanager
    def full_weights(self) -> Iterator[torch.nn.Module]:
        """The bare module with every parameter whole on this rank (generation, engine sync, saving)."""
        yield self.module

    # ------------------------------------------------------------------------------------------ checkpoints
    def save_model(self, path: Path, tokenizer=None) -> None:
        """Full weights in Hugging Face format; only the main rank writes."""
        with self.full_weights() as module:
            if self.is_main:
                module.save_pretrained(path, safe_serialization=True)
                if tokenizer is not None:
                    tokenizer.save_pretrained(path)
        self.barrier()

    def save_training_state(self, ckpt: Path) -> None:
        """Optimizer and scheduler state into the checkpoint folder `ckpt` (every rank calls this)."""
        if self.is_main:
            torch.save(self.optimizer.state_dict(), ckpt / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), ckpt / "scheduler.pt")

    def load_training_state(self, ckpt: Path) -> None:
        self.optimizer.load_state_dict(load_state_file(ckpt / "optimizer.pt"))
        self.scheduler.load_state_dict(load_state_file(ckpt / "scheduler.pt"))


class SingleProcess(Backend):
    """One process, no process group: the plain PyTorch loop."""

    @classmethod
    def wrapping(cls, model, optimizer, scheduler) -> SingleProcess:
        backend = cls()
        backend.prepare(model, optimizer, scheduler)
        return backend


class _ProcessGroup(Backend):
    """Shared by DDP and DeepSpeed: rank bookkeeping and collectives over `torch.distributed`."""

    def __init__(self, cfg: DistributedConfig):
        super().__init__()
        import torch.distributed as dist

        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.world_size = launched_world_size()
        self.timeout = timedelta(seconds=cfg.timeout_s)
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)  # `model.to("cuda")` then lands on this rank's GPU
        self.comm_backend = "nccl" if torch.cuda.is_available() else "gloo"
        if not dist.is_initialized():
            self._init_process_group()
        self._closed = False

    def _init_process_group(self) -> None:
        import torch.distributed as dist
        dist.init_process_group(self.comm_backend, timeout=self.timeout)

    @property
    def _comm_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.comm_backend == "nccl" else torch.device("cpu")

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        import torch.distributed as dist
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return t.tolist()

    def all_gather_object(self, obj: Any) -> list[Any]:
        import torch.distributed as dist
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        import torch.distributed as dist
        dist.barrier()

    def close(self) -> None:
        import torch.distributed as dist
        if self._closed or not dist.is_initialized():
            return
        self._closed = True
        dist.barrier()
        dist.destroy_process_group()


class DDP(_ProcessGroup):
    """`torch.nn.parallel.DistributedDataParallel`: every rank holds the full model and optimizer state."""

    name = "ddp"

    def prepare(self, model, optimizer, scheduler, *, max_grad_norm: float | None = None,
                scorer: torch.nn.Module | None = None) -> None:
        from torch.nn.parallel import DistributedDataParallel

        # broadcast_buffers=False: the only buffers (rotary tables) are identical by construction, and a buffer
        # broadcast in every forward would make no-grad scoring passes collective.
        wrapped = DistributedDataParallel(scorer or model,
                                          device_ids=[self.local_rank] if self.comm_backend == "nccl" else None,
                                          broadcast_buffers=False)
        self.module, self.train_model, self.optimizer, self.scheduler = model, wrapped, optimizer, scheduler

    def micro_batch(self, last: bool):
        # Gradients are all-reduced only on the optimizer step's last backward; `no_sync` must cover the forward.
        return nullcontext() if last else self.train_model.no_sync()
