"""A pool of persistent worker processes with hard per-task deadlines.

Why not `multiprocessing.Pool` / `concurrent.futures`: neither can kill one task that overruns (a sympy call
stuck in C code ignores everything but SIGKILL), and with the "spawn" or "forkserver" start methods the child
re-imports the parent's `__main__` module; in the trainer that module imports torch. Forking a parent that holds
torch's thread pools is unsafe. So the pool starts one fresh interpreter with `subprocess`, a *fork server*
(`reasoner_verifiers._worker`) that imports only the handler's modules and warms them up, and asks it over a Unix socket
to fork each worker; the two pipes of a worker are created here and handed over with SCM_RIGHTS, and carry
length-prefixed JSON frames (`reasoner_verifiers.wire`: a reply is untrusted data, never unpickled, bounded in size,
read under the task's deadline, and must echo its request's sequence number). A worker killed at its
deadline is replaced by a fork of the warm fork server, not by a new interpreter start-up and warm-up (both
times are measured in docs/verifiers.md).

Guarantees:
- a task that has not answered `deadline_s` after it was handed to a worker gets `TIMEOUT`; its worker is
  SIGKILLed (through a pidfd, so a recycled pid is never hit) and replaced; nothing else waits on it (also
  not on a worker that sent part of a reply and stalled);
- a worker that breaks the protocol (not JSON, an oversized frame, a wrong sequence number, bytes after its
  reply) is killed and replaced; its task gets `ERROR`, or is run again on another worker when the stray
  bytes belonged to an earlier task;
- works from any thread or process (no signals, no `alarm`); several threads may `map` at once;
- workers run under `RLIMIT_AS` (`memory_mb`), so a bomb that gets past the pre-filters dies with
  `MemoryError` inside the worker (reported as `MEMORY`, worker replaced) instead of swapping the machine;
- workers exit when the pool closes their pipe or when the pool's process dies (the fork server sees its
  socket close, kills them and exits);
- processes start lazily on first use and stop on `close()`, the context manager, or at exit.

Time spent waiting for a free worker does not count against a task's deadline unless the caller passes
`budget_s` (an absolute limit for the whole call, used by single `score()` calls so they stay bounded even when
the pool is busy).
"""
from __future__ import annotations

import atexit
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import wire

OK, TIMEOUT, MEMORY, ERROR, CRASHED = "ok", "timeout", "memory", "error", "crashed"
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_REPLY_KINDS = (OK, MEMORY, ERROR)
_MAX_ATTEMPTS = 3  # a task whose worker answered out of turn is run again, at most this often


@dataclass(frozen=True)
class Outcome:
    kind: str            # ok | timeout | memory | error | crashed
    value: Any = None    # the handler's return value when ok, else a message
    elapsed_s: float = 0.0


