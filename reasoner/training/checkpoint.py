"""Checkpoints that resume exactly: model (safetensors) + optimizer + scheduler + every RNG + data position + step.

Layout: `<out_dir>/checkpoints/step-000050/{model/, optimizer.pt, scheduler.pt, rng.pt, state.json}`. A checkpoint
is written into a temporary folder and renamed into place only when complete, so a process killed mid-save
(`kill -9`) leaves the previous checkpoint as the newest valid one. On resume the newest complete checkpoint is
loaded and `metrics.jsonl` is cut back to its step, so the resumed run's log continues without duplicates.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from reasoner.training.rng import rng_state, set_rng_state

STATE_FILE = "state.json"


@dataclass
class TrainerState:
    step: int = 0                  # completed rollout/update steps
    sampler: dict | None = None    # PromptSampler.state_dict()
    update_rng: list[int] | None = None  # minibatch-shuffle generator state (as a list of bytes)


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


def save_checkpoint(out_dir: str | Path, state: TrainerState, model, tokenizer, optimizer, scheduler,
                    keep: int = 2) -> Path:
    root = checkpoint_dir(out_dir)
    final = root / f"step-{state.step:06d}"
    tmp = root / f"step-{state.step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp / "model", safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp / "model")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / STATE_FILE).write_text(json.dumps(state.__dict__))  # written last: marks the folder complete
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _prune(root, keep)
    return final


def load_trainer_state(ckpt: Path) -> TrainerState:
    return TrainerState(**json.loads((ckpt / STATE_FILE).read_text()))


def restore_checkpoint(ckpt: Path, optimizer, scheduler) -> TrainerState:
    """Loads optimizer, scheduler and RNG state (the model itself is loaded from `ckpt / 'model'`)."""
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False))
    return load_trainer_state(ckpt)


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
