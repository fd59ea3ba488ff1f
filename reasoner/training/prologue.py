"""What every training stage does before it loads a model: the backend, the run folder, threads, seeds.

GRPO and SFT (and the stages to come: reward models, DPO) share it, so a run folder always holds the resolved
`config.yaml`, the allocator and thread settings apply the same way, and the backend is created first (it picks
this rank's device before any model is loaded).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reasoner.config import save_config
from reasoner.training.allocator import keep_freed_memory
from reasoner.training.backend import Backend, DistributedConfig
from reasoner.training.backend_factory import make_backend
from reasoner.training.rng import set_seed


def start_run(cfg: Any, *, out_dir: str | Path, distributed: DistributedConfig, seed: int, threads: int = 0,
              keep_freed: bool = True, seed_per_rank: bool = False) -> Backend:
    """Create the backend, write `<out_dir>/config.yaml` (main rank), set threads, allocator and seeds.

    `seed_per_rank`: each rank seeds with `seed + rank` (GRPO: ranks sample different completions); otherwise all
    ranks share `seed` (SFT: every rank draws the same batches and trains on its share)."""
    backend = make_backend(distributed)
    if backend.is_main:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    if threads:
        torch.set_num_threads(threads)
    if keep_freed:
        keep_freed_memory()
    set_seed(seed + (backend.rank if seed_per_rank else 0))
    return backend
