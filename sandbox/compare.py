"""stdin/stdout verdicts, decided by the supervisor from the program's complete output.

Normalisation (documented in docs/sandbox.md): `\\r\\n` and `\\r` become `\\n`; trailing whitespace on every
line is ignored; trailing empty lines are ignored. Every line is compared — a missing or extra line fails
(unlike comparisons that `zip` the two outputs and stop at the shorter one). With `float_tol`, a line that
differs also matches when both have the same number of whitespace-separated tokens and each pair of tokens
is equal or both parse as floats that agree within `float_tol` (absolute or relative).
"""
from __future__ import annotations

import math


def normalize_lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _tokens_close(got: str, want: str, tol: float) -> bool:
    g, w = got.split(), want.split()
    if len(g) != len(w):
        return False
    for a, b in zip(g, w):
        if a == b:
            continue
        try:
            x, y = float(a), float(b)
        except ValueError:
            return False
        if not (math.isclose(x, y, rel_tol=tol, abs_tol=tol) or (math.isnan(x) and math.isnan(y))):
            return False
    return True


def _clip(s: str, n: int = 120) -> str:
    return s if len(s) <= n else s[:n] + "..."


def compare_output(got: str, want: str, float_tol: float | None = None) -> tuple[bool, str]:
    """(matches, explanation of the first difference)."""
    g, w = normalize_lines(got), normalize_lines(want)
    for i in range(max(len(g), len(w))):
        a = g[i] if i < len(g) else None
        b = w[i] if i < len(w) else None
        if a == b:
            continue
        if a is not None and b is not None and float_tol is not None and _tokens_close(a, b, float_tol):
            continue
        if a is None:
            return False, f"line {i + 1}: expected {_clip(b)!r}, output ended after {len(g)} lines"
        if b is None:
            return False, f"line {i + 1}: unexpected extra output {_clip(a)!r} (expected {len(w)} lines)"
        return False, f"line {i + 1}: expected {_clip(b)!r}, got {_clip(a)!r}"
    return True, ""
