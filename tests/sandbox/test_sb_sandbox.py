"""End-to-end behaviour of `Sandbox`: verdicts per kind, statuses, fractions, faults, threads, layers."""
from __future__ import annotations

import os
import signal
import threading
import warnings

import pytest

from sandbox import Sandbox, SandboxUnavailable, SandboxWarning
from sandbox.host import detect

ADD = "def add(a, b):\n    return a + b\n"


def test_assert_units_give_fraction(sb):
    res = sb.run(ADD, {"kind": "assert", "source": "assert add(1, 2) == 3\nassert add(2, 2) == 5\n"
                                                   "assert add('a', 'b') == 'ab'\n"})
    assert (res.status, res.passed, res.n_passed, res.n_total) == ("failed", False, 2, 3)
    assert res.fraction == pytest.approx(2 / 3)
    assert [t["ok"] for t in res.details["tests"]] == [True, False, True]
    assert res.details["tests"][1]["line"] == 2


def test_humaneval_style_check_function_counts_each_assert(sb):
    source = ("def check(candidate):\n    assert candidate(1, 1) == 2\n    x = 3\n"
              "    assert candidate(x, 1) == 5\n    for i in range(3):\n        assert candidate(i, 0) == i\n"
              "\ncheck(add)\n")
    res = sb.run(ADD, {"kind": "assert", "source": source})
    assert (res.n_passed, res.n_total, res.status) == (2, 3, "failed")


def test_source_without_asserts_is_one_unit(sb):
    assert sb.run(ADD, {"kind": "assert", "source": "add(1, 2)\n"}).passed
    res = sb.run(ADD, {"kind": "assert", "source": "if add(1, 2) != 4:\n    raise ValueError('no')\n"})
    assert (res.status, res.n_total) == ("failed", 1)


def test_call_kind_lists_tuples_and_solution_class(sb):
    code = "class Solution:\n    def twoSum(self, nums, target):\n        return (0, 1)\n"
    res = sb.run(code, {"kind": "call", "fn": "twoSum", "cases": [
        {"args": [[2, 7, 11], 9], "expected": [0, 1]}, {"args": [[1, 2], 3], "expected": [1, 0]}]})
    assert (res.n_passed, res.n_total) == (1, 2)
    assert "expected [1, 0], got [0, 1]" in res.details["tests"][1]["error"]


def test_call_kind_float_tolerance_and_kwargs(sb):
    code = "def area(r, scale=1):\n    return 3.14159265 * r * r * scale\n"
    cases = [{"args": [1], "expected": 3.1415926}, {"args": [1], "kwargs": {"scale": 2}, "expected": 6.2831853}]
    assert not sb.run(code, {"kind": "call", "fn": "area", "cases": cases}).passed
    assert sb.run(code, {"kind": "call", "fn": "area", "cases": cases, "float_tol": 1e-6}).passed


def test_solution_exceptions_map_to_builtin_types(sb):
    code = "def f(x):\n    if x < 0:\n        raise ValueError('neg')\n    return x\n"
    source = ("try:\n    f(-1)\n    ok = False\nexcept ValueError as e:\n    ok = 'neg' in str(e)\nassert ok\n"
              "assert f(2) == 2\n")
    assert sb.run(code, {"kind": "assert", "source": source}).passed


def test_modules_the_solution_imported_are_available_to_tests(sb):
    code = "import math\nfrom collections import Counter\ndef f(x):\n    return math.sqrt(x)\n"
    assert sb.run(code, {"kind": "assert", "source": "assert math.isclose(f(2), math.sqrt(2))\n"}).passed


def test_builtin_names_stay_builtin_unless_entry_points(sb):
    code = "def sum(a, b):\n    return 'hijacked'\ndef g():\n    return [1, 2]\n"
    assert sb.run(code, {"kind": "assert", "source": "assert sum(g()) == 3\n"}).passed
    assert sb.run(code, {"kind": "assert", "source": "assert sum(1, 2) == 'hijacked'\n",
                         "entry_points": ["sum"]}).passed


