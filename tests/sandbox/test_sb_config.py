"""Validation names the bad key; limits reject nonsense."""
from __future__ import annotations

import pytest

from sandbox import Limits, validate_tests


@pytest.mark.parametrize("tests, message", [
    ([], "tests must be an object"),
    ({"kind": "pytest"}, "tests.kind must be one of"),
    ({"kind": "assert"}, "missing key 'source'"),
    ({"kind": "assert", "source": "assert (", }, "tests.source does not compile"),
    ({"kind": "assert", "source": "pass", "prelude": 3}, "tests.prelude must be a string"),
    ({"kind": "assert", "source": "return 1"}, "tests.source does not compile"),
    ({"kind": "assert", "source": "pass", "prelude": "def ("}, "tests.prelude does not compile"),
    ({"kind": "assert", "source": "x = '\0'\x00"}, "tests.source does not compile"),
    ({"kind": "assert", "source": "pass", "extra": 1}, "unknown key 'extra'"),
    ({"kind": "assert", "source": "pass", "entry_points": "f"}, "entry_points must be a list"),
    ({"kind": "call", "fn": "f", "cases": []}, "cases must be a non-empty list"),
    ({"kind": "call", "fn": "f(", "cases": [{"args": [], "expected": 1}]}, "fn must be a function name"),
    ({"kind": "call", "fn": "f", "cases": [{"args": 1, "expected": 1}]}, r"cases\[0\].args must be a list"),
    ({"kind": "call", "fn": "f", "cases": [{"args": []}]}, r"cases\[0\]: missing key 'expected'"),
    ({"kind": "stdio", "cases": [{"input": "", "output": 1}]}, r"cases\[0\].output must be a string"),
    ({"kind": "stdio", "cases": [{"input": ""}]}, "missing key 'output'"),
    ({"kind": "stdio", "cases": [{"input": "", "output": ""}], "float_tol": -1}, "float_tol"),
])
def test_bad_specs_name_the_key(tests, message):
    with pytest.raises(ValueError, match=message):
        validate_tests(tests)


def test_good_specs_pass_through():
    spec = {"kind": "call", "fn": "Solution.twoSum", "cases": [{"args": [[2, 7], 9], "expected": [0, 1]}]}
    assert validate_tests(spec) == spec


@pytest.mark.parametrize("field, value", [("timeout_s", 0), ("memory_mb", -1), ("max_processes", True),
                                          ("timeout_s", float("inf")), ("keep_output_bytes", "big")])
def test_limits_reject_nonsense(field, value):
    with pytest.raises(ValueError, match=field):
        Limits(**{field: value})


def test_limits_defaults_and_cpu():
    lim = Limits(timeout_s=2.5)
    assert lim.for_zygote()["cpu_s"] == 4
    assert lim.with_timeout(9).timeout_s == 9 and lim.with_timeout(None) is lim
