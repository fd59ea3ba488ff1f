"""sandbox: run untrusted programs against unit tests, fast, with verdicts the program cannot forge.

    from sandbox import Sandbox, Limits
    with Sandbox(workers=2, limits=Limits(timeout_s=5)) as sb:
        res = sb.run(code, {"kind": "assert", "source": "assert add(1, 2) == 3"})
        res.status, res.passed, res.fraction

Standard library only; optional OS features (bubblewrap, Landlock, seccomp, cgroups) are used when present.
Design: a pool of pre-started zygote processes (clean environment, stdlib pre-imported, no tests and no
secrets in memory) fork a fresh confined process for each execution (ahead of time, as an idle spare).
Function tests (assert / call) run in a *separate*, long-lived tester process per worker that calls the
solution over a pipe and receives plain data only; stdin/stdout outputs are compared by the supervisor.
Several stdin/stdout cases of one program go to a worker in one request, where an already confined leader
forks a fresh process per case (`_inside/leader.py`); any case it cannot decide unambiguously is re-run on
its own. See docs/sandbox.md for usage, normalisation rules and measurements.

Threat model
============
The adversary is the program under test: model-generated code optimised by RL against this reward, so it
will try anything that raises the reward, and it may be malicious by accident or by design. It runs as
Python source with the full standard library, ctypes included.

Defended (each item is exercised by tests/sandbox/test_sb_hostile_*.py, run by scripts/test_hostile.sh):
- Forged verdicts. The verdict never comes from an exit code or from what the program prints. Tests run in
  another process; the solution's return values cross a pipe as plain data (tuples, lists, dicts, numbers,
  strings, ...) decoded into exact built-in types, so `__eq__`/`__hash__` overrides, patched builtins or
  `assert`, `sys.settrace`, `sys.exit`/`os._exit` before or during the tests, `atexit` tricks, `SystemExit`
  in the function, or printing "passed" cannot make a test pass. The solution's process is entirely the
  program's (it can rewrite its runner, forge any frame, walk to any object), so nothing it says widens
  what the tests see: only a free name of the tests (read, never bound, never a dunder) is taken from it,
  so the tester's own hooks and namespace cannot be bound (`_inside/names.py`); built-in names keep their
  meaning, and a module is imported only under its own name. Exceptions that would end the test's own
  iteration instead of failing it (StopIteration, StopAsyncIteration) arrive as RuntimeError; exit-like
  and foreign ones as a test failure. Arguments the function changed in place are written back as plain
  data, which gives it no power an in-process function lacks (`_inside/writeback.py`). stdin/stdout runs
  are compared line by line in full.
- Reading the tests or answers. Tests are sent only to the tester over a pipe; no test file exists on disk;
  the zygote never holds test data, so nothing leaks through memory inherited at fork. The solution cannot
  open the dataset or other files outside its system paths (bubblewrap's minimal root and Landlock).
- Escaping limits. Wall-clock deadline with kill of everything the run started (the zygote is pid 1 of its
  own pid namespace: `kill(-1)`; without one, a child subreaper kill loop), rlimits on address space, CPU,
  file size, open files and processes, memory and pids cgroups when writable, output caps: infinite loops,
  sleeps, ignored SIGTERM, fork/thread/memory/recursion bombs, 1 GiB of output, daemons and fd exhaustion
  end as `timeout`, `memory`, `output_limit`, `crashed` or `failed`, and no process survives the run.
- State between programs on one worker (a program that computes nothing could otherwise search the answers
  across runs, or trap the next, correct program). Every run, and every case of a chunk, gets a new working
  directory; every directory the program's uid could mark (extended attributes, ACLs, modes, entries,
  timestamps) is compared after the run and repaired by a forked janitor (`_inside/fresh.py`); file
  timestamps cannot be set at all (seccomp), since shared device nodes could not be reset; and nothing the
  program chose (file names, attributes, exit status, resource use) enters the zygote's heap, which every
  later solution process inherits (`_inside/board.py`).
- Touching the host or other tasks. No network (network namespace; seccomp refuses non-unix sockets and
  `connect`), a private /tmp and /dev/shm emptied after every run, writes only in a fresh working directory,
  its own uid per worker role when root, no access to the supervisor's environment or memory
  (clean environment, different uid or Landlock, non-dumpable processes), no signals to the tester, zygote
  or supervisor (uids, pid namespace, Landlock signal scoping or a seccomp rule), no ptrace, mount,
  namespace, keyring, BPF or io_uring calls (seccomp), no System V IPC or message queues (state that could
  persist to the next task).
- Sandbox faults are not wrong answers: a fault (zygote crash, tester without verdict, confinement failure)
  is retried on a fresh worker and otherwise reported as `sandbox_error`. Callers should not reward
  `sandbox_error` above `failed`: with every layer active the program has no known way to cause one.

Not defended:
- The kernel is shared. A kernel exploit (or a kernel bug in a namespace, Landlock or seccomp path) escapes
  everything above. For hostile code at scale, run each node's workers inside a microVM (Firecracker,
  Kata) or gVisor, and keep secrets off those nodes.
- Side channels (timing, cache), and CPU/memory-bandwidth contention with other workers on the host. Also
  covert channels between programs on one worker through what a pool shares by design: the time a run
  ends (close to the next one's start, which that program sees on its own clock) and counters (pid numbers
  in the worker's pid namespace, inode numbers of its tmpfs). Each needs a program that encodes and a later
  one that decodes, on the same worker, with no feedback on its own verdict; closing them would need a new
  pid namespace and tmpfs per run, i.e. a new zygote per run, the cost the pool exists to avoid.
- Tests that trust the solution: if the test calls a helper that the solution defines (HumanEval/32's
  `poly`), the solution controls that helper. Pass such helpers as the spec's trusted `prelude`
  (`sandbox.specs.humaneval_tests` does this for HumanEval). Likewise what the solution reports within its
  rights (its values, its exceptions' messages, the truth value of an object that cannot cross, the new
  contents of a mutable argument) is whatever it chooses, exactly as in process.
- Semantics a pipe cannot carry: object identity and aliasing between arguments (each argument arrives as
  its own copy), objects of the solution's own classes (only their truth value crosses), and later changes
  to module-level data of the solution (copied when the tests' names are bound).
- Tests that misbehave: a worker's tester is long-lived (replaced every 64 runs); test code that changes a
  stdlib module's attributes affects that tester's later runs. Built-ins and imported modules are restored.
- Degraded hosts: each missing layer is detected at start and reported in `Sandbox.layers` with a warning
  (`SandboxWarning`); `require=(...)` turns chosen layers into hard requirements. The weakest combination
  (no namespaces, no Landlock, and an interpreter other uids cannot read, so the solution keeps uid 0 without
  capabilities) lets the program read same-uid processes' memory, the supervisor's included.

Running without root
====================
Install bubblewrap (`apt-get install bubblewrap`; it needs unprivileged user namespaces, which Debian and
most distributions allow). `Sandbox()` then starts each zygote with `bwrap` in new user, pid, net, ipc, uts
and mount namespaces; Landlock (kernel >= 5.13; signal scoping >= 6.12) and seccomp work unprivileged.
What is lost without root: separate uids for solution and tester, and cgroups (memory is then bounded per
process, `memory_mb` x `max_processes`). As root, `isolation="unshare"` works without bubblewrap.
"""
from __future__ import annotations

from .config import (
                     CRASHED,
                     FAILED,
                     MEMORY,
                     OUTPUT_LIMIT,
                     PASSED,
                     SANDBOX_ERROR,
                     STATUSES,
                     TIMEOUT,
                     ExecResult,
                     Limits,
                     validate_tests,
)
from .core import Sandbox, SandboxUnavailable, SandboxWarning
from .layers import layer_summary

__all__ = ["Sandbox", "Limits", "ExecResult", "SandboxWarning", "SandboxUnavailable", "validate_tests",
           "layer_summary", "STATUSES", "PASSED", "FAILED", "TIMEOUT", "MEMORY", "OUTPUT_LIMIT", "CRASHED",
           "SANDBOX_ERROR"]
