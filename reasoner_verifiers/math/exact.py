"""Exact arithmetic on normalised LaTeX numbers: the in-process tier that answers most golds.

Reads integers, decimals, `\\frac{a}{b}`, mixed numbers (`12\\frac{3}{5}`, the MATH convention), `+ - \\cdot
\\times * / \\div`, integer powers, factorials and parentheses, and evaluates them as `fractions.Fraction`, so
`\\frac{1}{2004!}` and `\\frac{1}{2006!}` are different numbers and `(2^{2005}+1)/(3\\cdot 2^{2006})` is not
`1/(3\\cdot 2^{2006})`: no floating point, no `evalf(chop=True)`. A decimal literal is exact as written, but it
marks the value as *approximate*: the comparison then allows a relative tolerance, and only then.

Anything else (roots, π, symbols, implicit multiplication other than mixed numbers) returns None and goes to
the symbolic tier. This tier runs in the caller's process, which no deadline can interrupt, so its work is
bounded up front, deterministically: every value is at most `MAX_BITS` bits, and each operation is charged
(bits of its operands)^2 (CPython's big-integer gcd and multiplication are quadratic at these sizes) against
`WORK_BUDGET` per expression. An expression that would exceed either returns None *before* the expensive step
and goes to a worker, where the deadline holds. docs/verifiers.md gives the measured worst case.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from reasoner_verifiers.math.lex import tokenize

MAX_BITS = 131_072        # one value: 2006!, 10000! and 2^{100000} fit, towers do not
WORK_BUDGET = 1e11        # per expression: sum over operations of (operand bits)^2
MAX_FACTORIAL = 10_000
MAX_TOKENS = 300          # keeps the recursive descent far from Python's recursion limit
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.\d*|\.\d+|\d+)|(?P<cmd>\\frac|\\cdot|\\times|\\div)|(?P<op>[-+*/^!(){}]))"
)


@dataclass(frozen=True)
class Exact:
    value: Fraction
    approximate: bool  # a decimal literal took part: compare with tolerance


class _Unsupported(Exception):
    pass


@lru_cache(maxsize=16384)
def evaluate(text: str) -> Exact | None:
    """The exact value of `text`, or None when it is not plain arithmetic on numbers (or too costly).

    Cached: a pure function of the text, and the unordered matching of the judge asks for a leaf many times."""
    tokens = _tokenize(text)
    if tokens is None or len(tokens) > MAX_TOKENS:
        return None
    parser = _Parser(tokens)
    try:
        value, approx = parser.expr()
        if parser.pos != len(tokens):
            return None
    except (_Unsupported, ZeroDivisionError, OverflowError, ValueError, RecursionError):
        return None
    return Exact(value, approx)


def _tokenize(text: str) -> list[tuple[str, str]] | None:
    return tokenize(_TOKEN, text)


class _Parser:
    """Recursive descent: expr := term (± term)*; term := unary ((·|×|/|÷) unary)*; unary := ±unary | power."""

    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.pos = 0
        self.work = 0.0

    def charge(self, bits: int) -> None:
        """Account for one operation on `bits` bits of operands, before doing it."""
        self.work += float(bits) ** 2
        if self.work > WORK_BUDGET:
            raise _Unsupported("too costly")

    def arith(self, op: str, a: Fraction, b: Fraction) -> Fraction:
        self.charge(_size(a) + _size(b))
        if op == "+":
            value = a + b
        elif op == "-":
            value = a - b
        elif op == "*":
            value = a * b
        else:
            value = a / b
        _check_size(value)
        return value

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise _Unsupported("unexpected end")
        tok = self.tokens[self.pos]
        if expected is not None and tok[1] != expected:
            raise _Unsupported(f"expected {expected}")
        self.pos += 1
        return tok

    def expr(self) -> tuple[Fraction, bool]:
        value, approx = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            rhs, a2 = self.term()
            value = self.arith(op, value, rhs)
            approx |= a2
        return value, approx

    def term(self) -> tuple[Fraction, bool]:
        value, approx = self.unary()
        while self.peek() in ("*", "/", "\\cdot", "\\times", "\\div"):
            op = self.take()[1]
            rhs, a2 = self.unary()
            value = self.arith("/" if op in ("/", "\\div") else "*", value, rhs)
            approx |= a2
        return value, approx

    def unary(self) -> tuple[Fraction, bool]:
        if self.peek() in ("-", "+"):
            sign = self.take()[1]
            value, approx = self.unary()
            return (-value if sign == "-" else value), approx
        return self.power()

    def power(self) -> tuple[Fraction, bool]:
        base, approx = self.postfix()
        if self.peek() != "^":
            return base, approx
        self.take("^")
        if self.peek() == "{":
            exponent, a2 = self.group()
        else:
            kind, tok = self.take()
            if kind != "num" or not tok.isdigit():
                raise _Unsupported("exponent")
            exponent, a2 = Fraction(int(tok[0])), False  # LaTeX: `2^10` is 2^1 followed by 0
            if len(tok) > 1:
                raise _Unsupported("ambiguous exponent")
        if exponent.denominator != 1 or a2:
            raise _Unsupported("non-integer exponent")
        e = int(exponent)
        bits = abs(e) * _log2(base)  # the result's size, known before computing it
        if bits > MAX_BITS:
            raise _Unsupported("too large")
        self.charge(int(bits))
        return base**e, approx

    def postfix(self) -> tuple[Fraction, bool]:
        value, approx = self.atom()
        while self.peek() == "!":
            self.take("!")
            if value.denominator != 1 or value < 0 or value > MAX_FACTORIAL or approx:
                raise _Unsupported("factorial")
            n = int(value)
            self.charge(int(n * math.log2(n)) if n > 1 else 1)  # log2(n!) < n log2 n
            value = Fraction(math.factorial(n))
        return value, approx

    def atom(self) -> tuple[Fraction, bool]:
        kind, tok = self.take()
        if kind == "num":
            value = Fraction(tok if not tok.endswith(".") else tok[:-1])
            approx = "." in tok
            if self.peek() == "\\frac" and not approx:
                return self.mixed(value)
            return value, approx
        if tok == "\\frac":
            num, a1 = self.frac_arg()
            den, a2 = self.frac_arg()
            return self.arith("/", num, den), a1 or a2
        if tok in ("(", "{"):
            value, approx = self.expr()
            self.take(")" if tok == "(" else "}")
            return value, approx
        raise _Unsupported(tok)

    def mixed(self, whole: Fraction) -> tuple[Fraction, bool]:
        """`12\\frac{3}{5}` = 12 + 3/5, only for integer parts (MATH writes mixed numbers this way)."""
        self.take("\\frac")
        num, a1 = self.frac_arg()
        den, a2 = self.frac_arg()
        if a1 or a2:
            raise _Unsupported("mixed number with decimals")
        return self.arith("+", whole, self.arith("/", num, den)), False

    def frac_arg(self) -> tuple[Fraction, bool]:
        if self.peek() == "{":
            return self.group()
        kind, tok = self.take()
        if kind != "num" or not tok.isdigit() or len(tok) != 1:
            raise _Unsupported("frac argument")
        return Fraction(int(tok)), False

    def group(self) -> tuple[Fraction, bool]:
        self.take("{")
        value, approx = self.expr()
        self.take("}")
        return value, approx


def _log2(value: Fraction) -> float:
    return max(math.log2(abs(n)) if abs(n) > 1 else 0.0 for n in (value.numerator, value.denominator))


def _size(value: Fraction) -> int:
    return max(value.numerator.bit_length(), value.denominator.bit_length())


def _check_size(value: Fraction) -> None:
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        raise _Unsupported("too large")


def is_exact_integer(x: Exact) -> bool:
    """An integer written without a decimal point (`2016`, `2^{30}`, `\\frac{10}{2}`): compared exactly."""
    return not x.approximate and x.value.denominator == 1


def close(a: Exact, b: Exact, rel_tol: float) -> bool:
    """Exact equality; within `rel_tol` (relative to the larger magnitude) only when a side is approximate."""
    if a.value == b.value:
        return True
    if not (a.approximate or b.approximate):
        return False
    return abs(a.value - b.value) <= Fraction(repr(rel_tol)) * max(abs(a.value), abs(b.value))
