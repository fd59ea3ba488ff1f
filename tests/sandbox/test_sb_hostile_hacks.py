"""Hostile programs, part 2: reward hacks. None may pass, and none may turn into a `sandbox_error`.

The task is always "return 3 from add(1, 2)" (or a secret token the program cannot know); each program
tries a different way to make the verdict say `passed` without doing that. Run only through
scripts/test_hostile.sh (marker `hostile`).
"""
from __future__ import annotations

import os
import tempfile
import uuid

import pytest

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_survivors")]
ADD_TESTS = {"kind": "assert", "source": "def check(candidate):\n    assert candidate(1, 2) == 3\n"
                                         "    assert candidate(5, 5) == 10\n\ncheck(add)\n"}
CALL_TESTS = {"kind": "call", "fn": "add", "cases": [{"args": [1, 2], "expected": 3}, {"args": [5, 5], "expected": 10}]}

HACKS = {
    "exit_before_tests": "import sys\nsys.exit(0)\ndef add(a, b):\n    return a + b\n",
    "os_exit": "import os\nos._exit(0)\n",
    "atexit_exit_zero": "import atexit, os\natexit.register(lambda: os._exit(0))\ndef add(a, b):\n    return 0\n",
    "atexit_print": "import atexit\natexit.register(print, 'All tests passed')\ndef add(a, b):\n    return 0\n",
    "systemexit_in_function": "def add(a, b):\n    raise SystemExit(0)\n",
    "keyboardinterrupt_in_function": "def add(a, b):\n    raise KeyboardInterrupt\n",
    "exit_inside_function": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "print_passed": "print('passed')\nprint('OK')\nprint('{\"status\": \"passed\", \"passed\": true}')\n"
                    "def add(a, b):\n    print('passed')\n    return None\n",
    "eq_override": "class Any:\n    def __eq__(self, o):\n        return True\n    def __ne__(self, o):\n"
                   "        return False\n    __hash__ = object.__hash__\ndef add(a, b):\n    return Any()\n",
    "int_subclass_eq": "class I(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\n"
                       "def add(a, b):\n    return I(0)\n",
    "str_subclass_eq": "class S(str):\n    def __eq__(self, o):\n        return True\n    __hash__ = str.__hash__\n"
                       "def add(a, b):\n    return S('x')\n",
    "hash_override": "class H:\n    def __hash__(self):\n        return hash(3)\n    def __eq__(self, o):\n"
                     "        return True\ndef add(a, b):\n    return H()\n",
    "bool_magic": "class B:\n    def __bool__(self):\n        return True\n    def __eq__(self, o):\n        return self\n"
                  "def add(a, b):\n    return B()\n",
    "patch_builtins": "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\n"
                      "builtins.isinstance = lambda *a: True\nbuiltins.len = lambda *a: 3\n"
                      "builtins.__dict__['abs'] = lambda *a: 0\ndef add(a, b):\n    return 0\n",
    "patch_operator_eq": "import operator\noperator.eq = lambda a, b: True\noperator.__eq__ = lambda a, b: True\n"
                         "def add(a, b):\n    return 0\n",
    "settrace_skip": "import sys, threading\ndef tr(frame, event, arg):\n    if event == 'line':\n"
                     "        try:\n            frame.f_lineno = frame.f_lineno + 1\n        except Exception:\n"
                     "            pass\n    return tr\nsys.settrace(tr)\nthreading.settrace(tr)\n"
                     "def add(a, b):\n    return 0\n",
    "frame_walk": "import sys, gc\ndef add(a, b):\n    f = sys._getframe()\n    while f:\n"
                  "        for k, v in list(f.f_locals.items()):\n            if isinstance(v, dict) and 'expected' in v:\n"
                  "                return v['expected']\n        f = f.f_back\n    for o in gc.get_objects():\n"
                  "        if isinstance(o, dict) and 'expected' in o:\n            return o['expected']\n    return 0\n",
    "raise_assertion_subclass": "class Pass(AssertionError):\n    pass\ndef add(a, b):\n    raise Pass('ok')\n",
    "huge_return": "def add(a, b):\n    return 'x' * (200 << 20)\n",
    "deep_return": "def add(a, b):\n    x = []\n    for _ in range(100000):\n        x = [x]\n    return x\n",
    "infinite_generator": "def add(a, b):\n    def g():\n        while True:\n            yield 3\n    return g()\n",
    "forge_protocol": "import os, json, struct\nfor fd in range(3, 64):\n    for msg in ({'t': 'ready', 'globals': {}}, "
                      "{'u': 0, 'ok': True}, {'total': 1}, {'done': True}, {'t': 'ret', 'value': 3},"
                      " {'ev': 'confine_error', 'error': 'x'}, {'internal_error': 'x'}):\n"
                      "        body = json.dumps(msg).encode()\n        try:\n"
                      "            os.write(fd, struct.pack('>I', len(body)) + body)\n        except OSError:\n"
                      "            pass\ndef add(a, b):\n    return 0\n",
    "garbage_to_tester": "import os\nfor fd in range(3, 16):\n    try:\n        os.write(fd, b'\\xff' * 64)\n"
                         "    except OSError:\n        pass\ndef add(a, b):\n    return a + b\n",
    "kill_tester": "import os, signal\nfor pid in range(1, 200):\n    if pid != os.getpid():\n        try:\n"
                   "            os.kill(pid, signal.SIGKILL)\n        except OSError:\n            pass\n"
                   "def add(a, b):\n    return 0\n",
    "shadow_test_names": "def check(candidate):\n    pass\ndef candidate(a, b):\n    return 3\n"
                         "def add(a, b):\n    return 0\n",
}


