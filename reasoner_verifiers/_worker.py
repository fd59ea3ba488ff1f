"""Worker-side code of `reasoner_verifiers.pool` (not a public interface): the fork server and the worker loop.

The pool starts one fresh interpreter, the *fork server*: `python -c "…; main()" HANDLER SOCKET_FD MEMORY_MB`.
It caps its own address space (inherited by every worker), imports the handler (`module:function`) and runs
the module's optional `warm_up()`, then waits on a Unix socket. For each request it receives two pipe ends
(SCM_RIGHTS) and forks a worker that serves payloads on them. The fork server is single-threaded and imports
only the handler's modules, so forking it is safe and cheap, and every worker starts warm: a
worker killed at its deadline is replaced without paying an interpreter start-up and warm-up again.

Lifetimes: the fork server reaps its workers (SIGCHLD) and, when the pool's end of the socket closes (close()
or the pool's process dying), kills them and exits. A worker exits when its task pipe closes or when its fork
server disappears (a watchdog thread notices the re-parenting), even in the middle of a computation.
"""
from __future__ import annotations

import importlib
import os
import resource
import signal
import socket
import sys
import threading
import time

from reasoner_verifiers import wire


def main(argv: list[str] | None = None) -> None:
    handler_spec, sock_fd, memory_mb = argv if argv is not None else sys.argv[1:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the pool owner's business; it stops us
    if int(memory_mb) > 0:
        limit = int(memory_mb) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sock = socket.socket(fileno=int(sock_fd))
    module_name, func_name = handler_spec.split(":")
    module = importlib.import_module(module_name)
    handler = getattr(module, func_name)
    if hasattr(module, "warm_up"):
        module.warm_up()
    children: set[int] = set()
    signal.signal(signal.SIGCHLD, lambda *_: _reap(children))
    sock.sendall(b"ready")
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 2)
        except OSError:
            msg, fds = b"", []
        if not msg:  # the pool closed its end or died: take the workers down with us
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for pid in list(children):
                _kill(pid)
            while True:  # reap them all, so that the pool sees no worker once we are gone
                try:
                    os.waitpid(-1, 0)
                except ChildProcessError:
                    break
            os._exit(0)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})  # record the pid before it can be reaped
        pid = os.fork()
        if pid == 0:
            sock.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            _serve(handler, fds[0], fds[1], memory_mb)  # never returns
        children.add(pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        for fd in fds:
            os.close(fd)


REPLY_FD = -1     # this worker's reply pipe and the request being served: `reasoner_verifiers.pool_probe` uses them to
CURRENT_SEQ = -1  # play a misbehaving worker


def _serve(handler, rfd: int, wfd: int, memory_mb: str) -> None:
    """Answer `[seq, payload]` frames with `[seq, kind, value]` frames (`reasoner_verifiers.wire`) until EOF."""
    global REPLY_FD, CURRENT_SEQ
    REPLY_FD = wfd
    _watch_parent(os.getppid())
    code = 0
    try:
        wire.write_frame(wfd, [0, "ready", os.getpid()])
        while True:
            try:
                seq, payload = wire.read_frame(rfd)
            except (EOFError, OSError):
                break
            CURRENT_SEQ = seq
            kind, value = _run(handler, payload, memory_mb)
            try:
                frame = wire.encode([seq, kind, value])
            except (TypeError, ValueError) as exc:  # a result JSON cannot carry: say so instead of dying
                frame = wire.encode([seq, "error", f"unencodable result: {exc}"[:500]])
            wire.write_all(wfd, frame)
    except BaseException:  # a broken pipe or the like: nothing to report to, just leave
        code = 1
    finally:
        os._exit(code)


def _run(handler, payload, memory_mb: str) -> tuple[str, object]:
    try:
        return "ok", handler(payload)
    except MemoryError:
        return "memory", f"worker ran out of memory (RLIMIT_AS {memory_mb} MB)"
    except RecursionError:
        return "error", "RecursionError"
    except Exception as exc:  # a handler bug must not kill the worker; the pool maps it to a status
        return "error", f"{type(exc).__name__}: {exc}"[:500]


def _reap(children: set[int]) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _watch_parent(parent_pid: int) -> None:
    """Exit when the fork server is gone (we get re-parented), even while busy in a computation."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
