"""Hostile programs, part 1: resource abuse and reaching outside the sandbox. Each asserts the response.

Run only through scripts/test_hostile.sh (marker `hostile`), which puts pytest in its own pid and network
namespace so that a sandbox bug cannot hurt the test runner or the host. Every test also checks, through
the `no_survivors` fixture, that no process outlived the run and that the workers still run a plain job.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import uuid

import pytest
from conftest import HOSTILE_LIMITS, SECRET_ENV

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_survivors")]
NEVER = {"kind": "stdio", "cases": [{"input": "", "output": "<never printed>"}]}
LIMIT = HOSTILE_LIMITS.timeout_s


def run(box, code, tests=NEVER, **kw):
    t0 = time.monotonic()
    res = box.run(code, tests, **kw)
    assert time.monotonic() - t0 < LIMIT + 15, "the run was not cut off in time"
    assert res.status != "sandbox_error", res.details
    return res


# ------------------------------------------------------------------------------------------ time and CPU
@pytest.mark.parametrize("code", [
    "while True:\n    pass\n",
    "import time\ntime.sleep(3600)\n",
    "import signal, time\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n    signal.signal(s, signal.SIG_IGN)\n"
    "while True:\n    time.sleep(0.1)\n",
    "import os, time\nif os.fork() == 0:\n    os.setsid()\ntime.sleep(3600)\n",
], ids=["busy_loop", "sleep", "ignore_sigterm", "new_session_child"])
def test_deadline_is_enforced(hostile, code):
    assert run(hostile, code).status == "timeout"


def test_function_that_never_returns(hostile):
    res = run(hostile, "def f():\n    while True:\n        pass\n", {"kind": "assert", "source": "assert f() == 1\n"})
    assert res.status == "timeout"


# ------------------------------------------------------------------------------------- process bombs
@pytest.mark.parametrize("code", [
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    "import threading, time\nwhile True:\n    try:\n        threading.Thread(target=time.sleep, args=(100,)).start()\n"
    "    except RuntimeError:\n        pass\n",
    "import os\nwhile True:\n    try:\n        if os.fork() == 0:\n            os._exit(0)\n    except OSError:\n        pass\n",
], ids=["fork_bomb", "thread_bomb", "zombie_factory"])
def test_process_bombs_are_contained(hostile, code):
    before = len(os.listdir("/proc"))
    assert run(hostile, code).status in ("timeout", "failed", "crashed")
    assert len(os.listdir("/proc")) < before + 10


@pytest.mark.parametrize("code, statuses", [
    ("x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n", {"memory"}),
    ("x = bytearray(8 << 30)\n", {"memory"}),
    ("import os\nfor _ in range(8):\n    if os.fork() == 0:\n        break\nx = bytearray(200 << 20)\n"
     "import time\ntime.sleep(3600)\n", {"memory", "timeout", "failed", "crashed"}),
], ids=["grow", "one_huge", "forked_bombs"])
def test_memory_bombs(hostile, code, statuses):
    assert run(hostile, code).status in statuses


def test_recursion_bombs(hostile):
    # Python-level recursion lives on the heap in 3.11: it ends at the memory or time limit
    res = run(hostile, "import sys\nsys.setrecursionlimit(10 ** 8)\ndef f(n):\n    return f(n + 1) + 1\nf(0)\n")
    assert res.status in ("crashed", "failed", "memory", "timeout")
    # C-level recursion (repr of a deeply nested list) overflows the C stack
    # (about 2 s of CPU to build the list: on a busy 2-core host the default deadline would end it first)
    res = run(hostile, "import sys\nsys.setrecursionlimit(10 ** 8)\nl = []\nfor _ in range(10 ** 6):\n    l = [l]\n"
                       "repr(l)\n", timeout_s=12)
    assert res.status == "crashed" and res.details["signal"] == "SIGSEGV"
    plain = run(hostile, "def f(n):\n    return f(n + 1)\nf(0)\n")
    assert plain.status == "failed" and "RecursionError" in plain.stderr


def test_ctypes_segfault(hostile):
    res = run(hostile, "import ctypes\nctypes.string_at(0)\n")
    assert res.status == "crashed" and res.details["signal"] == "SIGSEGV"


@pytest.mark.parametrize("code", [
    "import os\nb = b'x' * (1 << 20)\nfor _ in range(1024):\n    os.write(1, b)\n",
    "import sys\nwhile True:\n    sys.stderr.write('e' * 65536)\n",
    "import os\nif os.fork() == 0:\n    while True:\n        os.write(1, b'y' * 65536)\nos.wait()\n",
], ids=["stdout_1GiB", "stderr", "from_child"])
def test_output_floods(hostile, code):
    res = run(hostile, code)
    assert res.status == "output_limit"
    assert len(res.stdout) <= HOSTILE_LIMITS.keep_output_bytes


def test_fd_exhaustion(hostile):
    res = run(hostile, "fs = []\nwhile True:\n    fs.append(open('/dev/null'))\n")
    assert res.status == "failed" and "Too many open files" in res.stderr


def test_daemon_does_not_outlive_the_run(hostile):
    marker = f"3133{uuid.uuid4().int % 10 ** 6}.5"
    code = (f"import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        os.execv('/bin/sleep', ['sleep', '{marker}'])\n    os._exit(0)\n"
            f"time.sleep(0.5)\nprint('parent done')\n")
    res = run(hostile, code)
    assert "parent done" in res.stdout
    time.sleep(0.2)
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                assert marker.encode() not in f.read(), "the daemon survived"
        except OSError:
            pass


# ------------------------------------------------------------------------------------ the file system
@pytest.fixture
def host_dir():
    d = tempfile.mkdtemp(prefix="sbx-hostile-")
    os.chmod(d, 0o777)                       # writable by anyone: only the sandbox can stop a write here
    yield d
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


def test_writes_outside_the_working_directory_fail(hostile, host_dir):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    targets = [host_dir + "/x", repo + "/sbx_pwned", "/etc/sbx_pwned", "/root/sbx_pwned", "/var/tmp/sbx_pwned",
               "/usr/sbx_pwned", os.path.expanduser("~") + "/sbx_pwned"]
    code = ("import os\nopen('inside.txt', 'w').write('ok')\nprint('CWD', os.path.exists('inside.txt'))\n"
            f"for p in {targets!r}:\n    try:\n        open(p, 'w').write('pwned')\n        print('WROTE', p)\n"
            "    except OSError:\n        pass\n")
    existed = {p for p in targets if os.path.exists(p)}
    try:
        res = run(hostile, code)
        assert "CWD True" in res.stdout
        assert "WROTE" not in res.stdout
        assert {p for p in targets if os.path.exists(p)} == existed
    finally:
        for p in set(targets) - existed:
            if os.path.exists(p):
                os.unlink(p)


@pytest.mark.parametrize("lock", ["os.chmod('.', 0)", "os.chmod('.', 0o500)", "os.mkdir('d')\nos.chmod('d', 0)"])
def test_a_locked_working_directory_does_not_lock_out_the_next_task(hostile, lock):
    # Unprivileged, the zygote shares the program's uid; re-creating the directory would also leave the
    # Landlock rules (built on the old directory) pointing elsewhere: the next program could not write.
    write = {"kind": "stdio", "cases": [{"input": "", "output": "ok"}]}
    for _ in range(2 * len(hostile._workers)):
        run(hostile, f"import os\n{lock}\n")
        res = run(hostile, "open('inside.txt', 'w').write('x')\nimport os\nprint('ok' if os.listdir('.') == "
                           "['inside.txt'] else os.listdir('.'))\n", write)
        assert res.passed, res.stderr


def test_filling_tmp_and_shm_is_bounded(hostile, host_dir):
    code = ("import os\nout = {}\nfor d in ('.', '/tmp', '/dev/shm', '/var/tmp'):\n    n = 0\n"
            "    try:\n        for i in range(400):\n            with open(os.path.join(d, f'fill{i}'), 'wb') as f:\n"
            "                for _ in range(16):\n                    f.write(b'z' * (1 << 20))\n"
            "                    n += 1 << 20\n    except OSError:\n        pass\n    out[d] = n\n"
            "print('FILLED', __import__('json').dumps(out))\n")
    res = run(hostile, code)
    line = next(x for x in res.stdout.splitlines() if x.startswith("FILLED"))
    filled = json.loads(line.split(" ", 1)[1])
    cap = (HOSTILE_LIMITS.tmp_mb + 1) << 20
    assert all(v <= cap for v in filled.values()), filled
    assert not [n for n in os.listdir(host_dir)]


def test_environment_secrets_are_out_of_reach(hostile):
    sup = os.getpid()
    code = (f"import os, glob\nhits = [k for k in os.environ if '{SECRET_ENV}' in k]\n"
            f"for path in ['/proc/self/environ', '/proc/1/environ', '/proc/{sup}/environ'] + "
            "glob.glob('/proc/[0-9]*/environ'):\n    try:\n        data = open(path, 'rb').read()\n"
            f"        if b'{SECRET_ENV}' in data:\n            hits.append(path)\n    except OSError:\n        pass\n"
            "print('HITS', hits)\nprint('ENV', sorted(os.environ))\n")
    res = run(hostile, code)
    assert "HITS []" in res.stdout, res.stdout
    assert SECRET_ENV not in res.stdout


SUPERVISOR_SECRET = "supervisor-memory-secret-" + uuid.uuid4().hex   # lives in this (the supervisor's) heap


def test_supervisor_memory_is_out_of_reach(hostile):
    needle = SUPERVISOR_SECRET[:30]
    code = (f"import os, glob\nfound = []\nfor maps in ['/proc/{os.getpid()}/maps'] + glob.glob('/proc/[0-9]*/maps'):\n"
            "    pid = maps.split('/')[2]\n    if pid == str(os.getpid()):\n        continue\n    try:\n"
            "        mem = open(f'/proc/{pid}/mem', 'rb')\n"
            "        for line in open(maps):\n            a, b = (int(x, 16) for x in line.split()[0].split('-'))\n"
            "            if 'r' not in line.split()[1] or b - a > 1 << 28:\n                continue\n"
            "            try:\n                mem.seek(a)\n"
            f"                if b'{needle}' in mem.read(b - a):\n                    found.append(pid)\n"
            "            except (OSError, ValueError, OverflowError):\n                pass\n"
            "    except OSError:\n        pass\nprint('FOUND', found)\n")
    res = run(hostile, code)
    assert "FOUND []" in res.stdout, res.stdout
    assert SUPERVISOR_SECRET not in res.stdout


def test_other_tasks_files_are_invisible(hostile):
    token = "task-a-secret-" + uuid.uuid4().hex
    writer = (f"import os, time\nfor d in ('.', '/tmp', '/dev/shm', '/var/tmp'):\n    try:\n"
              f"        open(os.path.join(d, 'secret.txt'), 'w').write('{token}')\n    except OSError:\n        pass\n"
              "time.sleep(1.5)\n")
    reader = ("import os, glob, time\ntime.sleep(0.3)\nfound = []\n"
              "paths = glob.glob('/tmp/**', recursive=True) + glob.glob('/dev/shm/**', recursive=True) + "
              "glob.glob('/var/tmp/**', recursive=True) + glob.glob('/proc/[0-9]*/cwd/*') + "
              "glob.glob('/proc/[0-9]*/root/tmp/**', recursive=True)\n"
              "for p in paths:\n    try:\n        if os.path.isfile(p) and 'task-a-secret' in open(p).read(10000):\n"
              "            found.append(p)\n    except (OSError, UnicodeDecodeError):\n        pass\n"
              "print('FOUND', found)\n")
    a, b = hostile.run_batch([(writer, NEVER), (reader, NEVER)])
    assert "FOUND []" in b.stdout, b.stdout
    assert token not in b.stdout


def test_state_does_not_persist_to_the_next_task(hostile):
    plant = ("import os\nfor d in ('.', '/tmp', '/dev/shm', '/var/tmp', os.path.expanduser('~')):\n    try:\n"
             "        open(os.path.join(d, 'planted.txt'), 'w').write('x')\n    except OSError:\n        pass\n"
             "if os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', '777.25'])\n"
             "os.environ['PLANTED'] = '1'\nprint('planted')\n")
    probe = ("import os, glob\nfound = [p for d in ('.', '/tmp', '/dev/shm', '/var/tmp', os.path.expanduser('~'))"
             " for p in glob.glob(os.path.join(d, 'planted.txt'))]\n"
             "for c in glob.glob('/proc/[0-9]*/cmdline'):\n    try:\n"
             "        if b'777.25' in open(c, 'rb').read():\n            found.append(c)\n    except OSError:\n"
             "        pass\nif 'PLANTED' in os.environ:\n    found.append('env')\nprint('FOUND', found)\n")
    planted = hostile.run_batch([(plant, NEVER)] * 2)          # one per worker
    assert all("planted" in r.stdout for r in planted)
    probes = hostile.run_batch([(probe, NEVER)] * 2)
    assert all("FOUND []" in r.stdout for r in probes), [r.stdout for r in probes]


# ----------------------------------------------------------------------------------------- the network
class _Listeners:
    def __init__(self) -> None:
        self.accepted = 0
        self.socks = []
        self.tcp = self._listen(socket.AF_INET, ("127.0.0.1", 0))
        self.abstract = "\0sbx-hostile-" + uuid.uuid4().hex[:8]
        self._listen(socket.AF_UNIX, self.abstract)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.05)
        self.socks.append(self.udp)
        self.stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _listen(self, family, addr):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind(addr)
        s.listen(16)
        s.settimeout(0.05)
        self.socks.append(s)
        return s.getsockname()

    def _loop(self):
        while not self.stop:
            for s in self.socks:
                try:
                    if s.type == socket.SOCK_DGRAM:
                        s.recvfrom(100)
                    else:
                        s.accept()[0].close()
                    self.accepted += 1
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.thread.join()
        for s in self.socks:
            s.close()


def test_no_network_reaches_a_loopback_listener(hostile):
    ls = _Listeners()
    try:
        port, uport = ls.tcp[1], ls.udp.getsockname()[1]
        try:                                   # the listener works: the runner itself gets through
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            pytest.skip("loopback is down in this namespace: nothing to prove")
        deadline = time.monotonic() + 2
        while ls.accepted < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ls.accepted == 1
        ls.accepted = 0
        code = ("import socket\nok = []\n"
                f"for host in ('127.0.0.1', 'localhost', '::1', socket.gethostname()):\n    try:\n"
                f"        socket.create_connection((host, {port}), timeout=0.5).close()\n        ok.append(host)\n"
                "    except OSError:\n        pass\ntry:\n    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                f"    u.sendto(b'x', ('127.0.0.1', {uport}))\n    ok.append('udp')\nexcept OSError:\n    pass\n"
                f"try:\n    a = socket.socket(socket.AF_UNIX)\n    a.connect({ls.abstract!r})\n    ok.append('unix')\n"
                "except OSError:\n    pass\nprint('CONNECTED', ok)\n")
        res = run(hostile, code)
        time.sleep(0.3)
        assert "CONNECTED []" in res.stdout, res.stdout
        assert ls.accepted == 0
    finally:
        ls.close()


# --------------------------------------------------------------------------------- signals and syscalls
def test_killing_parent_init_and_everyone_changes_nothing(hostile):
    code = (f"import os, signal\nme = os.getpid()\nfor pid in [os.getppid(), 1, -1, {os.getpid()}] + "
            "list(range(2, 300)):\n    if pid != me:\n        try:\n            os.kill(pid, signal.SIGKILL)\n"
            "        except OSError:\n            pass\ndef add(a, b):\n    return 0\n")
    res = run(hostile, code, {"kind": "assert", "source": "assert add(1, 2) == 3\n"})
    assert res.status in ("failed", "crashed")
    assert res.details["tests"][0]["ok"] is False


def test_namespace_mount_and_ptrace_calls_fail(hostile):
    code = ("import ctypes, os, json, socket\nlibc = ctypes.CDLL(None, use_errno=True)\nr = {}\n"
            "for name, flags in (('user', 0x10000000), ('net', 0x40000000), ('mnt', 0x20000), ('pid', 0x20000000)):\n"
            "    r['unshare_' + name] = libc.unshare(flags)\n"
            "r['mount'] = libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)\n"
            "r['umount'] = libc.umount2(b'/proc', 2)\nr['chroot'] = libc.chroot(b'/tmp')\n"
            "r['ptrace_attach'] = libc.ptrace(16, os.getppid(), 0, 0)\nr['ptrace_1'] = libc.ptrace(16, 1, 0, 0)\n"
            "r['setns'] = libc.setns(0, 0)\nr['bpf'] = libc.syscall(321 if os.uname().machine == 'x86_64' else 280, 0, 0, 0)\n"
            "for fam, typ in ((socket.AF_NETLINK, socket.SOCK_RAW), (socket.AF_PACKET, socket.SOCK_RAW), "
            "(socket.AF_INET, socket.SOCK_RAW)):\n    try:\n        socket.socket(fam, typ)\n        r[f'socket_{fam}'] = 0\n"
            "    except OSError:\n        r[f'socket_{fam}'] = -1\nprint('CALLS', json.dumps(r))\n")
    res = run(hostile, code)
    calls = json.loads(next(x for x in res.stdout.splitlines() if x.startswith("CALLS")).split(" ", 1)[1])
    assert calls and all(v == -1 for v in calls.values()), calls
