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
            assert seccomp.build(pid, restrict) == seccomp._assemble(pid, restrict)


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
