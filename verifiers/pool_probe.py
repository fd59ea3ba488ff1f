"""A worker-pool handler that misbehaves on request: sleep, spin, allocate, crash, raise, report.

Used by the pool's tests, and handy for checking on a new machine that deadlines and the memory cap hold:
`WorkerPool("verifiers.pool_probe:run").map([("alloc", 4096)], deadline_s=5)` must come back as `memory`.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any


def run(payload: tuple[str, Any]) -> Any:
    op, arg = payload
    if op == "echo":
        return arg
    if op == "sleep":
        time.sleep(arg)
        return arg
    if op == "spin":  # CPU-bound and uninterruptible from Python's point of view
        end = time.monotonic() + arg
        while time.monotonic() < end:
            pass
        return arg
    if op == "alloc":
        block = bytearray(int(arg) * 2**20)
        return len(block)
    if op == "exit":
        os._exit(int(arg))
    if op == "raise":
        raise ValueError(str(arg))
    if op == "modules":
        return sorted({name.split(".")[0] for name in sys.modules})
    if op == "pid":
        return os.getpid()
    raise ValueError(f"unknown probe op {op!r}")
