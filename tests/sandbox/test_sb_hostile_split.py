"""Hostile programs, part 5: attacks on the split harness (the tester's namespace, what crosses the pipe).

- The tester's own hooks: a solution that names the tester's per-unit instrumentation (`__sbx_fail__`) as
  one of its functions, by rewriting the globals table its runner announces, by forging the greeting, or by
  walking its frames to the runner. Before the fix the tester bound its hook to a proxy into the solution,
  recorded no failure, and `return None` passed 164/164 HumanEval and 427/427 MBPP.
- Exceptions that change the test's control flow instead of failing it (StopIteration ends `all(map(f, xs))`).
- Arguments: a function that destroys its argument must fail a test that checks the argument is unchanged.
Run only through scripts/test_hostile.sh (marker `hostile`).
"""
from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from sandbox import specs

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_survivors")]

_FAIL_HOOK = "def __sbx_fail__(*args):\n    return None\n"
HOOK_HACKS = {
    # the runner's table of globals, rewritten to announce the hook
    "table": _FAIL_HOOK + "import sys\n_r = sys.modules['_inside.solution']\n_t = _r._globals_table\n"
                          "_r._globals_table = lambda ns: dict(_t(ns), __sbx_fail__='callable', __sbx_end__='data')\n",
    # the greeting itself, rewritten on its way out (any frame can be forged: the process is the solution's)
    "greeting": _FAIL_HOOK + "import sys\n_w = sys.modules['_inside.wire']\n_f = _w.write_frame\n"
                             "def _forged(fd, obj):\n    if isinstance(obj, dict) and obj.get('t') == 'ready':\n"
                             "        obj['globals'].update(__sbx_fail__='callable', __builtins__='data',"
                             " __name__='data')\n    return _f(fd, obj)\n_w.write_frame = _forged\n",
    # the generic version: walk the frames up to the runner's globals and patch the table there
    "frames": _FAIL_HOOK + "import sys\n_g = sys._getframe()\nwhile _g is not None:\n"
                           "    if '_globals_table' in _g.f_globals:\n        _o = _g.f_globals['_globals_table']\n"
                           "        _g.f_globals['_globals_table'] = lambda ns, o=_o: dict(o(ns), __sbx_fail__='callable')\n"
                           "        break\n    _g = _g.f_back\n",
}


