"""One worker: a zygote process, its control socket, its cgroups, and (re)starting it.

The zygote is started with `subprocess.Popen` (fork+exec of a fresh interpreter, no `preexec_fn`), which is
safe from a parent with many threads such as a trainer with torch loaded. Popen is always called from one
long-lived "spawner" thread: a launcher's parent-death signal (bubblewrap's `--die-with-parent`, unshare's
`--kill-child`) follows the *thread* that forked it, so a short-lived caller thread must not be that parent.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import Executor
from typing import Any

from . import host as hostmod
from .cgroups import WorkerCgroups

START_TIMEOUT_S = 60.0
PRELOAD = ("abc array ast base64 bisect calendar cmath collections collections.abc contextlib copy dataclasses "
           "datetime decimal enum fractions functools hashlib heapq io itertools json math numbers operator "
           "random re statistics string struct textwrap time traceback types typing unicodedata").split()


class WorkerError(RuntimeError):
    """The zygote could not be started or stopped answering: a sandbox fault."""


class Worker:
    def __init__(self, index: int, isolation: str, host: hostmod.Host, init: dict, spawner: Executor,
                 cgroup_limits: tuple[int, int] | None, owner: str = "") -> None:
        self.index = index
        self.owner = owner or str(os.getpid())      # the Sandbox it belongs to: its cgroup is its own
        self.isolation = isolation
        self.host = host
        self.init = init
        self.spawner = spawner
        self.cgroup_limits = cgroup_limits
        self.cgroups: WorkerCgroups | None = None
        self.oom_count: int | None = None           # the cgroup's OOM-kill counter after the last run
        self.proc: subprocess.Popen | None = None
        self.ctl: socket.socket | None = None
        self.hello: dict = {}
        self.log = None
        self.retire = False                         # the zygote asked to be replaced (fresh.Workspace.renew)

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self) -> dict:
        if self.cgroup_limits and self.cgroups is None:
            name = f"reasoner-sandbox-{self.owner}-{self.index}"
            self.cgroups = WorkerCgroups(name, *self.cgroup_limits)
        sup, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            cmd = hostmod.zygote_command(self.isolation, self.host, child.fileno(), self.init["tmp_mb"])
            if self.cgroups:
                cmd = self.cgroups.wrap(cmd)
            self.log = tempfile.TemporaryFile(prefix="sandbox-zygote-")
            self.proc = self.spawner.submit(
                subprocess.Popen, cmd, pass_fds=[child.fileno()], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=self.log, env=hostmod.zygote_env(), close_fds=True,
                start_new_session=True).result()
        except BaseException:
            sup.close()
            raise
        finally:
            child.close()
        self.ctl = sup
        self.retire = False
        self.oom_count = self.cgroups.oom_kills() if self.cgroups else None
        self.send(self.init)
        hello = self.recv(START_TIMEOUT_S)
        if not hello or hello.get("op") != "hello":
            error = (hello or {}).get("error") or "no answer"
            self.stop()
            raise WorkerError(f"zygote ({self.isolation}) failed to start: {error}; log: {self.log_tail()}")
        self.hello = hello
        return hello

    def restart(self) -> dict:
        self.stop()
        return self.start()

    def stop(self) -> None:
        if self.ctl is not None:
            try:
                self.send({"op": "exit"})
            except OSError:
                pass
            self.ctl.close()
            self.ctl = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)   # new session: the launcher leads its group
                except OSError:
                    pass
                self.proc.wait()
            self.proc = None

    def close(self) -> None:
        self.stop()
        if self.cgroups:
            deadline = time.monotonic() + 2.0
            while self.cgroups.dirs and time.monotonic() < deadline:
                self.cgroups.remove()                           # fails while the last processes exit
                if self.cgroups.dirs:
                    time.sleep(0.01)
        if self.log:
            self.log.close()
            self.log = None

    @property
    def alive(self) -> bool:
        return self.ctl is not None and self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        if not self.log:
            return ""
        try:
            self.log.seek(0, os.SEEK_END)
            size = self.log.tell()
            self.log.seek(max(0, size - n))
            return self.log.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    # ------------------------------------------------------------------------------------ messages
    def send(self, msg: dict, fds: list[int] | None = None) -> None:
        assert self.ctl is not None
        data = json.dumps(msg).encode()
        if fds:
            socket.send_fds(self.ctl, [data], fds)
        else:
            self.ctl.send(data)

    def recv(self, timeout: float) -> dict | None:
        """One message, or None at EOF / timeout."""
        assert self.ctl is not None
        ready, _, _ = select.select([self.ctl], [], [], timeout)
        if not ready:
            return None
        data = self.ctl.recv(1 << 20)
        return json.loads(data) if data else None

    def status(self) -> dict:
        """The zygote's pid and its idle spares (pids in its own namespace). Only while no run is active."""
        self.send({"op": "status"})
        return self.recv(10.0) or {}

    def fileno(self) -> int:
        assert self.ctl is not None
        return self.ctl.fileno()


def user_task_count(uid: int) -> int:
    """Processes and threads of `uid` on this host (what RLIMIT_NPROC counts for an unprivileged user)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields.get("Threads", "1"))
        except (OSError, KeyError, ValueError):
            pass
    return total


def zygote_init(isolation: str, host: hostmod.Host, uids: tuple[int, int] | None, tmp_mb: int,
                limits: dict, landlock: bool, seccomp: bool, preload: tuple[str, ...]) -> dict[str, Any]:
    if host.is_root:
        nproc_base = 0                      # each worker's processes run under their own uids
    elif isolation == "bwrap":
        nproc_base = 2                      # a user namespace per worker: zygote + tester share the uid
    else:
        nproc_base = user_task_count(os.getuid()) + 16
    return {"op": "init", "mode": isolation, "uids": list(uids) if uids else None, "tmp_mb": tmp_mb,
            "read_paths": hostmod.read_paths(hostmod.interpreter()), "limits": limits,
            "python_dirs": hostmod.python_dirs(hostmod.interpreter()),
            "landlock": landlock, "seccomp": seccomp, "preload": list(preload), "nproc_base": nproc_base}