class _ForkServer:
    """The parent's handle on the fork server process (see `reasoner_verifiers._worker`)."""

    def __init__(self, handler: str, memory_mb: int, startup_timeout_s: float):
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.log = tempfile.TemporaryFile()
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        # `-c` with our package root first on sys.path: this checkout's `verifiers`, whatever the cwd holds
        boot = f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); from reasoner_verifiers._worker import main; main()"
        cmd = [sys.executable, "-c", boot, handler, str(child_sock.fileno()), str(memory_mb)]
        try:
            self.proc = subprocess.Popen(cmd, pass_fds=(child_sock.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=self.log, close_fds=True)
        finally:
            child_sock.close()
        self.sock = parent_sock
        self.lock = threading.Lock()
        self.sock.settimeout(startup_timeout_s)
        try:
            hello = self.sock.recv(16)
        except OSError:
            hello = b""
        if hello != b"ready":
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            tail = self.log_tail()
            self.close()
            raise RuntimeError(f"verifier worker process did not start{tail}")
        self.sock.settimeout(None)

    def fork_worker(self, startup_timeout_s: float) -> _Worker:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            with self.lock:
                socket.send_fds(self.sock, [b"fork"], [to_child_r, from_child_w])
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        worker = _Worker(to_child_w, from_child_r)
        try:
            frame = worker.read_frame(time.monotonic() + startup_timeout_s)
        except (EOFError, OSError, wire.FrameError, TimeoutError) as exc:
            worker.close_pipes()
            raise RuntimeError(f"forked worker did not start ({type(exc).__name__}){self.log_tail()}") from None
        if not (isinstance(frame, list) and len(frame) == 3 and frame[:2] == [0, "ready"]
                and isinstance(frame[2], int)):
            worker.close_pipes()
            raise RuntimeError(f"forked worker sent {str(frame)[:100]!r} instead of its greeting")
        worker.attach(frame[2])
        return worker

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self) -> str:
        try:
            self.log.seek(0)
            tail = self.log.read()[-2000:].decode(errors="replace").strip()
        except (OSError, ValueError):
            tail = ""
        return f": {tail}" if tail else ""

    def close(self, grace_s: float = 2.0) -> None:
        """Closing the socket makes the fork server kill its workers and exit."""
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class _Worker:
    """The caller's end of one worker: a request pipe, a non-blocking reply pipe, a frame reader."""

    def __init__(self, send_fd: int, recv_fd: int):
        self.send_fd = send_fd
        self.recv_fd = recv_fd
        os.set_blocking(recv_fd, False)
        self.reader = wire.FrameReader()
        self.seq = 0
        self.pid = -1
        self._pidfd: int | None = None
        self._closed = False
        self.tasks_done = 0

    def send(self, payload: Any) -> int:
        """Send one request; returns its sequence number, which the reply must echo."""
        self.seq += 1
        wire.write_frame(self.send_fd, [self.seq, payload])
        return self.seq

    def read_available(self) -> list[Any] | None:
        """Frames completed by what the pipe holds now; [] when nothing complete yet, None at EOF."""
        try:
            data = os.read(self.recv_fd, 65536)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not data:
            return None
        return self.reader.feed(data)

    def read_frame(self, end: float) -> Any:
        """One frame, waiting until the monotonic time `end` at most (start-up greeting)."""
        while True:
            frames = self.read_available()
            if frames is None:
                raise EOFError("worker closed its pipe")
            if frames:
                return frames[0]
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no greeting")
            poller = select.poll()
            poller.register(self.recv_fd, select.POLLIN)
            poller.poll(remaining * 1000)

    def attach(self, pid: int) -> None:
        self.pid = pid
        try:
            self._pidfd = os.pidfd_open(pid)  # kill through this: immune to pid reuse
        except (AttributeError, OSError):
            self._pidfd = None

    def kill(self) -> None:
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            elif self.pid > 0:
                os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass
        self.close_pipes()

    def stop(self) -> None:
        """Close the task pipe: the worker exits on EOF (the fork server reaps it)."""
        self.close_pipes()

    def close_pipes(self) -> None:
        if not self._closed:
            self._closed = True
            for fd in (self.send_fd, self.recv_fd):
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self._pidfd is not None:
            try:
                os.close(self._pidfd)
            except OSError:
                pass
            self._pidfd = None