def test_prelude_helpers_override_the_solution(sb):
    code = "def helper(x):\n    return 0\ndef f(x):\n    return x + 1\n"
    spec = {"kind": "assert", "source": "assert helper(f(1)) == 4\n", "prelude": "def helper(x):\n    return x * 2\n"}
    assert sb.run(code, spec).passed


def test_stdio_every_case_and_fraction(sb):
    code = "a, b = map(int, input().split())\nprint(a + b if a < 5 else a - b)\n"
    cases = [{"input": "1 2\n", "output": "3\n"}, {"input": "7 1\n", "output": "8\n"},
             {"input": "2 2", "output": "4"}]
    res = sb.run(code, {"kind": "stdio", "cases": cases})
    assert (res.status, res.n_passed, res.n_total) == ("failed", 2, 3)
    assert "line 1: expected '8', got '6'" in res.details["tests"][1]["error"]


def test_stdio_threaded_main_and_exit_codes(sb):
    code = ("import sys, threading\nsys.setrecursionlimit(10000)\nthreading.stack_size(1 << 24)\n"
            "def main():\n    print(int(sys.stdin.readline()) ** 2)\nthreading.Thread(target=main).start()\n")
    assert sb.run(code, {"kind": "stdio", "cases": [{"input": "12\n", "output": "144\n"}]}).passed
    bad = sb.run("print(3)\nraise SystemExit(2)\n", {"kind": "stdio", "cases": [{"input": "", "output": "3"}]})
    assert bad.status == "failed" and "exit code 2" in bad.details["tests"][0]["error"]


def test_printing_passed_is_not_a_verdict(sb):
    res = sb.run("print('passed')\nprint('All tests passed')\ndef add(a, b):\n    return 0\n",
                 {"kind": "assert", "source": "assert add(1, 2) == 3\n"})
    assert res.status == "failed" and "passed" in res.stdout


def test_timeout_keeps_finished_units(sb):
    code = "import time\ndef f(x):\n    if x:\n        time.sleep(60)\n    return x\n"
    res = sb.run(code, {"kind": "assert", "source": "assert f(0) == 0\nassert f(1) == 1\n"}, timeout_s=1.0)
    assert (res.status, res.n_passed, res.n_total) == ("timeout", 1, 2)
    assert res.duration_s < 8


def test_stdio_timeout_stops_remaining_cases(sb):
    cases = [{"input": "", "output": ""}] * 5
    res = sb.run("while True:\n    pass\n", {"kind": "stdio", "cases": cases}, timeout_s=0.5)
    assert res.status == "timeout" and res.details["skipped"] == 4


def test_memory_crash_and_output_limit_statuses(sb):
    call = {"kind": "call", "fn": "f", "cases": [{"args": [], "expected": 1}]}
    mem = sb.run("def f():\n    return len(bytearray(4 << 30))\n", call)
    assert mem.status == "memory"
    crash = sb.run("import ctypes\ndef f():\n    return ctypes.string_at(0)\n", call)
    assert crash.status == "crashed" and crash.details["signal"] == "SIGSEGV"
    loud = sb.run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
                  {"kind": "stdio", "cases": [{"input": "", "output": ""}]})
    assert loud.status == "output_limit"


def test_syntax_error_in_solution_fails_all_tests(sb):
    res = sb.run("def add(a, b)\n    return a + b\n", {"kind": "assert", "source": "assert add(1, 2) == 3\n"})
    assert res.status == "failed" and "SyntaxError" in res.stderr
    assert "failed to load" in res.details["tests"][0]["error"]


def test_bad_input_raises_before_running(sb):
    with pytest.raises(ValueError, match="tests.kind"):
        sb.run(ADD, {"kind": "nope"})
    with pytest.raises(ValueError, match=r"items\[1\].tests"):
        sb.run_batch([(ADD, {"kind": "assert", "source": "pass"}), (ADD, {"kind": "assert"})])
    with pytest.raises(ValueError, match="code must be a string"):
        sb.run(b"x", {"kind": "assert", "source": "pass"})


