"""Worker process entry point (started by `verifiers.pool`; not a public interface).

Run as a fresh interpreter: `python -c "…; from verifiers._worker import main; main()" HANDLER RFD WFD MB`.
It caps its own address space, imports the handler (`module:function`, plus the module's optional `warm_up()`),
says ready, then answers one payload at a time until the parent closes the pipe. It never imports torch: only
the handler's module and the standard library are loaded here.
"""
from __future__ import annotations

import importlib
import os
import resource
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection


def main(argv: list[str] | None = None) -> None:
    handler_spec, rfd, wfd, memory_mb = (argv if argv is not None else sys.argv[1:])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business; it stops us
    if int(memory_mb) > 0:
        limit = int(memory_mb) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    recv = Connection(int(rfd), writable=False)
    send = Connection(int(wfd), readable=False)
    _watch_parent(os.getppid())
    module_name, func_name = handler_spec.split(":")
    module = importlib.import_module(module_name)
    handler = getattr(module, func_name)
    if hasattr(module, "warm_up"):
        module.warm_up()
    send.send(("ready", os.getpid()))
    while True:
        try:
            payload = recv.recv()
        except (EOFError, OSError):
            break
        send.send(_run(handler, payload, memory_mb))


def _run(handler, payload, memory_mb: str) -> tuple[str, object]:
    try:
        return "ok", handler(payload)
    except MemoryError:
        return "memory", f"worker ran out of memory (RLIMIT_AS {memory_mb} MB)"
    except RecursionError:
        return "error", "RecursionError"
    except Exception as exc:  # a handler bug must not kill the worker; the parent maps it to a status
        return "error", f"{type(exc).__name__}: {exc}"[:500]


def _watch_parent(parent_pid: int) -> None:
    """Exit when the parent dies (we get re-parented) even if we are busy and never read the pipe's EOF."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


if __name__ == "__main__":
    main()
