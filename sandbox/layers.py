"""Which protection layers are active, measured at start-up, and what a missing one means.

The zygote reports what its start-up probe (a child confined exactly like a solution) managed to apply and
the inode numbers of its namespaces; the supervisor compares those with its own to see which namespaces
are really new. Nothing here is assumed from configuration alone.
"""
from __future__ import annotations

import os

from .host import Host
from .worker import Worker

_NS = ("net", "pid", "mnt", "ipc", "uts", "user")


def _own_ns() -> dict:
    out = {}
    for name in _NS:
        try:
            out[name] = os.stat(f"/proc/self/ns/{name}").st_ino
        except OSError:
            out[name] = None
    return out


def describe_layers(isolation: str, host: Host, worker: Worker) -> dict:
    hello = worker.hello
    applied = set((hello.get("probe") or {}).get("applied", []))
    mine, theirs = _own_ns(), hello.get("ns", {})

    def new_ns(name: str) -> bool:
        return theirs.get(name) is not None and theirs.get(name) != mine.get(name)

    abi = int(hello.get("landlock_abi", 0)) if "landlock" in applied else 0
    cg = worker.cgroups.dirs if worker.cgroups else {}
    return {
        "isolation": isolation,
        "fork_server": True,
        "session": "session" in applied,
        "rlimits": "rlimits" in applied,
        "workdir": True,
        "private_tmp": bool(hello.get("private_tmp")),
        "net_ns": new_ns("net"),
        "pid_ns": new_ns("pid") and bool(hello.get("pid1")),
        "mount_ns": new_ns("mnt"),
        "ipc_ns": new_ns("ipc"),
        "user_ns": new_ns("user"),
        "uid_drop": "uid" in applied,
        "landlock": abi,
        "landlock_net": abi >= 4,
        "landlock_scope": abi >= 6,
        "seccomp": "seccomp" in applied,
        "cgroup_memory": "memory" in cg,
        "cgroup_pids": "pids" in cg,
    }


def missing_layers(layers: dict) -> dict[str, str]:
    """Layer name -> what its absence means, for every relevant layer that is not active."""
    out = {}
    seccomp = layers["seccomp"]
    if not layers["net_ns"]:
        out["net_ns"] = ("no network namespace; " + ("seccomp still refuses every socket but AF_UNIX" if seccomp
                         else "the program can use the network"))
    if not layers["pid_ns"]:
        out["pid_ns"] = "no pid namespace; leftover processes are found and killed as children of the zygote"
    if not layers["mount_ns"] or not layers["private_tmp"]:
        out["mount_ns"] = "no private mount namespace: /tmp and /dev/shm are the host's"
    if not layers["uid_drop"]:
        out["uid_drop"] = ("solution, tester and zygote share one uid (not root, or the interpreter is not readable "
                           "by other uids); Landlock scoping, seccomp and non-dumpable processes keep the solution "
                           "away from the others")
    if not layers["landlock"]:
        out["landlock"] = "no Landlock: file access is limited only by the namespaces and permissions"
    elif not layers["landlock_scope"]:
        out["landlock_scope"] = "Landlock ABI < 6: signals are restricted by seccomp instead"
    if not seccomp:
        out["seccomp"] = "no seccomp filter: ptrace, namespaces, mount and raw sockets are not blocked"
    if not layers["cgroup_memory"]:
        out["cgroup_memory"] = "no memory cgroup: memory is bounded per process (memory_mb x max_processes)"
    if not layers["cgroup_pids"]:
        out["cgroup_pids"] = "no pids cgroup: the process count relies on RLIMIT_NPROC"
    return out


def layer_summary(layers: dict) -> str:
    on = [k for k, v in layers.items() if v and k != "isolation"]
    off = [k for k, v in layers.items() if not v]
    return f"isolation={layers['isolation']} active=[{', '.join(on)}] missing=[{', '.join(off)}]"
