"""Several stdin/stdout cases of one program in one zygote request: a confined "leader" forks one process per case.

Why: a stdin/stdout case costs little of its own; its price is the process around it (fork, confinement,
copy-on-write faults, a zygote round trip). The leader is a pre-forked, already confined solution spare
(same uid, rlimits, Landlock and seccomp as any solution process) that compiles the program once and then,
per case, forks a fresh child that runs the compiled program as `__main__` on that case's stdin/stdout/stderr.
Each case is still its own process with fresh interpreter state, its own output pipes, its own wall-clock
deadline and CPU limit, and a new working directory (a case that changed anything ends the chunk).

The leader runs only this module's code: it never executes the program itself. It reports each case it
could decide *unambiguously* on its control channel (fd 3), which no case process holds:
`{"case": k, "code", "signal", "cpu_s", "maxrss_kb", "wall_s", "memory", "timeout"}`. Anything else ends the
request early, and the supervisor re-runs the undecided cases one request each, where the zygote's full
clean-up applies: a case that left a process behind, ended by SIGKILL (ours to send, or the OOM killer's),
changed its working directory or a directory the zygote watches (fresh.py), or made the leader fail (e.g.
`kill -1` kills the leader too). So the chunked path can only be faster, never judge differently: every
verdict still comes from the supervisor's comparison of the complete output, and a case that interferes
with the leader is judged on the ordinary path.

Descriptors (arranged by the zygote): 0-2 /dev/null, 3 control channel (code in, reports out), then per case
`4 + 3k` stdin, `5 + 3k` stdout, `6 + 3k` stderr.
"""
from __future__ import annotations

import ctypes
import os
import signal
import time
import types
import warnings

from . import fresh, solution, wire

CTL, FIRST = 3, 4
PR_SET_CHILD_SUBREAPER = 36
EVENTS_CAP = 1 << 16
WATCH: list[str] = []             # set by the zygote: the directories it compares after each run (fresh.py)
WORKDIR = ""                      # set by the zygote: the working directory, replaced for every case
_MEMORY_FRAME = b'{"ev":"memory"}'
_EVENTS = bytearray(EVENTS_CAP)   # the one buffer a case's events are read into, zeroed after each case
_libc = ctypes.CDLL(None, use_errno=True)


class _Abort(Exception):
    """The leader cannot decide the current case: stop, the supervisor re-runs it on the ordinary path."""


def run() -> None:
    req = wire.read_frame(CTL, solution.CODE_CAP)
    code, n, timeout_s = req["code"], int(req["n"]), float(req["timeout_s"])
    program = _compile(code)
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        os._exit(3)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    marks = _marks()
    for k in range(n):
        try:
            report = _case(k, code, program, timeout_s, mask)
        except (_Abort, OSError):
            break
        wire.write_frame(CTL, report)
        if report["timeout"]:
            break                            # the zygote kills what is left
        try:
            marks = _next_workdir(marks)
        except (_Abort, OSError):
            break
    os._exit(0)


def _compile(code: str) -> types.CodeType | None:
    """The program compiled once for all cases, or None: then each case compiles it and reports errors and
    compile-time warnings (SyntaxWarning) on its own stderr, as `python solution.py` would."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            program = compile(code, "solution.py", "exec", dont_inherit=True)
    except BaseException:
        return None
    return None if caught else program


def _case(k: int, code: str, program, timeout_s: float, mask) -> dict:
    fds = [FIRST + 3 * k, FIRST + 3 * k + 1, FIRST + 3 * k + 2]
    ev_r, ev_w = os.pipe()
    os.set_blocking(ev_w, False)             # a case that floods its event channel is not blocked by us
    started = time.monotonic()
    try:
        pid = os.fork()
    except OSError:
        raise _Abort() from None
    if pid == 0:
        _child(fds + [ev_w], code, program, mask)
    os.close(ev_w)
    for fd in fds:
        os.close(fd)
    deadline = started + timeout_s
    status = None
    while status is None:
        done, st, ru = os.wait4(pid, os.WNOHANG)
        if done:
            status = st
            break
        left = deadline - time.monotonic()
        if left <= 0:
            os.close(ev_r)
            return {"case": k, "timeout": True, "wall_s": time.monotonic() - started, "memory": False,
                    "code": None, "signal": None, "cpu_s": 0.0, "maxrss_kb": 0}
        signal.sigtimedwait([signal.SIGCHLD], left)
    wall = time.monotonic() - started
    _reap_descendants()
    memory = _memory_event(ev_r)
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    if sig == signal.SIGKILL:
        raise _Abort()                       # the OOM killer, a hard CPU limit or the program: ordinary path
    return {"case": k, "timeout": False, "wall_s": wall, "memory": memory,
            "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None, "signal": sig,
            "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss}


def _child(fds: list[int], code: str, program, mask) -> None:
    """In the case's process: descriptors 0-3, its own session, then the program."""
    try:
        for i, fd in enumerate(fds):
            os.dup2(fd, i, inheritable=i < 3)
        os.closerange(len(fds), 1 << 16)
        os.setsid()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    except BaseException:
        os._exit(121)
    solution.run_main(code, program)


def _reap_descendants() -> None:
    """Reap what the case left (orphans come to us as subreaper); a live one means: ordinary path."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            raise _Abort()


def _memory_event(fd: int) -> bool:
    """Whether the case reported a MemoryError (untrusted, like every solution event: it only names a failure).
    Read into one reused buffer that is zeroed afterwards: the next case is forked from this process, and
    what one case wrote must not be in its memory."""
    n = 0
    view = memoryview(_EVENTS)
    try:
        while n < EVENTS_CAP:
            got = os.readv(fd, [view[n:]])
            if not got:
                break
            n += got
    except OSError:
        pass
    finally:
        os.close(fd)
    found = _EVENTS.find(_MEMORY_FRAME, 0, n) >= 0
    view[:n] = bytes(n)
    return found


def _marks() -> fresh.Marks:
    """Marks of the working directory and of every directory the zygote watches (fresh.Marks)."""
    return fresh.Marks([WORKDIR, *WATCH])


def _next_workdir(marks: fresh.Marks) -> fresh.Marks:
    """After a case: if it changed nothing anywhere (its working directory included: no entry, no listing,
    no attribute), replace the working directory by a new one for the next case; otherwise stop (_Abort)
    and let the zygote's full clean-up run before each remaining case."""
    if any(marks.changed(p) for p in [WORKDIR, *WATCH]):
        raise _Abort()
    os.rmdir(WORKDIR)
    os.mkdir(WORKDIR, 0o700)
    os.chdir(WORKDIR)
    for p in (WORKDIR, os.path.dirname(WORKDIR)):        # what we just changed ourselves
        marks.take(p)
    return marks
