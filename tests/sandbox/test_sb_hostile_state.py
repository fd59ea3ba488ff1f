"""Hostile programs, part 4: state one program leaves for the next on the same worker.

A program marks every directory it can reach (extended attributes, a default ACL, timestamps, modes), fills
its working directory with trees the clean-up must survive, or leaves names in its directory; the next
program on the same worker (both workers are used) must find nothing and must not fail because of it, and
the worker must not be restarted for it. The same inside a chunk of stdin/stdout cases, case after case.
Run only through scripts/test_hostile.sh (marker `hostile`).
"""
from __future__ import annotations

import os
import re
import uuid

import pytest
from conftest import HOSTILE_LIMITS

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_survivors")]
NEVER = {"kind": "stdio", "cases": [{"input": "", "output": "<never printed>"}]}
CLEAN = {"kind": "stdio", "cases": [{"input": "", "output": "clean"}]}
PLACES = [".", "..", "/", "/tmp", "/dev", "/dev/shm", "/var/tmp", "/etc", "/dev/null", "/dev/zero"]

# Every change a program can make to a place it reaches, each tried separately (most fail; that is fine).
PLANT = r'''
import os, struct
TOKEN = b"%(token)s"
ACL = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, 0, 0xFFFFFFFF) for tag in (1, 4, 32))
done = []
def attempt(what, f):
    try:
        f()
        done.append(what)
    except OSError:
        pass
for p in %(places)r:
    attempt("xattr " + p, lambda: os.setxattr(p, "user.sbx", TOKEN))
    attempt("acl " + p, lambda: os.setxattr(p, "system.posix_acl_default", ACL))
    attempt("utime " + p, lambda: os.utime(p, ns=(123456789, 987654321)))
    attempt("touch " + p, lambda: os.utime(p, None))
    attempt("chmod " + p, lambda: os.chmod(p, 0o751 if os.path.isdir(p) else 0o600))
print("PLANTED", done)
'''

# What a later program reads: the same places, and whether a file it writes can be read back.
PROBE = r'''
import os
TOKEN = b"%(token)s"
seen = []
for p in %(places)r:
    try:
        if TOKEN in b"".join(os.getxattr(p, a) for a in os.listxattr(p)):
            seen.append("xattr " + p)
        st = os.stat(p)
        if 987654321 in (st.st_mtime_ns, st.st_atime_ns) or 123456789 in (st.st_mtime_ns, st.st_atime_ns):
            seen.append("times " + p)
        if os.path.isdir(p) and st.st_mode & 0o777 == 0o751:
            seen.append("mode " + p)
    except OSError:
        pass
try:
    with open("out.txt", "w") as f:
        f.write("x")
    with open("out.txt") as f:
        assert f.read() == "x"
except OSError as exc:
    seen.append("file %%s" %% exc)
result = "clean" if not seen else "SEEN %%s" %% seen
'''


# These programs chmod, tag and ACL "/", /dev and /etc: harmless against the real sandbox, but against the
# deliberately weakened one (SANDBOX_HOSTILE_WEAKEN=1: no namespaces, the program as uid 0) they would change
# the host's own directories (they did, once, before this guard).
not_weakened = pytest.mark.skipif(os.environ.get("SANDBOX_HOSTILE_WEAKEN") == "1",
                                  reason="would change the host's /, /dev and /etc under the weakened sandbox")


def _pids(box) -> list:
    return [w.proc.pid for w in box._workers]


@not_weakened
def test_marks_do_not_reach_the_next_program(hostile):
    token = "sbx-mark-" + uuid.uuid4().hex[:12]
    args = {"token": token, "places": PLACES}
    before = _pids(hostile)
    planted = hostile.run_batch([(PLANT % args, NEVER)] * 2)        # one per worker
    assert all("PLANTED" in r.stdout for r in planted), [r.stderr for r in planted]
    probes = hostile.run_batch([(PROBE % args + "print(result)\n", CLEAN)] * 2)
    assert all(r.passed for r in probes), [(r.stdout, r.stderr, planted[0].stdout) for r in probes]
    assert _pids(hostile) == before                                  # repaired, not restarted


@not_weakened
def test_shared_device_timestamps_cannot_be_set(hostile):
    # /dev/null and friends are the host's inodes, shared by every worker: no clean-up could reset them.
    code = ("import os\nfor p in ('/dev/null', '/dev/zero', '/dev/urandom', '.'):\n    try:\n        os.utime(p, None)\n"
            "        print('TOUCHED', p)\n    except OSError:\n        pass\n")
    res = hostile.run(code, NEVER)
    assert "TOUCHED" not in res.stdout, res.stdout


@not_weakened
def test_marks_do_not_reach_the_next_case_of_a_chunk(hostile):
    # Each case first probes (and must find nothing), then plants for the next case.
    token = "sbx-mark-" + uuid.uuid4().hex[:12]
    args = {"token": token, "places": PLACES}
    code = PROBE % args + PLANT % args + "print(result)\n"       # PLANTED goes to stdout first: print only
    code = code.replace('print("PLANTED", done)', "")              # the probe's result
    tests = {"kind": "stdio", "cases": [{"input": str(k), "output": "clean"} for k in range(6)]}
    res = hostile.run(code, tests)
    assert res.passed, res.details


