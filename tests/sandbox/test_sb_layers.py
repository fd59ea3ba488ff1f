"""The seccomp filter and the Landlock ruleset, each applied alone in a forked child and checked by effect."""
from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import sys

import pytest

from sandbox._inside import landlock, seccomp

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux only")


def in_child(fn):
    """Run fn() in a forked child; return its JSON-able result (or the exception text)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = {"ok": fn()}
        except BaseException as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))


def _errno_of(fn):
    try:
        fn()
        return 0
    except OSError as exc:
        return exc.errno


@pytest.mark.skipif(seccomp.supported_arch() is None, reason="no seccomp table for this architecture")
def test_seccomp_patch_matches_fresh_assembly():
    for pid in (1, 2, 4242, 2 ** 22):
        for restrict in (False, True):
            for part in seccomp.PARTS:
                assert seccomp.build(pid, restrict, part) == seccomp._assemble(pid, restrict, part)


@pytest.mark.skipif(seccomp.supported_arch() is None, reason="no seccomp table for this architecture")
def test_seccomp_filter_blocks_escapes_and_keeps_python_working():
    libc = ctypes.CDLL(None, use_errno=True)

    def probe():
        seccomp.install(seccomp.build(os.getpid(), restrict_kill=True))
        a, b = socket.socketpair()
        a.send(b"x")
        res = {
            "inet": _errno_of(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
            "inet6": _errno_of(lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)),
            "netlink": _errno_of(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)),
            "unix_connect": _errno_of(lambda: socket.socket(socket.AF_UNIX).connect("\0sbx-test")),
            "socketpair": b.recv(1).decode(),
            "unshare": libc.unshare(0x10000000) == -1 and ctypes.get_errno(),
            "mount": libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) == -1 and ctypes.get_errno(),
            "ptrace": libc.ptrace(16, os.getppid(), 0, 0) == -1 and ctypes.get_errno(),
            "kill_parent": _errno_of(lambda: os.kill(os.getppid(), 0)),
            "kill_self": _errno_of(lambda: os.kill(os.getpid(), 0)),
            "shmget": libc.shmget(0, 4096, 0o1000 | 0o600) == -1 and ctypes.get_errno(),
        }
        pid = os.fork()                    # plain fork still works
        if pid == 0:
            os._exit(7)
        res["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        return res

    out = in_child(probe)
    assert "ok" in out, out
    res = out["ok"]
    assert res["inet"] == res["inet6"] == res["netlink"] == errno.EAFNOSUPPORT
    assert res["unix_connect"] == errno.EPERM
    assert res["socketpair"] == "x" and res["fork"] == 7 and res["kill_self"] == 0
    for key in ("unshare", "mount", "ptrace", "kill_parent", "shmget"):
        assert res[key] == errno.EPERM, (key, res)


@pytest.mark.skipif(seccomp.supported_arch() is None, reason="no seccomp table for this architecture")
def test_zygote_filter_lets_sendmsg_through_only_on_high_descriptors():
    """The zygote installs the "zygote" part on itself and its children inherit it (plus "kill" where signals
    are restricted): sendmsg works on a descriptor >= HIGH_FD only, which a child limited by RLIMIT_NOFILE
    cannot hold; everything else is the full filter's."""
    import fcntl
    import resource
    libc = ctypes.CDLL(None, use_errno=True)

    def probe():
        resource.setrlimit(resource.RLIMIT_NOFILE, (seccomp.HIGH_FD + 64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        seccomp.install(seccomp.build(os.getpid(), False, "zygote"))
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        high = socket.socket(fileno=fcntl.fcntl(a.fileno(), fcntl.F_DUPFD_CLOEXEC, seccomp.HIGH_FD))
        res = {"send_fds_high": _errno_of(lambda: socket.send_fds(high, [b"x"], [0])),
               "send_fds_low": _errno_of(lambda: socket.send_fds(a, [b"x"], [0])),
               "pidfd_open": _errno_of(lambda: os.close(os.pidfd_open(os.getpid()))),
               "process_madvise": libc.syscall(440, -1, 0, 0, 0, 0) == -1 and ctypes.get_errno(),
               "mount": libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) == -1 and ctypes.get_errno(),
               "inet": _errno_of(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
               "kill_parent_before": _errno_of(lambda: os.kill(os.getppid(), 0))}
        # A child: the descriptor limit keeps it below HIGH_FD, and the "kill" part restricts signals.
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        res["dup_high"] = _errno_of(lambda: fcntl.fcntl(b.fileno(), fcntl.F_DUPFD, seccomp.HIGH_FD))
        seccomp.install(seccomp.build(os.getpid(), True, "kill"))
        res["kill_parent_after"] = _errno_of(lambda: os.kill(os.getppid(), 0))
        res["kill_self"] = _errno_of(lambda: os.kill(os.getpid(), 0))
        res["send_fds_high_after"] = _errno_of(lambda: socket.send_fds(high, [b"x"], [0]))
        return res

    out = in_child(probe)
    assert "ok" in out, out
    res = out["ok"]
    assert res["send_fds_high"] == res["pidfd_open"] == res["kill_parent_before"] == res["kill_self"] == 0
    assert res["send_fds_low"] == res["process_madvise"] == res["mount"] == errno.EPERM
    assert res["inet"] == errno.EAFNOSUPPORT
    assert res["dup_high"] == errno.EINVAL and res["kill_parent_after"] == errno.EPERM
    assert res["send_fds_high_after"] == 0      # an inherited high descriptor would work: children close them


@pytest.mark.skipif(landlock.abi_version() == 0, reason="kernel without Landlock")
def test_landlock_allows_only_listed_paths(tmp_path):
    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    other.mkdir()
    (other / "secret.txt").write_text("answer")
    abi = landlock.abi_version()
    reads = ["/usr", "/lib", "/lib64", "/bin", "/etc", os.path.realpath(sys.base_prefix)]

    def probe():
        fd = landlock.build_ruleset(abi, reads, [str(work)], ["/dev/null"])
        ctypes.CDLL(None).prctl(seccomp.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        landlock.restrict_self(fd)
        (work / "ok.txt").write_text("fine")
        return {
            "write_other": _errno_of(lambda: (other / "x.txt").write_text("no")),
            "read_secret": _errno_of(lambda: (other / "secret.txt").read_text()),
            "read_proc": _errno_of(lambda: open(f"/proc/{os.getppid()}/environ").read()),
            "read_usr": _errno_of(lambda: os.listdir("/usr")),
            "devnull": _errno_of(lambda: open("/dev/null", "w").write("x")),
            "tcp": _errno_of(lambda: socket.create_connection(("127.0.0.1", 9), timeout=1)) if abi >= 4 else -1,
        }

    out = in_child(probe)
    assert "ok" in out, out
    res = out["ok"]
    assert (work / "ok.txt").read_text() == "fine"
    assert res["write_other"] == res["read_secret"] == res["read_proc"] == errno.EACCES
    assert res["read_usr"] == 0 and res["devnull"] == 0
    if abi >= 4:
        assert res["tcp"] == errno.EACCES
    assert not (other / "x.txt").exists()
