"""Loading a checkpoint's state files without executing anything in them.

`torch.load` unpickles, and a pickle can run arbitrary code: a run folder a user downloaded (or one someone
could write to) would otherwise execute a planted `optimizer.pt` on resume. Every state file reasoner writes is
plain data (tensors, numbers, strings, lists, tuples, dicts: optimizer and scheduler state dicts, RNG states),
so it loads with `weights_only=True`, which refuses any other object. A file that holds one is a tampered or
foreign checkpoint: one clear error naming the file, nothing executed.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from reasoner.errors import ReasonerError


class CheckpointError(ReasonerError, RuntimeError):
    """A checkpoint file is missing, unreadable or holds something other than plain state."""


def load_state_file(path: str | Path) -> Any:
    """`torch.load(path, weights_only=True)`, with a one-line error for a file that needs more than that."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (an incomplete or foreign checkpoint)") from None
    except pickle.UnpicklingError as e:
        detail = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a plain state file, refusing to unpickle it (it may have been tampered "
                              f"with; reasoner writes tensors and numbers only): {detail}") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