def _directory_of_each_case(res) -> list[str]:
    return [re.search(r"got '(\d+:\d+)'", t["error"]).group(1) for t in res.details["tests"]]


def test_every_run_and_every_case_gets_a_new_working_directory(hostile):
    # device:inode, since each worker has a tmpfs (and inode numbers) of its own
    code = "import os\nst = os.stat('.')\nprint(f'{st.st_dev}:{st.st_ino}')\n"
    dirs = [d for _ in range(4) for d in _directory_of_each_case(hostile.run(code, NEVER))]
    dirs += _directory_of_each_case(hostile.run(code, {"kind": "stdio", "cases": [{"input": "", "output": "x"}] * 6}))
    assert len(dirs) == len(set(dirs)) == 10, dirs


NEST = ("import os\nfor i in range(%(n)d):\n    os.mkdir(%(name)r)\n    os.chdir(%(name)r)\n"
        "open('leaf', 'w').write('x')\nos.chmod('.', 0)\nprint('made')\n")


@pytest.mark.parametrize("name", ["d", "n" * 200], ids=["deep", "longer_than_path_max"])
def test_deep_trees_are_removed_without_losing_the_worker(hostile, name):
    # 1,500 nested directories once made the wipe raise RecursionError, which killed the zygote; with long
    # names the path is far beyond PATH_MAX, so path-based removal cannot reach the bottom at all.
    before = _pids(hostile)
    made = hostile.run_batch([(NEST % {"n": 1500, "name": name}, NEVER)] * 2, timeout_s=10)
    assert all("made" in r.stdout and r.status == "failed" for r in made), [(r.status, r.stderr) for r in made]
    empty = hostile.run_batch([("import os\nprint('clean' if os.listdir('.') == [] else os.listdir('.'))\n",
                                CLEAN)] * 2)
    assert all(r.passed for r in empty), [r.stdout for r in empty]
    assert _pids(hostile) == before


def test_deep_trees_inside_a_chunk(hostile):
    code = ("import os\nk = int(input())\nassert os.listdir('.') == [], os.listdir('.')\nif k == 1:\n"
            "    for i in range(1500):\n        os.mkdir('d')\n        os.chdir('d')\nprint(k)\n")
    res = hostile.run(code, {"kind": "stdio", "cases": [{"input": str(k), "output": str(k)} for k in range(5)]},
                      timeout_s=10)
    assert res.passed, res.details


# Scans the program's own memory around its heap for a pattern: no privilege needed (os.write from an
# unmapped page fails with EFAULT instead of crashing). Every solution process is forked from the zygote,
# so this reads whatever the zygote's heap kept, freed but not erased, of earlier runs.
SCAN = r'''
import ctypes, os, re
pat = re.compile(%(pattern)r)
found = set()
r, w = os.pipe()
os.set_blocking(r, False)
CH = 1 << 16
done = set()
for anchor in [id(object()), id("s" * 10), id([]), id(b"x" * 100000), ctypes.addressof(ctypes.create_string_buffer(64))]:
    for off in range(-(1 << 27), 1 << 27, CH):
        a = (anchor & ~(CH - 1)) + off
        if a <= 0 or a in done:
            continue
        done.add(a)
        try:
            os.write(w, (ctypes.c_char * CH).from_address(a))
        except OSError:
            continue
        found.update(m.decode() for m in pat.findall(os.read(r, CH)))
print("FOUND", sorted(found)[:5])
'''


def _scan_after(box, writer: str, pattern: bytes) -> list:
    box.run_batch([(writer, NEVER)] * 2)                          # one per worker
    res = box.run_batch([(SCAN % {"pattern": pattern}, NEVER)] * 2, timeout_s=HOSTILE_LIMITS.timeout_s * 3)
    assert all("FOUND" in r.stdout for r in res), [(r.status, r.stderr[-300:]) for r in res]
    return [r.stdout for r in res]


def test_names_in_the_working_directory_do_not_reach_the_next_program(hostile):
    # The zygote once listed the working directory itself to empty it: the names, chosen by the program,
    # stayed in its heap and were readable in the next program's memory.
    token = "LEAKNAME" + uuid.uuid4().hex[:12]
    writer = f"for i in range(300):\n    open('{token}%d' % i, 'w').close()\n"
    out = _scan_after(hostile, writer, rb"LEAKNAME[0-9a-f]{12}")
    assert all("FOUND []" in o for o in out), out


def test_exit_status_and_resource_use_do_not_reach_the_next_program(hostile):
    # The zygote's report once held them as JSON text in its heap: "code": 123, "maxrss_kb": ...
    writer = "x = bytearray(55555 * 1024)\nx[::4096] = b'x' * len(x[::4096])\nimport os\nos._exit(123)\n"
    out = _scan_after(hostile, writer, rb'"(?:code|maxrss_kb)": ?([1-9][0-9]*)')
    assert all("FOUND []" in o for o in out), out