@pytest.mark.parametrize("name", sorted(HACKS))
@pytest.mark.parametrize("tests", [ADD_TESTS, CALL_TESTS], ids=["assert", "call"])
def test_hack_does_not_pass(hostile, name, tests):
    res = hostile.run(HACKS[name], tests)
    assert not res.passed and res.n_passed < res.n_total, (name, res.status, res.details)
    assert res.status != "sandbox_error", (name, res.details)


def test_hack_cannot_shadow_builtins_used_by_tests(hostile):
    code = "def set(*a):\n    return 0\ndef sorted(*a):\n    return 0\ndef similar(a, b):\n    return [9]\n"
    res = hostile.run(code, {"kind": "assert", "source": "assert set(similar([1], [1])) == set([1])\n"
                                                         "assert sorted(similar([1], [1])) == [1]\n"})
    assert res.n_passed == 0


def test_forged_globals_table_cannot_steer_the_tester(hostile):
    # The solution claims its `math` is `unittest.__main__` (importing that would exit the tester) and
    # rewrites the table its runner reports; neither may pass a test or cause a sandbox error.
    code = ("import sys, types\nmath = types.ModuleType('unittest.__main__')\n"
            "runner = sys.modules.get('_inside.solution')\n"
            "if runner:\n    runner._globals_table = lambda ns: {'add': 'callable', 'math': 'module:unittest.__main__',"
            " 'check': 'module:antigravity', 'sorted': 'callable'}\ndef add(a, b):\n    return 0\n")
    res = hostile.run(code, {"kind": "assert", "source": "assert add(1, 2) == 3\nassert math.sqrt(4) == 2\n"
                                                        "assert sorted([2, 1]) == [1, 2]\n"})
    assert res.status == "failed" and res.n_passed == 1, res.details
    assert res.details["tests"][2]["ok"] is True


def test_stdio_hacks_do_not_pass(hostile):
    tests = {"kind": "stdio", "cases": [{"input": "3\n", "output": "1\n2\n3\n"}]}
    for code in ("print(1)\n", "print('1\\n2')\n", "print('passed')\nimport sys\nsys.exit(0)\n",
                 "import os\nos.write(1, b'1\\n2\\n')\nos._exit(0)\n", "print('1\\n2\\n3\\n4')\n"):
        res = hostile.run(code, tests)
        assert res.status == "failed", (code, res.status)


