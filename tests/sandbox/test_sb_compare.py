"""stdin/stdout comparison: the documented normalisation, and every line counts."""
from __future__ import annotations

import pytest

from sandbox.compare import compare_output, normalize_lines


@pytest.mark.parametrize("got, want, ok", [
    ("1 2 3\n", "1 2 3", True),
    ("1 2 3   \n\n\n", "1 2 3\n", True),            # trailing spaces and blank lines
    ("a\r\nb\r\n", "a\nb\n", True),                 # CRLF
    ("5 2 1 3 4 \n", "5 2 1 3 4", True),
    ("1  2\n", "1 2\n", False),                      # inner whitespace is significant
    (" 1\n", "1\n", False),                          # so is leading whitespace
    ("1\n", "1\n2\n", False),                        # a missing line fails (no zip-truncation)
    ("1\n2\n", "1\n", False),                        # so does an extra one
    ("", "", True),
    ("", "0", False),
])
def test_line_comparison(got, want, ok):
    assert compare_output(got, want)[0] is ok


def test_first_difference_is_explained():
    ok, why = compare_output("1\n3\n", "1\n2\n")
    assert not ok and why == "line 2: expected '2', got '3'"
    ok, why = compare_output("1\n", "1\n2\n")
    assert "output ended after 1 lines" in why


@pytest.mark.parametrize("got, want, tol, ok", [
    ("0.3333333", "0.333333333", 1e-6, True),
    ("0.3334", "0.3333", 1e-6, False),
    ("1e9 2", "1000000001 2", 1e-6, True),          # relative tolerance
    ("x 0.5", "x 0.5000001", 1e-6, True),
    ("y 0.5", "x 0.5", 1e-6, False),
    ("0.5 1", "0.5", 1e-6, False),
    ("nan", "nan", 1e-6, True),
    ("0.3333333", "0.333333333", None, False),
])
def test_float_tolerance(got, want, tol, ok):
    assert compare_output(got, want, tol)[0] is ok


def test_normalize_lines():
    assert normalize_lines("a \r\nb\t\n\n") == ["a", "b"]
