"""The zygote: a pre-started, single-threaded fork server that holds no tests, no code and no secrets.

Started by the supervisor with `python -I -S` (usually inside bubblewrap or `unshare`, where it is pid 1 of
its own pid namespace, with no network and a private /tmp). It receives control messages on a SOCK_SEQPACKET
socket; the data channels of each run (code, tests, stdin, stdout, stderr) are descriptors created by the
supervisor and passed with SCM_RIGHTS, so the untrusted code and the tests never enter this process's memory
and cannot leak from it into a later child.

Per run: fork the tester (function mode) and the solution, confine both (`confine.apply`), wait with a
deadline, kill every process the run left behind (as pid 1: `kill(-1, SIGKILL)`; otherwise as child
subreaper, repeatedly, until no child remains), reap them all, renew the workspace (a new working
directory, watched directories repaired: fresh.py), and report exit statuses and resource use (their values
in a binary board that never becomes Python objects here: board.py).
"""
from __future__ import annotations

import ctypes
import fcntl
import gc
import importlib
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from typing import Any

from . import board, confine, fresh, landlock, leader, procs, seccomp, solution, tester

PR_SET_CHILD_SUBREAPER = 36
WIPE_ROOTS = ("/tmp", "/dev/shm", "/var/tmp")
BYE_GRACE_S = 0.01          # how long the solution may take to exit after the tester's "bye"
MAX_FDS = 64                # descriptors one request may carry (a chunk of 16 stdin/stdout cases: 49)
_libc = ctypes.CDLL(None, use_errno=True)


def dispatch_spare() -> None:
    """Entry point of a pre-forked spare: the run's mode (`solution.MODE`) arrives with its descriptors."""
    if solution.MODE == "solo":
        solution.run_script()
    elif solution.MODE == "chunk":
        leader.run()
    else:
        solution.serve_calls()


