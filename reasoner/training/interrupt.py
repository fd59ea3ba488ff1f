"""Ctrl-C and SIGTERM during training: finish the step in progress, save, report, exit with one line.

A step is the unit a checkpoint can resume exactly from: stopping inside one (parameters half-updated, the
sampler advanced) would leave a state no checkpoint describes. So the first SIGINT / SIGTERM only sets a flag;
the loop checks it between steps (all ranks agree, so every rank stops after the same step), saves a checkpoint
and the report, and raises `TrainingInterrupted` — the CLI prints its one line and exits 130. A second signal
stops at once (`KeyboardInterrupt`): the newest periodic checkpoint is then the one to resume from.
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

from reasoner.errors import ReasonerError


class TrainingInterrupted(ReasonerError):
    """Stopped on request after a completed step, with a checkpoint to resume from."""

    exit_code = 130


class StopFlag:
    """Set by the first SIGINT / SIGTERM; the second one raises `KeyboardInterrupt` in the main thread."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        print(f"\n[train] {self.signal_name}: finishing this step, then saving a checkpoint "
              "(press Ctrl-C again to stop at once)", file=sys.stderr, flush=True)


@contextmanager
def stop_between_steps():
    """Install the handlers for the duration of a training loop (main thread only; elsewhere a no-op flag)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {sig: signal.signal(sig, flag.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
