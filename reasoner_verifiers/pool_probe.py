"""A worker-pool handler that misbehaves on request: sleep, spin, allocate, crash, raise, report, and break the
wire protocol the way a compromised worker would.

Used by the pool's tests, and handy for checking on a new machine that deadlines and the memory cap hold:
`WorkerPool("reasoner_verifiers.pool_probe:run").map([("alloc", 4096)], deadline_s=5)` must come back as `memory`.
The protocol ops write raw bytes on the worker's reply pipe (`reasoner_verifiers._worker.REPLY_FD`), as code running in
a worker could: a pickle that would run code in the caller if unpickled, a second reply to an answered request,
half a frame and a stall, a header claiming a gigabyte, a wrong sequence number.
"""
from __future__ import annotations

import os
import pickle
import struct
import sys
import threading
import time
from typing import Any


def run(payload: list[Any]) -> Any:
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
    if op == "unencodable":
        return {1, 2}
    return _protocol(op, arg)


class _Plant:
    """Unpickling this creates the file `path`: what a pickled reply could do to the caller."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _protocol(op: str, arg: Any) -> Any:
    from reasoner_verifiers import _worker, wire

    fd = _worker.REPLY_FD
    if op == "pickle":  # a frame whose body is a pickle, not JSON
        body = pickle.dumps(_Plant(arg))
        os.write(fd, struct.pack(">I", len(body)) + body)
        time.sleep(30)
    if op == "late":  # answer, then a second, late reply to the same request (a desynchronised worker)
        seq = _worker.CURRENT_SEQ

        def later() -> None:
            time.sleep(0.05)
            wire.write_frame(fd, [seq, "ok", "forged"])

        threading.Thread(target=later, daemon=True).start()
        return "real"
    if op == "stall":  # half a header, then nothing
        os.write(fd, b"\x00\x00")
        time.sleep(30)
    if op == "huge":  # a header claiming a gigabyte
        os.write(fd, struct.pack(">I", 2**30))
        time.sleep(30)
    if op == "wrong_seq":
        wire.write_frame(fd, [10**9, "ok", "forged"])
        time.sleep(30)
    raise ValueError(f"unknown probe op {op!r}")
