"""What this host offers, and the command that starts a zygote under the chosen isolation.

Isolation ("launchers"), strongest first:
- `bwrap`: bubblewrap builds a minimal root (read-only /usr, the interpreter, a few /etc files, this package's
  `_inside` directory, a fresh /proc and /dev, tmpfs /tmp and /dev/shm) in new pid, net, ipc, uts, mount and
  cgroup namespaces (and a user namespace when not root). The zygote is pid 1 (`--as-pid-1`).
- `unshare` (root only): util-linux `unshare` gives new pid, net, ipc, uts and mount namespaces; the zygote
  mounts its own tmpfs /tmp, /var/tmp and /dev/shm; the rest of the file system stays visible, and reads are
  limited by Landlock and the dropped uid.
- `none`: the zygote is a plain child process (a warning says so).
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
from dataclasses import dataclass

from ._inside import landlock, seccomp

PKG_DIR = os.path.dirname(os.path.abspath(__file__))
INSIDE_DIR = os.path.join(PKG_DIR, "_inside")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/passwd", "/etc/group",
             "/etc/nsswitch.conf")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ISOLATIONS = ("auto", "bwrap", "unshare", "none")
PRIVATE_DIRS = ("/tmp", "/dev", "/dev/shm", "/proc")     # mounted fresh by bwrap before the binds below


@dataclass(frozen=True)
class Host:
    is_root: bool
    bwrap: str | None
    unshare: str | None
    landlock_abi: int
    seccomp_arch: str | None
    machine: str

    def candidates(self, requested: str) -> list[str]:
        """Isolations to try, in order, for `requested` (one of ISOLATIONS)."""
        if requested not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATIONS)}, got {requested!r}")
        if requested != "auto":
            return [requested]
        out = []
        if self.bwrap:
            out.append("bwrap")
        if self.is_root and self.unshare:
            out.append("unshare")
        return out + ["none"]


def detect() -> Host:
    return Host(is_root=os.geteuid() == 0, bwrap=shutil.which("bwrap"), unshare=shutil.which("unshare"),
                landlock_abi=landlock.abi_version(), seccomp_arch=seccomp.supported_arch(),
                machine=platform.machine())


def interpreter() -> str:
    """The real interpreter binary behind `sys.executable` (a venv's `python` is a symlink to it)."""
    return os.path.realpath(sys.executable)


def python_dirs(exe: str) -> list[str]:
    """Directories the interpreter needs: its prefixes (stdlib, lib-dynload) and its own directory."""
    dirs = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix), os.path.dirname(exe)}
    return sorted(d for d in dirs if not any(d == s or d.startswith(s + "/") for s in ("/usr",)))


def _ancestors(path: str) -> list[str]:
    """/a/b/c -> ["/a", "/a/b"] (top-down, without "/" and the path itself)."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:i + 1]) for i in range(len(parts))]


def closed_ancestor(path: str) -> str | None:
    """The highest directory above `path` that other users cannot traverse (no o+x), if any."""
    for parent in _ancestors(path):
        try:
            if not os.stat(parent).st_mode & 0o001:
                return parent
        except OSError:
            return parent
    return None


def read_paths(exe: str) -> list[str]:
    """Paths the sandboxed processes may read (the Landlock allow-list); the same inside and outside bwrap."""
    paths = [p for p in SYSTEM_DIRS if os.path.exists(p)] + [p for p in ETC_FILES if os.path.exists(p)]
    return paths + python_dirs(exe) + [INSIDE_DIR]


def _bwrap_args(exe: str, is_root: bool, tmp_mb: int) -> list[str]:
    args = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--as-pid-1", "--new-session", "--die-with-parent"]
    # As root we keep the capabilities inside (no user namespace) so the zygote can drop each child to its
    # own uid; without root, bwrap's user namespace maps our uid and grants nothing.
    args += ["--cap-add", "ALL"] if is_root else ["--unshare-user"]
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    for f in ETC_FILES:
        args += ["--ro-bind-try", f, f]
    # The private /tmp and /dev/shm first, then what the zygote must read: a checkout or interpreter that
    # lives under /tmp (CI runners, scratch clones) would otherwise be hidden by the tmpfs mounted over it
    # (found: `bwrap: Connection reset by peer` from a clone in a `mktemp -d` directory).
    args += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(tmp_mb << 20), "--tmpfs", "/tmp",
             "--size", str(tmp_mb << 20), "--tmpfs", "/dev/shm"]
    made: set[str] = set()
    for d in [*python_dirs(exe), INSIDE_DIR]:
        # Parent directories are created fresh and traversable: a pyenv or a checkout under a 0700 home
        # must still be usable by the unprivileged uids the children run as.
        for parent in _ancestors(d):
            if parent not in made and parent not in PRIVATE_DIRS and \
                    not any(parent == s or parent.startswith(s + "/") for s in SYSTEM_DIRS):
                args += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        args += ["--ro-bind", d, d]
    args += ["--chdir", "/tmp"]
    return args


def zygote_command(isolation: str, host: Host, ctl_fd: int, tmp_mb: int) -> list[str]:
    exe = interpreter()
    boot = (f"import sys; sys.path.insert(0, {PKG_DIR!r}); "
            f"from _inside.zygote import main; main({ctl_fd})")
    py = [exe, "-I", "-S", "-B", "-c", boot]
    if isolation == "bwrap":
        if not host.bwrap:
            raise RuntimeError("bubblewrap (bwrap) is not installed")
        return [host.bwrap, *_bwrap_args(exe, host.is_root, tmp_mb), "--", *py]
    if isolation == "unshare":
        if not (host.is_root and host.unshare):
            raise RuntimeError("isolation 'unshare' needs root and util-linux unshare")
        return [host.unshare, "--fork", "--pid", "--mount-proc", "--net", "--ipc", "--uts", "--mount",
                "--propagation", "private", "--kill-child", "--", *py]
    return py


def zygote_env() -> dict:
    """The zygote's whole environment: nothing of the caller's (no tokens, keys or proxies)."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "MALLOC_ARENA_MAX": "2", "HOME": "/tmp"}
