"""Per-worker memory and pids cgroups, where the host lets us create them (typically as root).

Each worker (its zygote and every process it forks) goes into its own cgroup, created under the cgroup the
supervisor is in: cgroup v1 `memory` and `pids` hierarchies, or cgroup v2 when the parent already delegates
those controllers. The zygote is put in *before* it starts (a `sh` wrapper writes its own pid into
`cgroup.procs` and then execs the launcher), so no child can be forked outside. `oom_kills()` is read
before and after each run to tell a memory kill from other SIGKILLs.
"""
from __future__ import annotations

import os

ROOT = "/sys/fs/cgroup"


def _current_paths() -> dict[str, str]:
    """controller (or "" for v2) -> path relative to its hierarchy, from /proc/self/cgroup."""
    out = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for c in controllers.split(",") if controllers else [""]:
                    out[c] = path
    except OSError:
        pass
    return out


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class WorkerCgroups:
    def __init__(self, name: str, memory_bytes: int, pids_max: int) -> None:
        self.dirs: dict[str, str] = {}          # "memory" / "pids" -> cgroup directory
        self.v2 = False
        current = _current_paths()
        for controller, value, limit_file in (("memory", memory_bytes, "memory.limit_in_bytes"),
                                              ("pids", pids_max, "pids.max")):
            base = os.path.join(ROOT, controller)
            if controller in current and os.path.isdir(base):
                self._try_make(controller, base + current[controller], name, limit_file, value)
        if not self.dirs and "" in current:
            self._try_v2(current[""], name, memory_bytes, pids_max)

    def _try_make(self, controller: str, parent: str, name: str, limit_file: str, value: int) -> None:
        path = os.path.join(parent, name)
        try:
            os.makedirs(path, exist_ok=True)
            _write(os.path.join(path, limit_file), str(value))
            if controller == "memory" and os.path.exists(os.path.join(path, "memory.memsw.limit_in_bytes")):
                try:
                    _write(os.path.join(path, "memory.memsw.limit_in_bytes"), str(value))
                except OSError:
                    pass
            self.dirs[controller] = path
        except OSError:
            _rmdir(path)

    def _try_v2(self, rel: str, name: str, memory_bytes: int, pids_max: int) -> None:
        parent = ROOT + rel if os.path.exists(os.path.join(ROOT, "cgroup.controllers")) else None
        if parent is None:
            return
        try:
            with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                enabled = f.read().split()
        except OSError:
            return
        if not {"memory", "pids"} & set(enabled):
            return
        path = os.path.join(parent, name)
        try:
            os.makedirs(path, exist_ok=True)
            if "memory" in enabled:
                _write(os.path.join(path, "memory.max"), str(memory_bytes))
                if os.path.exists(os.path.join(path, "memory.swap.max")):
                    _write(os.path.join(path, "memory.swap.max"), "0")
                self.dirs["memory"] = path
            if "pids" in enabled:
                _write(os.path.join(path, "pids.max"), str(pids_max))
                self.dirs["pids"] = path
            self.v2 = True
        except OSError:
            self.dirs.clear()
            _rmdir(path)

    @property
    def procs_files(self) -> list[str]:
        return sorted({os.path.join(d, "cgroup.procs") for d in self.dirs.values()})

    def wrap(self, command: list[str]) -> list[str]:
        """`command`, started inside these cgroups."""
        files = self.procs_files
        if not files:
            return command
        script = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 97; shift; n=$((n-1)); done; '
                  'exec "$@"')
        return ["/bin/sh", "-c", script, "sh", str(len(files)), *files, *command]

    def oom_kills(self) -> int | None:
        path = self.dirs.get("memory")
        if not path:
            return None
        name = "memory.events" if self.v2 else "memory.oom_control"
        try:
            with open(os.path.join(path, name)) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            pass
        return None

    def remove(self) -> None:
        for path in set(self.dirs.values()):
            _rmdir(path)
        self.dirs.clear()


def _rmdir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass
