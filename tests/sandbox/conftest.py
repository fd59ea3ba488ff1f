"""Fixtures for the sandbox tests: one shared Sandbox per session (starting workers costs ~0.3 s), and a
factory for tests that need their own (closed at teardown)."""
from __future__ import annotations

import warnings

import pytest

from sandbox import Limits, Sandbox, SandboxWarning


def _quiet_sandbox(**kwargs) -> Sandbox:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)     # layer warnings are asserted in their own test
        return Sandbox(**kwargs)


@pytest.fixture(scope="session")
def sb():
    box = _quiet_sandbox(workers=2, limits=Limits(timeout_s=10.0))
    yield box
    box.close()


@pytest.fixture
def make_sandbox():
    boxes = []

    def make(**kwargs) -> Sandbox:
        box = _quiet_sandbox(**kwargs)
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.close()


# ------------------------------------------------------------------------------------------ hostile corpus
HOSTILE_LIMITS = Limits(timeout_s=3.0, memory_mb=256, max_processes=32, tmp_mb=32, max_output_bytes=4 << 20)
SECRET_ENV = "SBX_HOSTILE_SECRET"


def _hostile_isolations() -> list[str]:
    from sandbox.host import detect
    host = detect()
    first = host.candidates("auto")[0]
    extra = ["unshare"] if host.is_root and host.unshare and first != "unshare" else []
    return [first] + extra


INITIAL_PID_NS = 0xEFFFFFFC        # inode of the host's (initial) pid namespace


def _guard_hostile() -> None:
    """Hostile programs run only inside the dedicated namespaces scripts/test_hostile.sh creates: a sandbox
    bug (or a deliberately weakened sandbox) could otherwise kill every process on the machine."""
    import os
    if os.environ.get("SANDBOX_HOSTILE_OK") != "1":
        pytest.skip("hostile corpus: run it with scripts/test_hostile.sh (own pid + network namespace)")
    if os.stat("/proc/self/ns/pid").st_ino == INITIAL_PID_NS:
        pytest.fail("refusing to run hostile programs in the host's pid namespace")


@pytest.fixture(scope="session", params=_hostile_isolations())
def hostile(request):
    """A Sandbox under each strong isolation this host offers, created after a secret is put in our env.

    SANDBOX_HOSTILE_WEAKEN=1 swaps in a deliberately weak sandbox (no namespaces, Landlock, seccomp or
    cgroups) to show that the corpus does catch breaches; only ever inside scripts/test_hostile.sh."""
    import os
    _guard_hostile()
    os.environ[SECRET_ENV] = "env-secret-value-4f2a"
    if os.environ.get("SANDBOX_HOSTILE_WEAKEN") == "1":
        box = _quiet_sandbox(workers=2, limits=HOSTILE_LIMITS, isolation="none", landlock=False, seccomp=False,
                             cgroups=False)
    else:
        box = _quiet_sandbox(workers=2, limits=HOSTILE_LIMITS, isolation=request.param)
    yield box
    box.close()


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (from /proc)."""
    import os
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def inner_pid(pid: int) -> int:
    """A process's pid in its own (innermost) pid namespace, from the NSpid line of /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return pid


@pytest.fixture
def no_survivors(hostile):
    """After a hostile test: under each worker's launcher only the zygote and its idle pre-forked spares are
    left (nothing the runs started), and the workers still run a plain job."""
    yield
    for w in hostile._workers:
        if w.proc is None:
            continue
        status = w.status()
        allowed = {status["pid"], *status["spares"]}
        left = [p for p in descendants(w.proc.pid) if inner_pid(p) not in allowed]
        assert not left, f"processes survived on worker {w.index}: {left}"
    res = hostile.run_batch([("def f():\n    return 1\n", {"kind": "assert", "source": "assert f() == 1\n"})] * 2)
    assert all(r.passed for r in res), [r.details for r in res]
