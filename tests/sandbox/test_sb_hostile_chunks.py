"""Hostile programs, part 3: misbehaving cases inside a chunk of stdin/stdout cases (`_inside/leader.py`).

One case of six does the hostile thing; the others print their input. The verdict of every case must equal
what the same case gets on its own (one request, the ordinary path), nothing may survive (`no_survivors`),
and no case may pass by attacking the leader that forked it. Run only through scripts/test_hostile.sh.
"""
from __future__ import annotations

import time

import pytest
from conftest import HOSTILE_LIMITS

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_survivors")]
N = 6
HEAD = "import os, signal, sys, time\nk = int(input())\nif k == 2:\n"


def _cases(ks) -> dict:
    return {"kind": "stdio", "cases": [{"input": str(k), "output": str(k)} for k in ks]}


def _statuses(res) -> list[str]:
    return [t["status"] for t in res.details["tests"]]


PROGRAMS = {
    "daemon": "    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n            time.sleep(3600)\n"
              "        os._exit(0)\n",
    "zombie": "    if os.fork() == 0:\n        os._exit(0)\n    time.sleep(0.2)\n",
    "kill_leader": "    os.kill(os.getppid(), signal.SIGKILL)\n",
    "stop_leader": "    os.kill(os.getppid(), signal.SIGSTOP)\n",
    "kill_everyone": "    for pid in [-1, 0, 1] + list(range(2, 300)):\n        if pid != os.getpid():\n"
                     "            try:\n                os.kill(pid, signal.SIGKILL)\n            except OSError:\n"
                     "                pass\n",
    "lock_workdir": "    os.chmod('.', 0)\n",
    "remove_workdir": "    cwd = os.getcwd()\n    try:\n        os.chdir('/')\n        os.rmdir(cwd)\n"
                      "    except OSError:\n        pass\n",
    "fork_bomb": "    while True:\n        try:\n            os.fork()\n        except OSError:\n            break\n",
    "sigkill_self": "    os.kill(os.getpid(), signal.SIGKILL)\n",
    "cpu_hog_ignoring_sigxcpu": "    signal.signal(signal.SIGXCPU, signal.SIG_IGN)\n    while True:\n        pass\n",
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_a_hostile_case_gets_its_own_verdict(hostile, name):
    code = HEAD + PROGRAMS[name] + "print(k)\n"
    t0 = time.monotonic()
    chunked = hostile.run(code, _cases(range(N)))
    took = time.monotonic() - t0
    alone = [hostile.run(code, _cases([k])) for k in range(N)]
    assert chunked.status != "sandbox_error", chunked.details
    want = [r.status for r in alone]
    got = _statuses(chunked)
    if "timeout" in want:                       # the item stops at its first timeout
        want = want[:want.index("timeout") + 1]
    assert got == want, (got, want, chunked.details)
    assert chunked.n_passed == sum(s == "passed" for s in want)
    assert took < 3 * HOSTILE_LIMITS.timeout_s + 15


def test_a_case_cannot_forge_the_leaders_report(hostile):
    # Case 2 prints a wrong answer, then tries to write a report saying otherwise to every descriptor it has
    # and to the leader's (through /proc): the verdict is still the supervisor's comparison.
    forge = ("    import json, struct\n"
             "    body = json.dumps({'case': 2, 'timeout': False, 'wall_s': 0.0, 'memory': False, 'code': 0,"
             " 'signal': None, 'cpu_s': 0.0, 'maxrss_kb': 0}).encode()\n"
             "    frame = struct.pack('>I', len(body)) + body\n"
             "    for fd in range(3, 64):\n        try:\n            os.write(fd, frame)\n        except OSError:\n"
             "            pass\n"
             "    for fd in range(0, 64):\n        try:\n"
             "            with open(f'/proc/{os.getppid()}/fd/{fd}', 'wb') as f:\n                f.write(frame)\n"
             "            print('OPENED', fd, file=sys.stderr)\n        except OSError:\n            pass\n"
             "    print('wrong')\n    sys.exit(0)\n")
    res = hostile.run(HEAD + forge + "print(k)\n", _cases(range(N)))
    assert _statuses(res) == ["passed", "passed", "failed", "passed", "passed", "passed"], res.details
    assert "OPENED" not in res.stderr
