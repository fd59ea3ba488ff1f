"""Training backends by name: `make_backend(distributed_section)`.

Kept apart from `backend.py` so that the DeepSpeed backend (which builds on `backend.py`) and the plain backends
do not import each other; DeepSpeed itself is imported only when it is asked for.
"""
from __future__ import annotations

from reasoner.training.backend import DDP, Backend, DistributedConfig, SingleProcess, launched_world_size


def make_backend(cfg: DistributedConfig) -> Backend:
    """The backend named by `cfg.backend` (call before loading the model: it picks this rank's device)."""
    name = cfg.backend
    if name == "auto":
        name = "ddp" if launched_world_size() > 1 else "single"
    if name == "single":
        if launched_world_size() > 1:
            raise ValueError(f"distributed.backend=single, but the launcher started {launched_world_size()} "
                             "processes: use ddp or deepspeed (or launch one process)")
        return SingleProcess()
    if name == "ddp":
        return DDP(cfg)
    from reasoner.training.deepspeed_backend import DeepSpeedBackend  # optional dependency
    return DeepSpeedBackend(cfg)
