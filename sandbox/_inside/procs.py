"""Process, file-system and mount helpers for the zygote: killing and reaping, wiping, making the
interpreter reachable for unprivileged uids inside our own mount namespace.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import stat
from typing import Any

MS_NOSUID, MS_NODEV = 2, 4
_libc = ctypes.CDLL(None, use_errno=True)


def kill_all_except(keep: set[int]) -> None:
    """From pid 1 of a pid namespace: stop every process at once (no more forks), SIGKILL all but `keep`
    (found through our own /proc), then let `keep` continue. Never called outside such a namespace."""
    assert os.getpid() == 1
    try:
        os.kill(-1, signal.SIGSTOP)
    except ProcessLookupError:
        return
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != 1 and int(entry) not in keep:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass
    for pid in keep:
        try:
            os.kill(pid, signal.SIGCONT)
        except OSError:
            pass


def children(pid: int | None = None) -> list[int]:
    me = os.getpid() if pid is None else pid
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        pass
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


def remove(path: str) -> None:
    def onerror(func: Any, p: str, exc: Any) -> None:
        try:                                   # a directory the program made unreadable: reopen and retry
            os.chmod(os.path.dirname(p) or ".", stat.S_IRWXU)
            os.chmod(p, stat.S_IRWXU)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)
        except OSError:
            pass
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=onerror)
        else:
            os.unlink(path)
    except OSError:
        pass


def world_usable(path: str) -> bool:
    """Whether any uid can traverse every ancestor of `path` and read it."""
    parts = path.strip("/").split("/")
    for i in range(len(parts)):
        try:
            mode = os.stat("/" + "/".join(parts[:i + 1])).st_mode
        except OSError:
            return False
        if not mode & 0o001 or (i == len(parts) - 1 and not mode & 0o004):
            return False
    return True


def closed_ancestor(path: str) -> str | None:
    parts = path.strip("/").split("/")[:-1]
    for i in range(len(parts)):
        parent = "/" + "/".join(parts[:i + 1])
        if not os.stat(parent).st_mode & 0o001:
            return parent
    return None


def mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(src.encode() if src else None, dst.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} on {dst}: {os.strerror(err)}")


def expose(dirs: list[str]) -> None:
    """In our own mount namespace: when a directory the interpreter needs sits under one other users cannot
    traverse (a pyenv in a 0700 /root), cover that ancestor with an empty tmpfs and bind the directory back,
    read-only. As a side effect the rest of that ancestor (root's home) disappears from the sandbox."""
    MS_BIND, MS_REC, MS_MOVE, MS_REMOUNT, MS_RDONLY = 4096, 16384, 8192, 32, 1
    blocked: dict[str, list[str]] = {}
    for d in dirs:
        top = closed_ancestor(d)
        if top:
            blocked.setdefault(top, []).append(d)
    for top, paths in blocked.items():
        staged = []
        for i, d in enumerate(paths):
            stage = f"/tmp/.sbx-stage-{i}"
            os.makedirs(stage, exist_ok=True)
            mount(d, stage, None, MS_BIND | MS_REC)
            staged.append((stage, d))
        mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
        for stage, d in staged:
            os.makedirs(d, mode=0o755, exist_ok=True)
            mount(stage, d, None, MS_MOVE)
            mount(None, d, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
            os.rmdir(stage)


def mount_tmpfs(path: str, size_mb: int) -> None:
    os.makedirs(path, exist_ok=True)
    opts = f"size={size_mb}m,mode=1777".encode()
    if _libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {path}: {os.strerror(err)}")


def set_oom_score_adj(value: int) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError:
        pass


def read_all(fd: int, cap: int | None = None) -> bytes:
    """Everything up to end of file (or the first `cap` bytes: the rest is read and dropped)."""
    chunks, size = [], 0
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        if cap is None or size < cap:
            chunks.append(chunk[:None if cap is None else cap - size])
            size += len(chunks[-1])