def test_run_batch_order_and_concurrent_callers(sb):
    items = [(f"def f():\n    return {i}\n", {"kind": "assert", "source": f"assert f() == {i % 3}\n"})
             for i in range(12)]
    expected = [i % 3 == i for i in range(12)]
    results: dict[int, list] = {}

    def caller(k: int) -> None:
        results[k] = [r.passed for r in sb.run_batch(items)]

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == expected for k in range(3))


def test_zygote_death_is_retried_then_sandbox_error(make_sandbox):
    box = make_sandbox(workers=1, retries=1)
    worker = box._workers[0]
    old = worker.proc.pid
    os.killpg(old, signal.SIGKILL)              # a sandbox fault that the program did not cause
    worker.proc.wait()
    res = box.run(ADD, {"kind": "assert", "source": "assert add(1, 2) == 3\n"})
    assert res.passed and worker.proc.pid != old
    box = make_sandbox(workers=1, retries=0)
    victim = box._workers[0]
    killer = threading.Timer(0.5, lambda: os.killpg(victim.proc.pid, signal.SIGKILL))
    killer.start()
    res = box.run("import time\ndef f():\n    time.sleep(5)\n", {"kind": "assert", "source": "assert f() is None\n"})
    killer.join()
    assert res.status == "sandbox_error" and not res.passed
    assert "zygote" in res.details["error"]
    assert box.run(ADD, {"kind": "assert", "source": "assert add(1, 2) == 3\n"}).passed   # recovered


def test_layers_are_reported_and_required(make_sandbox):
    host = detect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        box = Sandbox(workers=1, isolation="none")
    try:
        assert box.layers["isolation"] == "none" and box.layers["net_ns"] is False
        assert any(issubclass(w.category, SandboxWarning) and "net_ns" in str(w.message) for w in caught)
        assert box.run(ADD, {"kind": "assert", "source": "assert add(2, 2) == 4\n"}).passed
    finally:
        box.close()
    with pytest.raises(SandboxUnavailable, match="net_ns"):
        make_sandbox(workers=1, isolation="none", require=("net_ns",))
    with pytest.raises(ValueError, match="unknown layer"):
        make_sandbox(workers=1, require=("teleport",))
    if host.bwrap or host.is_root:
        box = make_sandbox(workers=1)
        assert box.layers["net_ns"] and box.layers["pid_ns"] and box.layers["private_tmp"]


def test_close_is_idempotent_and_final(make_sandbox):
    box = make_sandbox(workers=1)
    box.close()
    box.close()
    with pytest.raises(RuntimeError, match="closed"):
        box.run(ADD, {"kind": "assert", "source": "pass"})


def test_run_batch_spreads_stdio_cases_and_keeps_semantics(sb):
    code = "n = int(input())\nif n == 3:\n    while True:\n        pass\nprint(n * 2)\n"
    cases = [{"input": f"{n}\n", "output": f"{2 * n}\n"} for n in range(6)]
    wrong = [{"input": "1\n", "output": "3\n"}, {"input": "2\n", "output": "4\n"}]
    res_batch = sb.run_batch([(code, {"kind": "stdio", "cases": cases[:3]}), (code, {"kind": "stdio", "cases": wrong}),
                              (code, {"kind": "stdio", "cases": cases})], timeout_s=1.0)
    assert [(r.status, r.n_passed, r.n_total) for r in res_batch[:2]] == [("passed", 3, 3), ("failed", 1, 2)]
    assert [t["case"] for t in res_batch[1].details["tests"]] == [0, 1]
    timed = res_batch[2]
    assert timed.status == "timeout" and timed.n_total == 6 and timed.n_passed >= 3
    assert next(t for t in timed.details["tests"] if t["case"] == 3)["status"] == "timeout"
    assert sb.run(code, {"kind": "stdio", "cases": cases[:3]}).details["tests"][2] == \
        {"case": 2, "ok": True, "status": "passed"}