@pytest.fixture(scope="module")
def humaneval(shared_data):
    with gzip.open(shared_data / "code" / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def mbpp(shared_data):
    return json.loads((shared_data / "code" / "sanitized-mbpp.json").read_text())


@pytest.mark.parametrize("hack", sorted(HOOK_HACKS))
def test_tester_hooks_cannot_be_bound_humaneval(hostile, humaneval, hack):
    results = hostile.run_batch([specs.humaneval(p, "    return None\n\n" + HOOK_HACKS[hack]) for p in humaneval])
    assert Counter(r.status for r in results) == {"failed": 164}, Counter(r.status for r in results)


@pytest.mark.parametrize("hack", sorted(HOOK_HACKS))
def test_tester_hooks_cannot_be_bound_mbpp(hostile, mbpp, hack):
    results = hostile.run_batch([specs.mbpp(p, HOOK_HACKS[hack]) for p in mbpp])
    assert Counter(r.status for r in results) == {"failed": 427}, Counter(r.status for r in results)


def test_announced_names_outside_the_tests_free_names_are_ignored(hostile):
    # The solution announces a test's own function, a test-local name, a module under another module's
    # name and the tester's hooks; only `add` (free in the tests) may be bound, and only to the solution's add.
    code = ("import sys, cmath as math\n_w = sys.modules['_inside.wire']\n_f = _w.write_frame\n"
            "def _forged(fd, obj):\n    if isinstance(obj, dict) and obj.get('t') == 'ready':\n"
            "        obj['globals'] = {'add': 'callable', 'check': 'callable', 'expected': 'data', 'math':"
            " 'module:cmath', 'ok': 'data', '__sbx_end__': 'callable', 'len': 'callable'}\n"
            "    return _f(fd, obj)\n_w.write_frame = _forged\n"
            "def check(*a):\n    return None\ndef add(a, b):\n    return 0\nexpected = 0\nok = True\n")
    source = ("def check(f):\n    expected = 3\n    assert f(1, 2) == expected\ncheck(add)\n"
              "ok = add(2, 2) == 4\nassert ok\nassert len([1]) == 1\nassert math.pi > 3\n")
    res = hostile.run(code, {"kind": "assert", "source": source})
    assert [t["ok"] for t in res.details["tests"]] == [False, False, True, False], res.details


CONTROL_FLOW = {
    # all(map(f, xs)) is all([]) when f raises StopIteration: True without a single call answered. Every
    # unit of these tests must fail (GeneratorExit was already a RemoteError: kept as a guard).
    "map_all": ("def is_prime(n):\n    raise StopIteration\n", "assert all(map(is_prime, [2, 3, 5, 7]))\n"),
    "map_not_any": ("def is_prime(n):\n    raise StopIteration\n", "assert not any(map(is_prime, [4, 6]))\n"
                                                                    "assert all(map(is_prime, [2]))\n"),
    "for_over_map": ("def double(n):\n    raise StopIteration('done')\n",
                     "for got, want in zip(map(double, [1, 2]), [2, 4]):\n    assert got == want\n"
                     "assert list(map(double, [1])) == [2]\n"),
    "iter_sentinel": ("def next_token():\n    raise StopIteration\n",
                      "tokens = list(iter(next_token, None))\nassert tokens == []\nassert next_token() == 'x'\n"),
    "async_for": ("def is_even(n):\n    raise StopAsyncIteration\n",
                  "import asyncio\nclass Items:\n    def __init__(self):\n        self.i = 0\n"
                  "    def __aiter__(self):\n        return self\n    async def __anext__(self):\n        self.i += 1\n"
                  "        if self.i > 3:\n            raise StopAsyncIteration\n        return is_even(2 * self.i)\n"
                  "async def main():\n    async for ok in Items():\n        assert ok\nasyncio.run(main())\n"),
    "generator_exit": ("def is_prime(n):\n    raise GeneratorExit\n",
                       "def check():\n    for n in (2, 3):\n        assert is_prime(n)\ncheck()\n"),
}


@pytest.mark.parametrize("name", sorted(CONTROL_FLOW))
def test_exceptions_cannot_end_the_tests_own_control_flow(hostile, name):
    code, source = CONTROL_FLOW[name]
    res = hostile.run(code, {"kind": "assert", "source": source})
    assert res.status == "failed" and res.n_passed == 0, (name, res.details)


DESTROY = {
    # each computes the right answer by consuming its argument; the tests check the argument afterwards
    "pop_all": ("def total(xs):\n    s = 0\n    while xs:\n        s += xs.pop()\n    return s\n",
                "xs = [1, 2, 3]\nassert total(xs) == 6\nassert xs == [1, 2, 3]\n"),
    "sort_in_place": ("def median(xs):\n    xs.sort()\n    return xs[len(xs) // 2]\n",
                      "xs = [3, 1, 2]\nassert median(xs) == 2\nassert xs == [3, 1, 2]\n"),
    "nested_row": ("def first_col_sum(m):\n    s = 0\n    for row in m:\n        s += row.pop(0)\n    return s\n",
                   "m = [[1, 2], [3, 4]]\nrow = m[0]\nassert first_col_sum(m) == 4\nassert row == [1, 2]\n"),
    "dict_clear": ("def count(d):\n    n = len(d)\n    d.clear()\n    return n\n",
                   "d = {1: 'a', 2: 'b'}\nassert count(d) == 2\nassert d == {1: 'a', 2: 'b'}\n"),
    "keyword": ("def total(*, xs):\n    s = sum(xs)\n    xs[:] = []\n    return s\n",
                "xs = [1, 2]\nassert total(xs=xs) == 3\nassert xs == [1, 2]\n"),
}


@pytest.mark.parametrize("name", sorted(DESTROY))
def test_a_function_that_destroys_its_argument_fails(hostile, name):
    code, source = DESTROY[name]
    res = hostile.run(code, {"kind": "assert", "source": source})
    assert [t["ok"] for t in res.details["tests"]] == [True, False], (name, res.details)


def test_forged_write_backs_reach_only_the_arguments(hostile):
    # The solution's runner is patched to claim changes to an int, a tuple's ints, a key it was not given,
    # and a list turned into a dict: none of that can happen in process, so nothing may change.
    code = ("import sys\n_w = sys.modules['_inside.wire']\n_f = _w.write_frame\n"
            "def _forged(fd, obj):\n    if isinstance(obj, dict) and obj.get('t') == 'ret':\n"
            "        obj['args'] = {'0': 5, '1': {'t': [9, 9]}, '2': {'d': [['k', 1]]}, '7': [1], '-1': [1]}\n"
            "        obj['kw'] = {'nope': [1]}\n    return _f(fd, obj)\n_w.write_frame = _forged\n"
            "def f(a, b, c):\n    return 1\n")
    source = "a, b, c = 1, (1, 2), [3]\nassert f(a, b, c) == 1\nassert (a, b, c) == (1, (1, 2), [3])\n"
    res = hostile.run(code, {"kind": "assert", "source": source})
    assert res.passed, res.details
