"""`Sandbox`: a pool of workers (zygotes), the public `run` / `run_batch` / `close`, retries and layer reports."""
from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import host as hostmod
from .config import TIMEOUT, ExecResult, Limits, sandbox_error, validate_tests
from .execute import execute, execute_chunk
from .layers import describe_layers, missing_layers
from .outcome import CaseResult, Fault, chunk_cases, pair_result, stdio_case, stdio_result
from .worker import PRELOAD, Worker, WorkerError, zygote_init

log = logging.getLogger("sandbox")
UID_BASE = 1_500_000_000          # far above login users and the usual /etc/subuid ranges
_INSTANCES = itertools.count()
MIN_CHUNK = 4                     # run_batch splits an item's cases so that each worker gets some, down to this


class SandboxWarning(UserWarning):
    """A protection layer is not available on this host."""


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot start, or a layer listed in `require` is missing."""


class Sandbox:
    """Run untrusted programs against tests. Thread-safe; see the package docstring for the threat model.

    workers:    parallel executions (one zygote each).
    limits:     default `Limits`; `timeout_s` can be overridden per call.
    isolation:  "auto" (bwrap, else unshare as root, else none), or one of "bwrap", "unshare", "none".
    require:    layer names (keys of `layers`) that must be active, e.g. ("seccomp", "net_ns"); else raise.
    retries:    re-runs on a fresh worker after a sandbox fault before reporting `sandbox_error`.
    stdio_chunk: stdin/stdout cases of one program sent to a worker in one request (each case still runs in
                its own fresh process; see `_inside/leader.py`); 1 sends every case on its own. Capped so
                that a request's descriptors fit under `limits.max_open_files`.
    """

    def __init__(self, workers: int = 2, limits: Limits | None = None, *, isolation: str = "auto",
                 require: Sequence[str] = (), retries: int = 1, landlock: bool = True, seccomp: bool = True,
                 cgroups: bool = True, uid_base: int = UID_BASE, preload: Sequence[str] = PRELOAD,
                 stdio_chunk: int = 16) -> None:
        if not isinstance(workers, int) or workers < 1 or workers > 128:
            raise ValueError(f"workers must be an integer in 1..128, got {workers!r}")
        if not isinstance(stdio_chunk, int) or not 1 <= stdio_chunk <= 16:
            raise ValueError(f"stdio_chunk must be an integer in 1..16, got {stdio_chunk!r}")
        self.limits = limits or Limits()
        self.retries = int(retries)
        self.host = hostmod.detect()
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="sandbox-spawn")
        self._closed = False
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._workers: list[Worker] = []
        self._serial = next(_INSTANCES)
        self._options = dict(landlock=landlock, seccomp=seccomp, preload=tuple(preload), cgroups=cgroups,
                             # uids and cgroups of their own for each Sandbox of each process
                             uid_base=uid_base + ((os.getpid() % 100_000) * 16 + self._serial % 16) * 256)
        try:
            self.isolation = self._start(workers, isolation)
        except BaseException:
            self.close()
            raise
        self.layers = describe_layers(self.isolation, self.host, self._workers[0])
        # A case's process inherits the leader's seccomp filter; where that filter only lets a process signal
        # itself (by the leader's pid), cases could not signal themselves: chunks are off there.
        restrict_kill = self._workers[0].hello.get("restrict_kill", True)
        self.stdio_chunk = 1 if restrict_kill else max(1, min(stdio_chunk, (self.limits.max_open_files - 10) // 3))
        self._free: queue.Queue[Worker] = queue.Queue()
        for w in self._workers:
            self._free.put(w)
        self._finalizer = weakref.finalize(self, _close_workers, self._workers, self._spawner)
        self._warn(require)

    # --------------------------------------------------------------------------------------- start-up
    def _make_worker(self, index: int, isolation: str) -> Worker:
        o, lim = self._options, self.limits
        uids = (o["uid_base"] + 2 * index, o["uid_base"] + 2 * index + 1) if self.host.is_root else None
        init = zygote_init(isolation, self.host, uids, lim.tmp_mb, lim.for_zygote(), o["landlock"], o["seccomp"],
                           o["preload"])
        cg = (lim.worker_memory_bytes, lim.max_processes + 8) if o["cgroups"] else None
        return Worker(index, isolation, self.host, init, self._spawner, cg, f"{os.getpid()}-{self._serial}")

    def _start(self, n: int, requested: str) -> str:
        errors = []
        for isolation in self.host.candidates(requested):
            first = self._make_worker(0, isolation)
            try:
                first.start()
            except (WorkerError, OSError, RuntimeError) as exc:
                first.close()
                errors.append(f"{isolation}: {exc}")
                log.warning("sandbox isolation %r unavailable: %s", isolation, exc)
                continue
            self._workers = [first] + [self._make_worker(i, isolation) for i in range(1, n)]
            for w in self._workers[1:]:
                w.start()
            return isolation
        raise SandboxUnavailable("no isolation could start a worker: " + "; ".join(errors))

    def _warn(self, require: Sequence[str]) -> None:
        missing = missing_layers(self.layers)
        for name, why in missing.items():
            msg = f"sandbox layer {name!r} is not active: {why}"
            warnings.warn(msg, SandboxWarning, stacklevel=3)
            log.warning(msg)
        unknown = [r for r in require if r not in self.layers]
        if unknown:
            self.close()
            raise ValueError(f"unknown layer(s) in require: {unknown}; valid: {sorted(self.layers)}")
        lacking = [r for r in require if not self.layers[r]]
        if lacking:
            self.close()
            raise SandboxUnavailable(f"required layer(s) not active: {lacking}")

    # -------------------------------------------------------------------------------------------- API
    def run(self, code: str, tests: dict, *, timeout_s: float | None = None) -> ExecResult:
        """Run `code` against `tests` (see `validate_tests`). Bad input raises ValueError."""
        if not isinstance(code, str):
            raise ValueError(f"code must be a string, got {type(code).__name__}")
        return self._run_checked(code, validate_tests(tests), self.limits.with_timeout(timeout_s))

    def _run_checked(self, code: str, spec: dict, limits: Limits) -> ExecResult:
        worker = self._acquire()
        try:
            return self._run_on(worker, code, spec, limits)
        finally:
            self._free.put(worker)

    def run_batch(self, items: Iterable[tuple[str, dict]], *, timeout_s: float | None = None) -> list[ExecResult]:
        """Run many (code, tests) pairs in parallel over the workers; results in input order.

        Every item is validated first, so a bad item raises ValueError (naming its index) before anything
        runs. stdin/stdout items are split into chunks of their cases, which spread over the workers like
        separate jobs (after a case times out, that item's cases not yet started are skipped). Safe to call
        from several threads at once."""
        items = list(items)
        specs = []
        for i, item in enumerate(items):
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise ValueError(f"items[{i}] must be a (code: str, tests: dict) pair")
            specs.append(validate_tests(item[1], where=f"items[{i}].tests"))
        limits = self.limits.with_timeout(timeout_s)
        jobs = [(i, ks) for i, spec in enumerate(specs)
                for ks in (self._chunks(len(spec["cases"])) if spec["kind"] == "stdio" else [None])]
        batch = _StdioBatch(len(items))
        pool = self._executor()
        done = list(pool.map(lambda job: self._job(items[job[0]][0], specs[job[0]], job, limits, batch), jobs))
        out: list[ExecResult | None] = [None] * len(items)
        for (i, k), res in zip(jobs, done):
            if k is None:
                out[i] = res
        for i, spec in enumerate(specs):
            if spec["kind"] == "stdio":
                out[i] = batch.result(i, len(spec["cases"]))
        return out  # type: ignore[return-value]

    def _chunks(self, n: int) -> list[tuple[int, ...]]:
        """An item's case indices in chunks of near-equal size: at most `stdio_chunk`, and (for items with
        enough cases) at least one chunk per worker."""
        if n == 0:
            return []
        count = max(-(-n // self.stdio_chunk), min(len(self._workers), n // MIN_CHUNK))
        bounds = [round(j * n / count) for j in range(count + 1)]
        return [tuple(range(a, b)) for a, b in zip(bounds, bounds[1:]) if b > a]

    def _job(self, code: str, spec: dict, job: tuple[int, tuple[int, ...] | None], limits: Limits,
             batch: _StdioBatch) -> ExecResult | None:
        i, ks = job
        if ks is None:
            return self._run_checked(code, spec, limits)
        if batch.stopped(i):
            return None
        worker = self._acquire()
        try:
            for k, res in self._stdio_cases(worker, code, spec, ks, limits):
                batch.add(i, k, res)
        finally:
            self._free.put(worker)
        return None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
        if pool:
            pool.shutdown(wait=True)
        _close_workers(self._workers, self._spawner)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------- internals
    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("Sandbox is closed")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(len(self._workers), thread_name_prefix="sandbox-run")
            return self._pool

    def _acquire(self) -> Worker:
        if self._closed:
            raise RuntimeError("Sandbox is closed")
        return self._free.get()

    def _ensure(self, worker: Worker) -> None:
        if not worker.alive or worker.retire:
            worker.restart()

    def _attempts(self, worker: Worker, fn: Any) -> Any:
        """Call fn() on a live worker; on a sandbox fault restart the worker and retry."""
        last = "unknown"
        for _ in range(self.retries + 1):
            if self._closed:
                raise Fault("the sandbox was closed during the run")
            try:
                self._ensure(worker)
                return fn()
            except (Fault, WorkerError, RuntimeError) as exc:   # RuntimeError: spawner shut down by close()
                last = str(exc)
                log.warning("sandbox fault on worker %d: %s", worker.index, last)
                try:
                    worker.restart()
                except (WorkerError, OSError, RuntimeError) as restart_exc:
                    last += f"; restart failed: {restart_exc}"
        raise Fault(last)

    def _run_on(self, worker: Worker, code: str, spec: dict, limits: Limits) -> ExecResult:
        start = time.monotonic()
        if spec["kind"] != "stdio":
            try:
                return self._attempts(worker, lambda: pair_result(
                    execute(worker, "pair", code, spec, None, limits), limits, time.monotonic() - start))
            except Fault as exc:
                return sandbox_error(str(exc), time.monotonic() - start)
        got: dict[int, CaseResult] = {}
        for k, res in self._stdio_cases(worker, code, spec, tuple(range(len(spec["cases"]))), limits):
            if isinstance(res, Fault):
                out = sandbox_error(str(res), time.monotonic() - start, len(spec["cases"]))
                out.n_passed = sum(c.status == "passed" for c in got.values())
                return out
            got[k] = res
        indices = sorted(got)
        return stdio_result([got[k] for k in indices], len(spec["cases"]), time.monotonic() - start, indices)

    def _stdio_cases(self, worker: Worker, code: str, spec: dict, ks: tuple[int, ...],
                     limits: Limits) -> Iterator[tuple[int, CaseResult | Fault]]:
        """Results of cases `ks` of one stdin/stdout item, in chunks where possible; stops after a timeout
        (the rest would most likely time out too) or a sandbox fault."""
        pending = list(ks)
        tol = spec.get("float_tol")
        while pending:
            decided = self._chunk(worker, code, spec, pending, limits) if len(pending) > 1 else {}
            if not decided:                     # the chunk decided nothing: one case on its own, for progress
                decided = {pending[0]: self._stdio_case(worker, code, spec["cases"][pending[0]], tol, limits)}
            for k in sorted(decided):
                yield k, decided[k]
            if any(isinstance(r, Fault) or r.status == TIMEOUT for r in decided.values()):
                return
            pending = [k for k in pending if k not in decided]

    def _chunk(self, worker: Worker, code: str, spec: dict, ks: list[int], limits: Limits) -> dict[int, CaseResult]:
        """Run up to `stdio_chunk` of cases `ks` in one request; returns the cases it decided."""
        ks = ks[:self.stdio_chunk]
        if len(ks) < 2:
            return {}
        cases = spec["cases"]
        try:
            self._ensure(worker)
            chunk = execute_chunk(worker, code, [cases[k]["input"] for k in ks], limits)
            decided = chunk_cases(chunk, [cases[k]["output"] for k in ks], spec.get("float_tol"), limits)
        except (Fault, WorkerError, OSError, RuntimeError) as exc:
            log.warning("sandbox fault in a chunk on worker %d (its cases run one by one): %s", worker.index, exc)
            try:
                worker.restart()
            except (WorkerError, OSError, RuntimeError):
                pass                            # the ordinary path retries and reports
            return {}
        return {ks[j]: res for j, res in decided.items()}

    def _stdio_case(self, worker: Worker, code: str, case: dict, tol: float | None,
                    limits: Limits) -> CaseResult | Fault:
        try:
            return self._attempts(worker, lambda: stdio_case(
                execute(worker, "solo", code, None, case["input"], limits), case["output"], tol, limits))
        except Fault as exc:
            return exc


class _StdioBatch:
    """Case results of the stdin/stdout items of one `run_batch`, gathered from several workers."""

    def __init__(self, n_items: int) -> None:
        self.lock = threading.Lock()
        self.cases: list[dict[int, CaseResult | Fault]] = [{} for _ in range(n_items)]
        self.first: list[float | None] = [None] * n_items
        self.last: list[float] = [0.0] * n_items
        self.halted = [False] * n_items

    def stopped(self, i: int) -> bool:
        with self.lock:
            if self.first[i] is None:
                self.first[i] = time.monotonic()
            return self.halted[i]

    def add(self, i: int, k: int, res: CaseResult | Fault) -> None:
        with self.lock:
            self.cases[i][k] = res
            self.last[i] = time.monotonic()
            if isinstance(res, Fault) or res.status == TIMEOUT:
                self.halted[i] = True

    def result(self, i: int, n_total: int) -> ExecResult:
        got = [self.cases[i][k] for k in sorted(self.cases[i])]
        duration = self.last[i] - (self.first[i] or self.last[i])
        faults = [r for r in got if isinstance(r, Fault)]
        if faults:
            out = sandbox_error(str(faults[0]), duration, n_total)
            out.n_passed = sum(not isinstance(r, Fault) and r.status == "passed" for r in got)
            return out
        indices = sorted(self.cases[i])               # cases skipped after a timeout are missing
        return stdio_result(got, n_total, duration, indices)  # type: ignore[arg-type]


def _close_workers(workers: list[Worker], spawner: ThreadPoolExecutor) -> None:
    for w in workers:
        try:
            w.close()
        except Exception:
            pass
    spawner.shutdown(wait=True)
