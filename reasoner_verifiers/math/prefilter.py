"""Cheap refusals for answers that are bombs rather than mathematics.

A model under RL will eventually emit `2^{2^{40}}`, `(10^{10})!`, a megabyte of digits or a thousand nested
`\\frac`s; handing those to sympy costs a worker (killed at the deadline) or, for deep nesting, a recursion
crash in the parser. These checks run in the calling process in linear time and refuse such answers with status
`rejected` and a reason, before any tier sees them. They are deliberately coarse upper bounds: no legitimate
competition answer needs an exponent above 10^5, a factorial of more than 10^4, nesting deeper than 30, or more
than 1000 digits in one literal; anything they let through is still bounded by the worker deadline.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .delimiters import matching_brace


@dataclass(frozen=True)
class Limits:
    max_chars: int = 2000
    max_depth: int = 30
    max_exponent: float = 1e5
    max_factorial: float = 1e4
    max_literal_digits: int = 1000


_INT = re.compile(r"\d+")
_INFINITE = math.inf


def check(answer: str, limits: Limits) -> str | None:
    """None when the answer may be graded, else a short reason for refusing it."""
    if len(answer) > limits.max_chars:
        return f"answer has {len(answer)} characters (limit {limits.max_chars})"
    depth = _max_depth(answer)
    if depth > limits.max_depth:
        return f"nesting depth {depth} (limit {limits.max_depth})"
    longest = max((len(m) for m in _INT.findall(answer)), default=0)
    if longest > limits.max_literal_digits:
        return f"a {longest}-digit literal (limit {limits.max_literal_digits})"
    for pos, ch in enumerate(answer):
        if ch == "^":
            after = pos + 1 + _operand_length(answer, pos + 1)
            if answer[after:].lstrip()[:1] == "^":
                return "double superscript (invalid LaTeX; parsers read it as a tower)"
            bound = _bound(_operand_after(answer, pos + 1))
            if bound > limits.max_exponent:
                return f"exponent bound {_fmt(bound)} (limit {_fmt(limits.max_exponent)})"
        elif ch == "!" and (pos == 0 or answer[pos - 1] != "\\"):
            bound = _bound(_operand_before(answer, pos))
            if bound > limits.max_factorial:
                return f"factorial argument bound {_fmt(bound)} (limit {_fmt(limits.max_factorial)})"
    return None


def _fmt(x: float) -> str:
    return "inf" if x == _INFINITE else f"{x:.6g}"


def _max_depth(text: str) -> int:
    depth = best = 0
    for ch in text:
        if ch in "{([":
            depth += 1
            best = max(best, depth)
        elif ch in "})]":
            depth = max(0, depth - 1)
    return best


def _operand_after(text: str, i: int) -> str:
    """The exponent after `^`: a braced group, a `\\command`, or one character (LaTeX's own rule)."""
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return ""
    if text[i] == "{":
        end = matching_brace(text, i)
        return text[i + 1 : end] if end > 0 else text[i + 1 :]
    if text[i] == "\\":
        j = i + 1
        while j < len(text) and text[j].isalpha():
            j += 1
        return text[i:j]
    return text[i]


def _operand_before(text: str, i: int) -> str:
    """The factorial's argument before `!`: a bracketed group or a run of digits / letters."""
    j = i - 1
    while j >= 0 and text[j] == " ":
        j -= 1
    if j < 0:
        return ""
    closer = text[j]
    if closer in ")}]":
        opener = {")": "(", "}": "{", "]": "["}[closer]
        depth = 0
        k = j
        while k >= 0:
            if text[k] == closer:
                depth += 1
            elif text[k] == opener:
                depth -= 1
                if depth == 0:
                    return text[k + 1 : j]
            k -= 1
        return text[: j]
    k = j
    while k >= 0 and (text[k].isalnum() or text[k] == "."):
        k -= 1
    return text[k + 1 : j + 1]


def _bound(expr: str) -> float:
    """A coarse upper bound on the magnitude of a LaTeX expression's value (inf when unbounded).

    Works in log10: literals multiply into a running product (sums are bounded by products of terms >= 1,
    generous but enough to separate bombs from answers); `^` raises the last factor to the exponent's bound;
    `n!` replaces the last factor n by n^n. Symbols count as 1: `x^{100}` is not a bomb, `x^{2^{40}}` is.
    """
    total = last = 0.0
    i = 0
    n = len(expr)
    while i < n:
        ch = expr[i]
        if ch.isdecimal():  # what `int()` reads; not isdigit(), which also admits `⁹` (int('⁹') raises)
            j = i
            while j < n and expr[j].isdecimal():
                j += 1
            last = _log10_literal(expr[i:j])
            total += last
            i = j
            continue
        if ch == "^":
            exp_bound = _bound(_operand_after(expr, i + 1))
            if exp_bound > 1e12:
                return _INFINITE
            raised = last * exp_bound
            total, last = total - last + raised, raised
            i += 1 + _operand_length(expr, i + 1)
        elif ch == "!" and (i == 0 or expr[i - 1] != "\\"):
            if last > 12:
                return _INFINITE
            grown = last * 10.0**last  # log10(n^n) = n * log10(n)
            total, last = total - last + grown, grown
            i += 1
        else:
            i += 1
        if total > 300:
            return _INFINITE
    return 10.0**total


def _log10_literal(digits: str) -> float:
    stripped = digits.lstrip("0")
    if not stripped:
        return 0.0
    if len(stripped) > 15:
        return float(len(stripped))
    return math.log10(max(int(stripped), 1))


def _operand_length(text: str, i: int) -> int:
    """How many characters `_operand_after(text, i)` consumed (spaces and braces included)."""
    start = i
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return i - start
    if text[i] == "{":
        end = matching_brace(text, i)
        return (end + 1 if end > 0 else len(text)) - start
    if text[i] == "\\":
        j = i + 1
        while j < len(text) and text[j].isalpha():
            j += 1
        return j - start
    return i + 1 - start