def test_long_lived_tester_starts_each_run_clean(make_sandbox):
    box = make_sandbox(workers=1)
    messy = ("import builtins, sys\nbuiltins.abs = lambda x: -1\nbuiltins.sbx_leftover = 1\n"
             "sys.modules['sbx_fake'] = sys\nimport csv\nassert f() == 1\n")
    assert box.run("def f():\n    return 1\n", {"kind": "assert", "source": messy}).passed
    check = ("import builtins, sys\nassert abs(-2) == 2\nassert not hasattr(builtins, 'sbx_leftover')\n"
             "assert 'sbx_fake' not in sys.modules\nassert f() == 1\n")
    res = box.run("def f():\n    return 1\n", {"kind": "assert", "source": check})
    assert res.passed, res.details
    # a run that times out mid-test retires the tester; the next run gets a fresh one
    slow = box.run("def f():\n    return 1\n", {"kind": "assert", "source": "while True:\n    pass\nassert f()\n"},
                   timeout_s=0.5)
    assert slow.status == "timeout"
    assert box.run("def f():\n    return 1\n", {"kind": "assert", "source": check}).passed


def test_a_solution_holds_only_its_own_descriptors(sb):
    # The zygote passes descriptors on sockets above seccomp.HIGH_FD, where its seccomp filter lets sendmsg
    # through; a child must hold none of them (nor anything else it was not given) when the program starts.
    scan = "import os\nopen_fds = []\nfor fd in range(0, 4096):\n    try:\n        os.fstat(fd)\n" \
           "        open_fds.append(fd)\n    except OSError:\n        pass\n"
    res = sb.run(scan + "def fds():\n    return open_fds\n", {"kind": "call", "fn": "fds", "cases": [
        {"args": [], "expected": [0, 1, 2, 3, 4]}]})
    assert res.passed, res.details
    res = sb.run(scan + "print(open_fds)\n", {"kind": "stdio", "cases": [{"input": "", "output": "[0, 1, 2, 3]"}] * 3})
    assert res.passed, res.details


def test_children_inherit_the_zygotes_seccomp_filter_unless_descriptors_could_reach_it(sb, make_sandbox):
    from sandbox import Limits
    from sandbox._inside import seccomp
    if not sb.layers["seccomp"]:
        pytest.skip("no seccomp on this host")
    assert sb._workers[0].hello["seccomp_inherited"]
    wide = make_sandbox(workers=1, limits=Limits(max_open_files=seccomp.HIGH_FD))
    assert wide.layers["seccomp"] and not wide._workers[0].hello["seccomp_inherited"]   # each child installs its own
    res = wide.run("import socket\na, b = socket.socketpair()\ntry:\n    socket.send_fds(a, [b'x'], [0])\n"
                   "    print('sent')\nexcept OSError as e:\n    print(e.errno)\n",
                   {"kind": "stdio", "cases": [{"input": "", "output": "1"}]})
    assert res.passed, res.details


def test_two_sandboxes_in_one_process_share_no_uid_or_cgroup(make_sandbox):
    # They once did (both derived from the pid and the worker index): their processes counted against one
    # pids cgroup and one RLIMIT_NPROC, and closing one removed the other's cgroup.
    a, b = make_sandbox(workers=1), make_sandbox(workers=1)
    wa, wb = a._workers[0], b._workers[0]
    if a.host.is_root:
        assert set(wa.init["uids"]).isdisjoint(wb.init["uids"])
    if wa.cgroups and wb.cgroups:
        assert set(wa.cgroups.dirs.values()).isdisjoint(wb.cgroups.dirs.values())
    code, tests = "print(input())\n", {"kind": "stdio", "cases": [{"input": "1", "output": "1"}]}
    a.close()
    assert b.run(code, tests).passed