class Zygote:
    def __init__(self, ctl: socket.socket, init: dict) -> None:
        self.ctl = ctl
        self.cfg = init
        self.mode = init["mode"]
        self.pid1 = os.getpid() == 1
        self.is_root = os.geteuid() == 0
        self.uids = init.get("uids") if self.is_root else None
        self.private_tmp = self.mode in ("bwrap", "unshare")
        python_dirs = init.get("python_dirs", [])
        if self.mode == "unshare":
            for path in ("/tmp", "/var/tmp", "/dev/shm"):
                procs.mount_tmpfs(path, init["tmp_mb"])
            procs.expose(python_dirs)
        if self.uids and not all(procs.world_usable(d) for d in python_dirs):
            self.uids = None        # other uids could not even load the stdlib: drop capabilities instead
        self.space = fresh.Workspace(self.private_tmp, WIPE_ROOTS, self.uids[0] if self.uids else None,
                                     self.uids[0] if self.uids else os.getuid(), _watch_candidates(init))
        self.workdir = self.space.workdir
        leader.WATCH[:] = self.space.all()
        leader.WORKDIR = self.workdir
        os.environ.update(HOME=self.workdir, TMPDIR=self.workdir)
        self.retired = False
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        if not self.pid1:
            _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        procs.set_oom_score_adj(-1000 if self.is_root else 0)
        _libc.prctl(confine.PR_SET_DUMPABLE, 0, 0, 0, 0)
        self.abi = landlock.abi_version() if init.get("landlock", True) else 0
        self.rulesets = self._build_rulesets() if self.abi else {}
        self.seccomp = bool(init.get("seccomp", True)) and seccomp.supported_arch() is not None
        self.filters = {}
        if self.seccomp:                            # assembled once here; children only patch their pid
            self.filters = {r: seccomp.Prepared(r) for r in (False, True)}
        for name in init.get("preload", []):
            try:
                importlib.import_module(name)
            except Exception:
                pass
        self.seccomp_inherited = False
        self.probe_report = self._probe()
        self.seccomp_inherited = self.seccomp and "error" not in self.probe_report and self._filter_self()
        # Everything imported so far is shared with each forked child; freezing it keeps the children's
        # garbage collector from walking (and so copy-on-write faulting) the whole inherited heap.
        gc.collect()
        gc.freeze()
        self.spares: dict[str, tuple[int, socket.socket]] = {}
        self.last_roles: tuple[str, ...] = ("solution",)
        self.t0: tuple[int, socket.socket] | None = None      # the long-lived tester (tester.serve)
        self.t0_runs = 0

    # ----------------------------------------------------------------------------------------- setup
    def _build_rulesets(self) -> dict[str, int]:
        reads = list(self.cfg.get("read_paths", []))
        devs = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]
        try:
            return {"solution": landlock.build_ruleset(self.abi, reads, [self.space.home], devs),
                    "tester": landlock.build_ruleset(self.abi, reads, [], ["/dev/null"])}
        except OSError:
            self.abi = 0
            return {}

    def _filter_self(self) -> bool:
        """Install the seccomp filter on the zygote itself, so that children inherit it instead of each
        compiling their own (about 0.25 ms of CPU per child). The zygote's variant lets sendmsg through only
        on descriptors >= seccomp.HIGH_FD, where the zygote keeps the sockets it passes descriptors on; a
        child's RLIMIT_NOFILE keeps every descriptor it can hold below that, so for children the rule is the
        full filter's. Where signals are restricted by pid, children still add that small rule."""
        limits = self.cfg["limits"]
        if max(limits["max_open_files"], 64) >= seccomp.HIGH_FD:
            return False
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = seccomp.HIGH_FD + 256
        try:
            if soft < want:
                if hard != resource.RLIM_INFINITY and hard < want:
                    return False
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            seccomp.Prepared(False, "zygote").install(os.getpid())
        except (OSError, ValueError):
            return False
        self.filters = {False: None, True: seccomp.Prepared(True, "kill")}
        return True

    def _socketpair(self) -> tuple[socket.socket, socket.socket]:
        """A pair for passing descriptors to a child: our end above seccomp.HIGH_FD (see _filter_self)."""
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if self.seccomp_inherited:
            high = fcntl.fcntl(a.fileno(), fcntl.F_DUPFD_CLOEXEC, seccomp.HIGH_FD)
            a.close()
            a = socket.socket(fileno=high)
        return a, b

    def plan(self, role: str, fds: list[int], limits: dict) -> confine.Plan:
        solo = role == "solution"
        uid = self.uids[0 if solo else 1] if self.uids else None
        mb = 1 << 20
        rl: dict[int, int] = {}
        rl[resource.RLIMIT_CORE] = 0
        rl[resource.RLIMIT_AS] = (limits["memory_mb"] if solo else limits["tester_memory_mb"]) * mb
        rl[resource.RLIMIT_FSIZE] = limits["max_file_mb"] * mb if solo else 0
        rl[resource.RLIMIT_NOFILE] = limits["max_open_files"] if solo else 64
        nproc = limits["max_processes"] if solo else 1
        if self.uids is None:
            nproc += self.cfg.get("nproc_base", 0)   # same uid as zygote and tester (or the whole user)
        rl[resource.RLIMIT_NPROC] = nproc
        return confine.Plan(
            fds=fds, rlimits=rl, cpu_s=limits.get("cpu_s") if solo else None, uid=uid,
            drop_caps=self.is_root and uid is None,
            oom_score_adj=1000 if solo else None, dumpable=False,      # the tester keeps the zygote's
            landlock_fd=self.rulesets.get(role),
            seccomp=self.filters.get(not (self.uids or self.abi >= 6)), seccomp_inherited=self.seccomp_inherited)

    def _probe(self) -> dict:
        """Fork a child that applies the full solution plan and checks a few effects; disable what fails."""
        limits = self.cfg["limits"]
        for _ in range(3):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                plan = self.plan("solution", [self.devnull, w, w], limits)
                try:
                    os.chdir(self.workdir)
                    confine.apply(plan)
                    out = {"applied": plan.applied, "effects": _effects()}
                except BaseException as exc:
                    out = {"error": f"{type(exc).__name__}: {exc}", "applied": plan.applied}
                os.write(1, json.dumps(out).encode())
                os._exit(0)
            os.close(w)
            data = procs.read_all(r)
            os.close(r)
            os.waitpid(pid, 0)
            report = json.loads(data or b'{"error": "probe died", "applied": []}')
            if "error" not in report:
                return report
            if "landlock" not in report["applied"] and self.abi:
                self.abi, self.rulesets = 0, {}
            elif self.seccomp:
                self.seccomp = False
            else:
                return report
        return report

    def hello(self) -> dict:
        ns = {}
        for name in ("net", "pid", "mnt", "ipc", "uts", "user"):
            try:
                ns[name] = os.stat(f"/proc/self/ns/{name}").st_ino
            except OSError:
                ns[name] = None
        return {"op": "hello", "pid1": self.pid1, "root": self.is_root, "uid_drop": bool(self.uids),
                "landlock_abi": self.abi, "seccomp": self.seccomp, "seccomp_inherited": self.seccomp_inherited,
                "ns": ns, "probe": self.probe_report,
                "private_tmp": self.private_tmp, "workdir": self.workdir, "watched": self.space.all(),
                "python": sys.version.split()[0],
                "restrict_kill": not (self.uids or self.abi >= 6)}

    # ------------------------------------------------------------------------------------------- runs
    def fork(self, role: str, plan: confine.Plan, entry: Any, spare: bool = False) -> int:
        """Fork a confined child running `entry`. A spare first waits (confined, holding nothing but its
        socket on descriptor 3) for the run's descriptors, so fork and confinement happen between runs."""
        pid = os.fork()
        if pid:
            return pid
        try:
            if role == "solution":
                os.chdir(self.workdir)
            confine.apply(plan)
            if spare:
                _activate()
            solution._event({"ev": "confined", "layers": plan.applied})
        except BaseException as exc:
            if "fds" in plan.applied and not spare:    # descriptors are arranged: 3 is our control channel
                try:
                    solution._event({"ev": "confine_error", "error": str(exc)[:500]})
                except BaseException:
                    pass
            os._exit(121)
        try:
            entry()
        finally:
            os._exit(122)
        return 0

    def _refill(self, roles: tuple[str, ...]) -> None:
        """Between runs: a confined spare solution process, and the long-lived tester if it is gone."""
        limits = dict(self.cfg["limits"])
        limits.pop("cpu_s", None)                # set at activation, when the run's deadline is known
        if self.t0 is None:
            self._spawn_tester(limits)
        for role in roles:
            if role in self.spares or role != "solution":
                continue
            a, b = self._socketpair()
            plan = self.plan(role, [self.devnull, self.devnull, self.devnull, b.fileno()], limits)
            pid = self.fork(role, plan, dispatch_spare, spare=True)
            b.close()
            self.spares[role] = (pid, a)

    def _spawn_tester(self, limits: dict) -> None:
        a, b = self._socketpair()
        plan = self.plan("tester", [self.devnull] * 5 + [b.fileno()], limits)
        pid = os.fork()
        if pid == 0:
            try:
                confine.apply(plan)
            except BaseException:
                os._exit(121)
            try:
                tester.serve(5, plan.applied)
            finally:
                os._exit(122)
        b.close()
        self.t0, self.t0_runs = (pid, a), 0

    def _retire_tester(self) -> None:
        if self.t0 is not None:
            pid, sock = self.t0
            sock.close()
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            self.t0 = None

    def _start(self, role: str, fds: list[int], limits: dict, entry: Any, mode: str) -> int:
        """Hand the run's descriptors to a spare, or fork a fresh child if there is none (or it died)."""
        spare = self.spares.pop(role, None)
        if spare is not None:
            pid, sock = spare
            try:
                socket.send_fds(sock, [json.dumps({"mode": mode, "cpu_s": limits["cpu_s"]}).encode()], fds)
                return pid
            except OSError:
                pass
            finally:
                sock.close()
        return self.fork(role, self.plan(role, fds, limits), entry)

    def run(self, req: dict, fds: list[int]) -> dict:
        limits = req["limits"]
        named = dict(zip(req["fd_names"], fds))
        started = time.monotonic()
        cpu0 = time.process_time()
        pids: dict[str, int] = {}
        t0 = None
        try:
            if req["mode"] == "pair":
                a, b = socket.socketpair()
                try:
                    t0 = self._hand_to_tester([named["t_err"], named["t_ctl"], b.fileno()])
                    if t0 is None:                  # no long-lived tester: fork one for this run
                        t_fds = [self.devnull, self.devnull, named["t_err"], named["t_ctl"], b.fileno()]
                        pids["tester"] = self._start("tester", t_fds, limits, tester.main, "pair")
                    s_fds = [self.devnull, named["s_out"], named["s_err"], named["s_ctl"], a.fileno()]
                    pids["solution"] = self._start("solution", s_fds, limits, solution.serve_calls, "pair")
                finally:
                    a.close()
                    b.close()
            elif req["mode"] == "chunk":            # one stdin/stdout program, several cases: see leader.py
                s_fds = [self.devnull] * 3 + [named["s_ctl"]] + fds[len(req["fd_names"]):]
                pids["solution"] = self._start("solution", s_fds, limits, leader.run, "chunk")
            else:
                s_fds = [named.get("s_in", self.devnull), named["s_out"], named["s_err"], named["s_ctl"]]
                pids["solution"] = self._start("solution", s_fds, limits, solution.run_script, "solo")
        finally:
            for fd in fds:
                os.close(fd)
        forked = time.monotonic()
        main = "tester" if req["mode"] == "pair" else "solution"
        reason, statuses = self._wait(main, pids, t0, started + float(req["timeout_s"]),
                                      linger=BYE_GRACE_S if req["mode"] == "pair" else 0.0)
        ended = time.monotonic()
        if t0 is not None and (reason or statuses.get("tester", {}).get("code") != 0
                               or self.t0_runs >= tester.RUNS_PER_TESTER):
            self._retire_tester()               # mid-test at a deadline, in trouble, or simply old
        keep = {self.t0[0]} if self.t0 else set()
        self._kill_all(pids, keep)
        for role, pid in pids.items():
            if role not in statuses:
                # We only ever send SIGKILL: any other end (a segfault still being torn down when the
                # tester finished, an exit code) was the process's own.
                st = board.wait4(pid, False, role)
                st["own_exit"] = st["signal"] != signal.SIGKILL
                statuses[role] = st
        cleaned = self._reap_all(keep)
        self.spares.clear()                     # killed and reaped with everything else
        self.last_roles = ("solution",)
        # Nothing of the run is alive now: a fresh working directory, and what the run marked repaired.
        self.retired = not (cleaned and self.space.renew())
        phases = {"fork": forked - started, "run": ended - forked, "reap": time.monotonic() - ended,
                  "zygote_cpu": time.process_time() - cpu0}
        return {"op": "done", "reason": reason, "wall_s": ended - started, "clean": cleaned, "phases": phases,
                "retire": self.retired, **board.public(statuses)}

    def _hand_to_tester(self, fds: list[int]) -> tuple[int, socket.socket] | None:
        if self.t0 is None:
            return None
        try:
            socket.send_fds(self.t0[1], [b"run"], fds)
        except OSError:
            self._retire_tester()
            return None
        self.t0_runs += 1
        return self.t0

    def _wait(self, main: str, pids: dict[str, int], t0: tuple[int, socket.socket] | None,
              deadline: float, linger: float = 0.0) -> tuple[str | None, dict]:
        """Until `main` ends (for the long-lived tester: reports its run), the deadline, or a kill request.

        With `linger`, wait that much longer for the run's other processes to end on their own (the solution
        answering the tester's "bye"): reaped here, they leave pid 1 nothing to sweep (see _kill_all)."""
        poll = select.poll()
        poll.register(self.ctl.fileno(), select.POLLIN)
        pidfds = {}
        watched = dict(pids, **({"tester": t0[0]} if t0 else {}))
        for role, pid in watched.items():
            fd = os.pidfd_open(pid)
            pidfds[fd] = (role, pid)
            poll.register(fd, select.POLLIN)
        if t0:
            poll.register(t0[1].fileno(), select.POLLIN)
        statuses: dict[str, dict] = {}
        reason = None
        others = set(pids) - {main}
        grace_until = None
        try:
            while True:
                now = time.monotonic()
                if main in statuses:
                    if not linger or others <= set(statuses):
                        break
                    grace_until = grace_until or now + linger
                    left = grace_until - now
                    if left <= 0:
                        break
                else:
                    left = deadline - now
                    if left <= 0:
                        reason = "timeout"
                        break
                for fd, _ in poll.poll(left * 1000):
                    if fd == self.ctl.fileno():
                        msg = self.recv()
                        if msg is None:
                            raise SystemExit(0)
                        reason = str(msg.get("reason", "killed"))
                    elif t0 and fd == t0[1].fileno() and "tester" not in statuses:
                        statuses["tester"] = board.tester_report(t0[1])
                        poll.unregister(fd)
                    elif fd in pidfds and pidfds[fd][0] not in statuses:
                        role, pid = pidfds[fd]
                        statuses[role] = board.wait4(pid, True, role)
                        if t0 and pid == t0[0]:
                            self.t0 = None          # the long-lived tester died: reaped here
                        poll.unregister(fd)
                if reason:
                    break
        finally:
            for fd in pidfds:
                os.close(fd)
        return reason, statuses

    def _kill_all(self, pids: dict[str, int], keep: set[int]) -> None:
        """Kill everything the run started; `keep` (the long-lived tester) survives."""
        if self.pid1:
            # Every process of the run that is still alive is our child or a descendant of one (orphans are
            # re-parented to pid 1): with no child but `keep`, and none of its own, nothing else exists in
            # the namespace. Otherwise stop and kill everything.
            if not set(procs.children()) - keep and not any(procs.children(pid) for pid in keep):
                return
            procs.kill_all_except(keep)       # everything else in our pid namespace
            return
        for pid in pids.values():
            if pid in keep:
                continue
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def _reap_all(self, keep: set[int]) -> bool:
        """Reap every child but `keep` (orphans are re-parented to us as pid 1 or subreaper); kill stragglers."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            while True:
                pid = board.reap_any()             # statuses chosen by the program stay out of our heap
                if pid < 0:
                    return True                     # no children at all
                if pid == 0:
                    break
                if self.t0 and pid == self.t0[0]:
                    self._retire_tester()
                    keep = set()
            left = [pid for pid in procs.children() if pid not in keep]
            if not left:
                return True
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.001)
        return False

    # ------------------------------------------------------------------------------------- messaging
    def send(self, msg: dict) -> None:
        self.ctl.send(json.dumps(msg).encode())

    def recv(self) -> dict | None:
        data = self.ctl.recv(1 << 16)
        return json.loads(data) if data else None

    def serve(self) -> None:
        self.send(self.hello())
        self._refill(("solution",))
        while True:
            data, fds, _, _ = socket.recv_fds(self.ctl, 1 << 16, MAX_FDS)
            if not data:
                break
            req = json.loads(data)
            if req.get("op") == "run" and self.retired:     # never run in a directory we could not renew
                for fd in fds:
                    os.close(fd)
                self.send({"op": "done", "reason": "retired", "clean": False, "retire": True})
            elif req.get("op") == "run":
                board.send(self.ctl.fileno(), json.dumps(self.run(req, fds)).encode())
                if not self.retired:
                    self._refill(self.last_roles)
            elif req.get("op") == "status":          # for tests: which of our children are spares
                spares = [p for p, _ in self.spares.values()] + ([self.t0[0]] if self.t0 else [])
                self.send({"op": "status", "pid": os.getpid(), "spares": spares})
            elif req.get("op") == "exit":
                break
            else:
                for fd in fds:
                    os.close(fd)
        self.shutdown()

    def shutdown(self) -> None:
        if not self.pid1:
            for pid in procs.children():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self._reap_all(set())
            self.space.remove_all()


def _watch_candidates(init: dict) -> list[str]:
    """Directories a program might mark for the next one: "/" and its top-level directories, /dev and its
    subdirectories, and every parent of the paths the sandbox binds in (bubblewrap creates those)."""
    out = ["/", "/dev", "/var"]
    for top in ("/", "/dev"):
        try:
            out += [os.path.join(top, e.name) for e in os.scandir(top) if e.is_dir(follow_symlinks=False)]
        except OSError:
            pass
    for path in list(init.get("read_paths", [])) + list(init.get("python_dirs", [])):
        parts = path.strip("/").split("/")
        out += ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]
    return [p for p in out if not p.startswith("/proc")]


def _activate() -> None:
    """In a spare: receive the run's descriptors on fd 3, move them to 0..n-1, apply the CPU limit."""
    sock = socket.socket(fileno=3)
    data, fds, _, _ = socket.recv_fds(sock, 4096, MAX_FDS)
    if not data:
        os._exit(0)                              # the zygote went away without using us
    msg = json.loads(data)
    sock.detach()
    for i, fd in enumerate(fds):
        os.dup2(fd, i, inheritable=i < 3)
    os.closerange(len(fds), 1 << 16)
    if msg.get("cpu_s"):
        cpu = int(msg["cpu_s"])
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    solution.MODE = msg.get("mode", "pair")


def _effects() -> dict:
    """What the confined probe can still do (all should be False)."""
    out = {}
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        out["inet_socket"] = True
    except OSError:
        out["inet_socket"] = False
    try:
        os.listdir("/proc/1")
        out["proc_visible"] = True
    except OSError:
        out["proc_visible"] = False
    return out


def main(ctl_fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = socket.socket(fileno=ctl_fd)
    data = ctl.recv(1 << 20)
    if not data:
        return
    try:
        zygote = Zygote(ctl, json.loads(data))
    except BaseException as exc:
        ctl.send(json.dumps({"op": "error", "error": f"{type(exc).__name__}: {exc}"}).encode())
        raise
    zygote.serve()