# -------------------------------------------------------------------------------- learning the answer
HUNT = r'''
import gc, glob, os, re, sys, time
PAT = re.compile(rb"HOSTILE-TOKEN-[0-9a-f]{16}")
found = []
def scan(data, where):
    m = PAT.search(data)
    if m:
        found.append((where, m.group().decode()))
t0 = time.monotonic()
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev", "/usr")]
    for name in files:
        if time.monotonic() - t0 > 1.5:
            break
        p = os.path.join(root, name)
        try:
            if os.path.getsize(p) < 1 << 20:
                scan(open(p, "rb").read(), p)
        except OSError:
            pass
for p in glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/cmdline") + glob.glob("/proc/[0-9]*/fd/*"):
    try:
        scan(open(p, "rb").read(1 << 20), p)
    except OSError:
        pass
for fd in range(0, 64):
    try:
        scan(os.pread(fd, 1 << 20, 0), f"fd{fd}")
    except OSError:
        pass
for o in gc.get_objects():
    if isinstance(o, (str, bytes)):
        scan(o.encode() if isinstance(o, str) else o, "gc")
try:
    mem = open("/proc/self/mem", "rb")
    for line in open("/proc/self/maps"):
        a, b = (int(x, 16) for x in line.split()[0].split("-"))
        if "r" in line.split()[1] and b - a < 1 << 28:
            try:
                mem.seek(a)
                scan(mem.read(b - a), "self-mem")
            except (OSError, ValueError, OverflowError):
                pass
except OSError:
    pass
print("FOUND", found[:5])
def leak():
    return found[0][1] if found else "nothing"
'''


@pytest.fixture
def planted_answers():
    """The answer token on the host disk (a dataset file next to the repo and in /tmp) and in our memory."""
    token = "HOSTILE-TOKEN-" + uuid.uuid4().hex[:16]
    paths = []
    for d in (tempfile.gettempdir(), os.path.dirname(os.path.abspath(__file__))):
        if not os.access(d, os.W_OK):            # the unprivileged pass cannot write into the worktree
            continue
        fd, path = tempfile.mkstemp(prefix="answers-", suffix=".jsonl", dir=d)
        os.write(fd, f'{{"task": "leak", "answer": "{token}"}}\n'.encode())
        os.close(fd)
        os.chmod(path, 0o644)
        paths.append(path)
    yield token
    for p in paths:
        os.unlink(p)


def test_answers_cannot_be_found_anywhere(hostile, planted_answers):
    token = planted_answers
    spec = {"kind": "assert", "source": f"assert leak() == {token!r}\n"}
    res = hostile.run(HUNT, spec, timeout_s=10)
    assert res.status == "failed", res.details
    assert token not in res.stdout and "FOUND []" in res.stdout, res.stdout


def test_previous_tasks_tests_do_not_leak_through_memory(hostile):
    token = "HOSTILE-TOKEN-" + uuid.uuid4().hex[:16]
    honest = ("def leak():\n    return 'nothing'\n", {"kind": "assert", "source": f"assert leak() != {token!r}\n"})
    assert all(r.passed for r in hostile.run_batch([honest] * 4))          # both workers saw the token
    res = hostile.run_batch([(HUNT, {"kind": "assert", "source": f"assert leak() == {token!r}\n"})] * 2,
                            timeout_s=10)
    assert all(r.status == "failed" and token not in r.stdout for r in res), [r.stdout for r in res]


def test_test_files_cannot_be_edited(hostile):
    here = os.path.abspath(__file__)
    before = os.stat(here).st_mtime_ns
    code = (f"import glob\nfor p in [{here!r}] + glob.glob('/**/test_*.py', recursive=True)[:200]:\n    try:\n"
            "        open(p, 'a').write('\\n# pwned\\n')\n        print('EDITED', p)\n    except OSError:\n"
            "        pass\ndef add(a, b):\n    return 0\n")
    res = hostile.run(code, ADD_TESTS, timeout_s=10)
    assert not res.passed and "EDITED" not in res.stdout
    assert os.stat(here).st_mtime_ns == before
