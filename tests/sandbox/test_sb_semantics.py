"""What crosses between tests and solution, end to end: arguments written back, exceptions mapped, exact
comparisons before tolerant ones, call specs with any plain data, tests that end in `unittest.main()`."""
from __future__ import annotations

import pytest

SORT_IN_PLACE = "def sort_in_place(nums):\n    nums.sort()\n"


def _units(res) -> list[bool]:
    return [t["ok"] for t in res.details["tests"]]


def test_in_place_solutions_pass(sb):
    source = "nums = [3, 1, 2]\nassert sort_in_place(nums) is None\nassert nums == [1, 2, 3]\n"
    assert sb.run(SORT_IN_PLACE, {"kind": "assert", "source": source}).passed


def test_write_back_keeps_identity_of_nested_containers(sb):
    code = ("def rotate(m):\n    n = len(m)\n    for i in range(n):\n        for j in range(i + 1, n):\n"
            "            m[i][j], m[j][i] = m[j][i], m[i][j]\n    for row in m:\n        row.reverse()\n")
    source = ("m = [[1, 2], [3, 4]]\nrow = m[0]\nrotate(m)\nassert m == [[3, 1], [4, 2]]\nassert row is m[0]\n"
              "t = ([1], 'x')\nrotate([t[0]])\nassert t == ([1], 'x')\n")
    assert sb.run(code, {"kind": "assert", "source": source}).passed


@pytest.mark.parametrize("code, source", [
    ("def f(*, d):\n    d['x'] = 1\n", "d = {}\nf(d=d)\nassert d == {'x': 1}\n"),
    ("def f(xs):\n    xs.append(1)\n    raise ValueError('x')\n",
     "xs = []\ntry:\n    f(xs)\nexcept ValueError:\n    pass\nassert xs == [1]\n"),
    ("def f(s, b):\n    s.add(3)\n    b[0] = 120\n", "s, b = {1}, bytearray(b'ab')\nf(s, b)\nassert s == {1, 3} and b == b'xb'\n"),
    ("def f(d):\n    d.pop('a')\n    d['a'] = 1\n", "d = {'a': 0, 'b': 2}\nf(d)\nassert list(d) == ['b', 'a']\n"),
], ids=["keyword", "mutated_then_raised", "set_and_bytearray", "dict_order"])
def test_mutations_reach_the_tests_as_in_process(sb, code, source):
    res = sb.run(code, {"kind": "assert", "source": source})
    assert res.passed, res.details


def test_arguments_left_alone_stay_unchanged(sb):
    code = "def total(xs):\n    return sum(xs)\n"
    source = "xs = [1, 2, 3]\nassert total(xs) == 6\nassert xs == [1, 2, 3]\n"
    assert sb.run(code, {"kind": "assert", "source": source}).passed


def test_stop_iteration_from_the_solution_is_a_runtime_error(sb):
    code = "def f(x):\n    raise StopIteration('x')\n"
    source = ("try:\n    f(1)\nexcept RuntimeError as e:\n    ok = 'StopIteration' in str(e)\nassert ok\n"
              "assert all(map(f, [1]))\n")
    res = sb.run(code, {"kind": "assert", "source": source})
    assert _units(res) == [True, False]
    assert "RuntimeError: the solution raised StopIteration" in res.details["tests"][1]["error"]


def test_exceptions_that_need_more_arguments_still_cross(sb):
    code = "def f(b):\n    return b.decode('ascii')\n"
    source = "try:\n    f(b'\\xff')\n    ok = False\nexcept UnicodeDecodeError:\n    ok = True\nassert ok\n"
    assert sb.run(code, {"kind": "assert", "source": source}).passed


UNITTEST = ("import unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(add(1, 2), 3)\n"
            "    def test_b(self):\n        self.assertEqual(add(2, 2), 4)\n"
            "if __name__ == '__main__':\n    unittest.main()\n")


def test_tests_ending_in_unittest_main(sb):
    assert sb.run("def add(a, b):\n    return a + b\n", {"kind": "assert", "source": UNITTEST}).passed
    bad = sb.run("def add(a, b):\n    return 3\n", {"kind": "assert", "source": UNITTEST})
    assert bad.status == "failed" and "SystemExit: True" in bad.details["tests"][0]["error"]


def test_sys_exit_in_the_tests_ends_them_like_a_script(sb):
    code = "def f():\n    return 1\n"
    ok = sb.run(code, {"kind": "assert", "source": "import sys\nx = f()\nsys.exit(0)\n"})
    assert ok.passed
    res = sb.run(code, {"kind": "assert", "source": "import sys\nassert f() == 1\nsys.exit(0)\nassert f() == 2\n"})
    assert _units(res) == [True, False]                 # the unit after the exit is never reached
    assert not sb.run(code, {"kind": "assert", "source": "import sys\nf()\nsys.exit(3)\n"}).passed


def test_modules_are_bound_only_under_their_own_name(sb):
    code = "import cmath as math\nimport os.path\nfrom collections import abc\ndef f():\n    return 1\n"
    source = "assert os.path.join('a', 'b') == 'a/b'\nassert abc.Sequence\nassert math.pi > 3\n"
    assert _units(sb.run(code, {"kind": "assert", "source": source})) == [True, True, False]


# ---------------------------------------------------------------------------------------- call specs
def _call(fn: str, cases: list, **extra) -> dict:
    return {"kind": "call", "fn": fn, "cases": cases, **extra}


def test_float_tolerance_with_huge_integers(sb):
    # math.isclose(10**400, 10**400) raises OverflowError: exact equality comes first, then an exact test
    big = 10 ** 400
    code = "def f(k):\n    return [10 ** 400, 10 ** 400 + 1, 2 * 10 ** 400, 2.5 + 1e-12, float('inf')][k]\n"
    cases = [{"args": [k], "expected": want} for k, want in enumerate([big, big, big, 2.5, big])]
    res = sb.run(code, _call("f", cases, float_tol=1e-9))
    assert _units(res) == [True, True, False, True, False], res.details


def test_call_specs_carry_any_plain_data(sb):
    code = ("def f(d, s, t):\n    return {k * 2: v for k, v in d.items()}, sorted(s), t[::-1]\n"
            "def g(mixed):\n    return len(mixed), mixed.get(1), mixed.get('1')\n")
    spec = _call("f", [{"args": [{1: "a", 2: "b"}, {3, 1}, (1, 2)], "expected": ({2: "a", 4: "b"}, [1, 3], (2, 1))}])
    assert sb.run(code, spec).passed
    mixed = _call("g", [{"args": [{1: "int", "1": "str"}], "expected": [2, "int", "str"]}])
    assert sb.run(code, mixed).passed


def test_call_args_that_are_not_plain_data_name_the_key(sb):
    with pytest.raises(ValueError, match=r"tests.cases\[0\].args is not plain data"):
        sb.run("def f(x):\n    return x\n", _call("f", [{"args": [object()], "expected": 1}]))
    with pytest.raises(ValueError, match=r"tests.cases\[0\].kwargs must be an object with string keys"):
        sb.run("def f(x):\n    return x\n", _call("f", [{"args": [], "kwargs": {1: 2}, "expected": 1}]))