class WorkerPool:
    """`map(payloads, deadline_s)` runs `handler(payload)` in worker processes; see the module docstring."""

    def __init__(self, handler: str, workers: int = 2, memory_mb: int = 1024, startup_timeout_s: float = 60.0,
                 max_tasks_per_worker: int = 5000):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.handler = handler
        self.size = workers
        self.memory_mb = memory_mb
        self.startup_timeout_s = startup_timeout_s
        self.max_tasks_per_worker = max_tasks_per_worker
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting = 0
        self._closed = False
        self._started = False
        self._ever_ready = False
        self._start_error: str | None = None
        self._server: _ForkServer | None = None
        self._server_lock = threading.Lock()
        self.restarts = 0
        _live_pools.add(self)

    # ----------------------------------------------------------------------------------------- life cycle
    def start(self, wait: bool = False) -> None:
        """Start the workers (lazily called by `map`); with `wait`, block until the first one is ready (once:
        later calls return at once even when every worker is busy)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("WorkerPool is closed")
            if not self._started:
                self._started = True
                for _ in range(self.size):
                    self._spawn_async()
        if wait:
            with self._cond:
                self._cond.wait_for(lambda: self._ever_ready or self._start_error or self._closed,
                                    self.startup_timeout_s)

    def _spawn_async(self) -> None:
        """Start one worker in a background thread; the caller holds `_cond`."""
        self._starting += 1
        threading.Thread(target=self._spawn, name="verifiers-pool-spawn", daemon=True).start()

    def _spawn(self) -> None:
        worker = None
        error = None
        try:
            worker = self._fork_server().fork_worker(self.startup_timeout_s)
        except Exception as exc:  # report any start-up failure to waiting callers instead of hanging them
            error = str(exc)
        with self._cond:
            self._starting -= 1
            if worker is not None and self._closed:
                worker.stop()
            elif worker is not None:
                self._idle.append(worker)
                self._ever_ready = True
                self._start_error = None
            else:
                self._start_error = error
            self._cond.notify_all()

    def _fork_server(self) -> _ForkServer:
        """The fork server, started on first use and restarted if it died."""
        with self._server_lock:
            if self._closed:
                raise RuntimeError("WorkerPool is closed")
            if self._server is None or not self._server.alive():
                if self._server is not None:
                    self._server.close()
                self._server = _ForkServer(self.handler, self.memory_mb, self.startup_timeout_s)
            return self._server

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
            self._cond.notify_all()
        for worker in idle:
            worker.stop()
        for worker in busy:
            worker.kill()
        deadline = time.monotonic() + 5
        with self._cond:  # let in-flight spawns finish and stop their workers
            self._cond.wait_for(lambda: self._starting == 0, max(0.0, deadline - time.monotonic()))
        with self._server_lock:
            if self._server is not None:
                self._server.close()  # it kills whatever worker is still running, then exits
                self._server = None
        _live_pools.discard(self)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pids(self) -> list[int]:
        """Worker process ids (the fork server's is `server_pid`)."""
        with self._cond:
            return [w.pid for w in list(self._idle) + list(self._busy)]

    @property
    def server_pid(self) -> int | None:
        server = self._server
        return server.proc.pid if server is not None else None

    # ----------------------------------------------------------------------------------------- checkout
    def _checkout(self, timeout_s: float | None) -> _Worker | None:
        """An idle worker; waits up to `timeout_s` (None: start-up timeout; 0: do not wait)."""
        limit = self.startup_timeout_s if timeout_s is None else timeout_s
        end = time.monotonic() + limit
        with self._cond:
            if not self._started:
                self.start()
            while True:
                if self._closed:
                    raise RuntimeError("WorkerPool is closed")
                if self._idle:
                    worker = self._idle.pop()
                    self._busy.add(worker)
                    return worker
                if self._start_error and self._starting == 0 and not self._busy:
                    raise RuntimeError(f"verifier workers failed to start: {self._start_error}")
                remaining = end - time.monotonic()
                if remaining <= 0:
                    if timeout_s is None:
                        raise RuntimeError(f"no verifier worker became ready within {limit:.0f} s")
                    return None
                self._cond.wait(remaining)

    def _checkin(self, worker: _Worker, done: bool = True) -> None:
        worker.tasks_done += done
        retire = worker.tasks_done >= self.max_tasks_per_worker
        with self._cond:
            self._busy.discard(worker)
            if self._closed or retire:
                if retire and not self._closed:
                    self._spawn_async()
            else:
                self._idle.append(worker)
                self._cond.notify_all()
                return
        worker.stop()

    def _discard(self, worker: _Worker) -> None:
        """Kill a worker that overran or broke, and start its replacement."""
        worker.kill()
        with self._cond:
            self._busy.discard(worker)
            self.restarts += 1
            if not self._closed:
                self._spawn_async()

    # ----------------------------------------------------------------------------------------- running
    def map(self, payloads: Sequence[Any], deadline_s: float, budget_s: float | None = None) -> list[Outcome]:
        """Run every payload; each gets `deadline_s` from the moment a worker receives it.

        `budget_s` bounds the whole call: no payload runs past it, and payloads not handed out by then come
        back as TIMEOUT without running.
        """
        n = len(payloads)
        results: list[Outcome | None] = [None] * n
        pending = list(range(n - 1, -1, -1))  # a stack: pop() gives the lowest index first
        attempts = [0] * n
        inflight: dict[int, _Task] = {}  # reply fd -> task
        call_end = None if budget_s is None else time.monotonic() + budget_s
        while pending or inflight:
            self._dispatch(payloads, pending, inflight, results, attempts, deadline_s, call_end)
            if not inflight:
                continue
            timeout = max(0.0, min(t.end for t in inflight.values()) - time.monotonic())
            if pending and len(inflight) < self.size:
                timeout = min(timeout, 0.02)  # look again for workers freed by other threads
            poller = select.poll()
            for fd in inflight:
                poller.register(fd, select.POLLIN)
            for fd, _ in poller.poll(timeout * 1000):
                task = inflight[fd]
                outcome = self._receive(task)
                if outcome is _RETRY:
                    del inflight[fd]
                    pending.append(task.index)
                elif isinstance(outcome, Outcome):
                    del inflight[fd]
                    results[task.index] = outcome
            now = time.monotonic()
            for fd, task in list(inflight.items()):
                if now >= task.end:
                    del inflight[fd]
                    self._discard(task.worker)
                    results[task.index] = Outcome(TIMEOUT, f"no answer within {task.end - task.t0:.3g} s",
                                                  now - task.t0)
        return [r if r is not None else Outcome(ERROR, "lost") for r in results]

    def _dispatch(self, payloads, pending: list[int], inflight: dict[int, _Task], results, attempts: list[int],
                  deadline_s: float, call_end: float | None) -> None:
        while pending:
            if call_end is not None and time.monotonic() >= call_end:
                for idx in pending:
                    results[idx] = Outcome(TIMEOUT, "no worker was free within the time budget", 0.0)
                pending.clear()
                return
            if inflight:
                wait_s: float | None = 0.0
            elif call_end is not None:
                wait_s = max(0.0, call_end - time.monotonic())
            else:
                wait_s = None
            worker = self._checkout(wait_s)
            if worker is None:
                return
            idx = pending.pop()
            if attempts[idx] >= _MAX_ATTEMPTS:
                self._checkin(worker, done=False)
                results[idx] = Outcome(ERROR, "workers kept answering out of turn")
                continue
            attempts[idx] += 1
            try:
                seq = worker.send(payloads[idx])
            except (TypeError, ValueError) as exc:  # a payload JSON cannot carry: nothing was written
                self._checkin(worker, done=False)
                results[idx] = Outcome(ERROR, f"payload cannot be sent: {exc}"[:500])
                continue
            except OSError:  # a dead worker
                self._discard(worker)
                pending.append(idx)
                continue
            t0 = time.monotonic()
            end = t0 + deadline_s if call_end is None else min(t0 + deadline_s, call_end)
            inflight[worker.recv_fd] = _Task(worker, idx, seq, t0, end)

    def _receive(self, task: _Task) -> Outcome | object | None:
        """The task's outcome once its reply is complete; None while incomplete; _RETRY when the worker
        answered out of turn (the bytes belonged to an earlier task: run this one again elsewhere)."""
        worker = task.worker
        elapsed = time.monotonic() - task.t0
        try:
            frames = worker.read_available()
        except wire.FrameError as exc:
            self._discard(worker)
            return Outcome(ERROR, f"malformed reply: {exc}"[:500], elapsed)
        if frames is None:
            self._discard(worker)
            return Outcome(CRASHED, "worker died", elapsed)
        if not frames:
            return None
        frame = frames[0]
        if isinstance(frame, list) and len(frame) == 3 and isinstance(frame[0], int) and frame[0] < task.seq:
            self._discard(worker)
            return _RETRY
        if len(frames) > 1 or worker.reader.pending:
            self._discard(worker)
            return Outcome(ERROR, "malformed reply: bytes after the reply", elapsed)
        if not (isinstance(frame, list) and len(frame) == 3 and frame[0] == task.seq and frame[1] in _REPLY_KINDS):
            self._discard(worker)
            return Outcome(ERROR, f"malformed reply: {str(frame)[:100]!r}", elapsed)
        kind, value = frame[1], frame[2]
        if kind == MEMORY:
            self._discard(worker)  # after a MemoryError the interpreter's state is not worth keeping
            return Outcome(MEMORY, value, elapsed)
        self._checkin(worker)
        return Outcome(kind, value, elapsed)


@dataclass
class _Task:
    worker: _Worker
    index: int
    seq: int
    t0: float
    end: float


_RETRY = object()
_live_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for pool in list(_live_pools):
        pool.close()
