"""Confinement applied in each forked child, in an order where every step still has the rights it needs.

session -> descriptors -> parent-death signal -> OOM preference -> rlimits -> uid drop (or, as root without
a usable uid, dropping every capability) -> non-dumpable -> Landlock -> seccomp. A step that the zygote's
start-up probe found working must work again: if it fails, the child reports a sandbox fault and exits
without running any untrusted code (`ConfineError`).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import signal
import struct
from dataclasses import dataclass, field

from . import landlock, seccomp

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
_CAPSET = {"x86_64": 126, "aarch64": 91}
_libc = ctypes.CDLL(None, use_errno=True)


class ConfineError(Exception):
    """A confinement step failed; the child must not run untrusted code."""


@dataclass
class Plan:
    """What to apply in one child. Built by the zygote from its start-up configuration and the run's limits."""

    fds: list[int]                        # fds[i] becomes descriptor i in the child
    rlimits: dict[int, int]               # resource.RLIMIT_* -> value (soft == hard, except CPU)
    cpu_s: int | None = None              # RLIMIT_CPU soft limit; hard = soft + 1
    uid: int | None = None                # drop to this uid/gid (root only)
    drop_caps: bool = False               # stay uid 0 but without any capability (root, no usable uid)
    oom_score_adj: int | None = None
    dumpable: bool = True
    landlock_fd: int | None = None
    seccomp: seccomp.Prepared | None = None
    seccomp_inherited: bool = False       # the zygote installed the filter on itself before forking us
    applied: list[str] = field(default_factory=list)


def _prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise ConfineError(f"prctl({option}): {os.strerror(err)}")


def _drop_capabilities() -> None:
    """Empty the bounding set (so no exec can regain a capability), then the current sets."""
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == errno.EINVAL:       # past the last capability this kernel knows
                break
            raise ConfineError(f"PR_CAPBSET_DROP({cap}): {os.strerror(ctypes.get_errno())}")
    nr = _CAPSET.get(os.uname().machine)
    if nr is None:
        raise ConfineError("capset: unknown system call number for this architecture")
    header = ctypes.create_string_buffer(struct.pack("=Ii", 0x20080522, 0))     # _LINUX_CAPABILITY_VERSION_3
    data = ctypes.create_string_buffer(24)                                       # two zeroed cap_data structs
    if _libc.syscall(nr, header, data) != 0:
        raise ConfineError(f"capset: {os.strerror(ctypes.get_errno())}")


def _arrange_fds(fds: list[int], keep: int | None) -> int | None:
    """Move fds[i] to i, keep one more descriptor (the Landlock ruleset) right after, close the rest."""
    n = len(fds)
    base = 256 + n                        # copies above every target, so no dup2 clobbers a source
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base) if fd >= 0 else -1 for fd in fds]
    kept = fcntl.fcntl(keep, fcntl.F_DUPFD_CLOEXEC, base) if keep is not None else None
    for i, fd in enumerate(high):
        if fd >= 0:
            os.dup2(fd, i, inheritable=i < 3)   # stdio is inherited by the program's own subprocesses
    if kept is not None:
        os.dup2(kept, n, inheritable=False)
        kept = n
    os.closerange(n + (1 if kept is not None else 0), 1 << 16)
    return kept


def apply(plan: Plan) -> list[str]:
    """Apply `plan` to the calling (freshly forked, single-threaded) process. Returns the layers applied."""
    done = plan.applied
    try:
        os.setsid()
        done.append("session")
        ruleset = _arrange_fds(plan.fds, plan.landlock_fd)
        done.append("fds")
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if plan.oom_score_adj is not None:
            try:
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write(str(plan.oom_score_adj))
            except OSError:
                pass
        for res, value in plan.rlimits.items():
            resource.setrlimit(res, (value, value))
        if plan.cpu_s is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (plan.cpu_s, plan.cpu_s + 1))
        done.append("rlimits")
        if plan.uid is not None:
            os.setgroups([])
            os.setresgid(plan.uid, plan.uid, plan.uid)
            os.setresuid(plan.uid, plan.uid, plan.uid)
            done.append("uid")
        if plan.drop_caps:
            _drop_capabilities()
            done.append("caps")
        if not plan.dumpable:
            _prctl(PR_SET_DUMPABLE, 0)
        if ruleset is not None:
            _prctl(seccomp.PR_SET_NO_NEW_PRIVS, 1)
            landlock.restrict_self(ruleset)
            os.close(ruleset)
            done.append("landlock")
        if plan.seccomp is not None:
            plan.seccomp.install(os.getpid())
        if plan.seccomp is not None or plan.seccomp_inherited:
            done.append("seccomp")
    except ConfineError:
        raise
    except Exception as exc:           # OSError, ValueError from setrlimit, ...
        raise ConfineError(f"{type(exc).__name__}: {exc} (after {done})") from None
    return done
