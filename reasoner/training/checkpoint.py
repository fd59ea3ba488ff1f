"""Checkpoints that resume exactly: model (safetensors) + optimizer + scheduler + every RNG + data position + step.

Layout: `<out_dir>/checkpoints/step-000050/{model/, optimizer.pt, scheduler.pt, rng-<rank>.pt, state.json}`; under
DeepSpeed the optimizer and scheduler state is `deepspeed/` instead (one optimizer partition per rank). Further
models trained beside the policy (the PPO critic) have a folder each, `<name>/`, holding their weights and their
own optimizer and scheduler state in the same layout. The model
folder always holds full Hugging Face weights, whatever the backend. A checkpoint is written into a temporary
folder and renamed into place only when complete, so a process killed mid-save (`kill -9`) leaves the previous
checkpoint as the newest valid one. On resume the newest complete checkpoint is loaded and `metrics.jsonl` is cut
back to its step, so the resumed run's log continues without duplicates.

Multi-process runs: every rank takes part (ZeRO state is sharded) and writes its own RNG file; the main rank
writes `state.json` and renames the folder. A checkpoint resumes only with the world size that wrote it
(optimizer partitions and per-rank RNG streams belong to ranks); the run folder must be on a filesystem every
rank sees.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from reasoner.training.backend import Backend
from reasoner.training.rng import rng_state, set_rng_state
from reasoner.training.state_files import load_state_file

STATE_FILE = "state.json"


@dataclass
class TrainerState:
    step: int = 0                  # completed rollout/update steps
    sampler: dict | None = None    # PromptSampler.state_dict()
    world_size: int = 1            # processes that wrote the checkpoint
    backend: str = "single"


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under `out_dir`, or None."""
    root = checkpoint_dir(out_dir)
    if not root.is_dir():
        return None
    done = [p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")
            and (p / STATE_FILE).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_checkpoint(out_dir: str | Path, state: TrainerState, backend: Backend, tokenizer, *,
                    rng_extra: dict | None = None, keep: int = 2, extra: Mapping[str, Backend] | None = None) -> Path:
    """Write a checkpoint of the current step (every rank calls this); returns its folder. `extra`: further
    models by folder name (e.g. `{"critic": critic_backend}`), saved with their optimizer and scheduler."""
    root = checkpoint_dir(out_dir)
    final = root / f"step-{state.step:06d}"
    tmp = root / f"step-{state.step:06d}.tmp"
    if backend.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    backend.barrier()
    backend.save_model(tmp / "model", tokenizer)
    backend.save_training_state(tmp)
    for name, other in (extra or {}).items():
        other.save_model(tmp / name, tokenizer)
        other.save_training_state(tmp / name)
    torch.save({**rng_state(), **(rng_extra or {})}, tmp / f"rng-{backend.rank}.pt")
    backend.barrier()
    if backend.is_main:
        state.world_size, state.backend = backend.world_size, backend.name
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state)))  # written last: marks the folder complete
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _prune(root, keep)
    backend.barrier()
    return final


def load_trainer_state(ckpt: Path) -> TrainerState:
    return TrainerState(**json.loads((ckpt / STATE_FILE).read_text()))


def restore_checkpoint(ckpt: Path, backend: Backend,
                       extra: Mapping[str, Backend] | None = None) -> tuple[TrainerState, dict]:
    """Loads optimizer, scheduler and this rank's RNG state (the model itself is loaded from `ckpt / 'model'`;
    each `extra` backend's optimizer and scheduler from `ckpt / name`, its model from there too).

    Returns the trainer state and this rank's RNG record (with any extra generator states saved with it)."""
    state = load_trainer_state(ckpt)
    if state.world_size != backend.world_size:
        raise ValueError(f"{ckpt} was written by {state.world_size} process(es) ({state.backend}); resume it with "
                         f"the same number (this run has {backend.world_size})")
    backend.load_training_state(ckpt)
    for name, other in (extra or {}).items():
        other.load_training_state(ckpt / name)
    rng = load_state_file(ckpt / f"rng-{backend.rank}.pt")
    set_rng_state(rng)
    return state, rng


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop records with `step > max_step` (written after the checkpoint a resumed run starts from)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= max_step:
                kept.append(line)
        except json.JSONDecodeError:
            break  # a line cut short by a kill: everything after it is unreliable
    path.write_text("".join(line + "\n" for line in kept))


def _prune(root: Path, keep: int) -> None:
    if keep <= 0:
        return
    done = sorted((p for p in root.glob("step-*") if not p.name.endswith(".tmp")),
                  key=lambda p: int(p.name.split("-")[1]))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
