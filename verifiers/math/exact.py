"""Exact arithmetic on normalised LaTeX numbers: the in-process tier that answers most golds.

Reads integers, decimals, `\\frac{a}{b}`, mixed numbers (`12\\frac{3}{5}`, the MATH convention), `+ - \\cdot
\\times * / \\div`, integer powers, factorials and parentheses, and evaluates them as `fractions.Fraction`, so
`\\frac{1}{2004!}` and `\\frac{1}{2006!}` are different numbers and `(2^{2005}+1)/(3\\cdot 2^{2006})` is not
`1/(3\\cdot 2^{2006})`: no floating point, no `evalf(chop=True)`. A decimal literal is exact as written, but it
marks the value as *approximate*: the comparison then allows a relative tolerance, and only then.

Anything else (roots, π, symbols, implicit multiplication other than mixed numbers) returns None and goes to
the symbolic tier. Sizes are bounded (exponents, factorials, result bits), so a value that would be expensive
also returns None instead of being computed here, in the caller's process.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from verifiers.math.lex import tokenize

MAX_BITS = 400_000        # about 120k decimal digits: 2006! and 2^{100000} are in, towers are not
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


def evaluate(text: str) -> Exact | None:
    """The exact value of `text`, or None when it is not plain arithmetic on numbers (or too large)."""
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
            value = value + rhs if op == "+" else value - rhs
            approx |= a2
        return value, approx

    def term(self) -> tuple[Fraction, bool]:
        value, approx = self.unary()
        while self.peek() in ("*", "/", "\\cdot", "\\times", "\\div"):
            op = self.take()[1]
            rhs, a2 = self.unary()
            value = value / rhs if op in ("/", "\\div") else value * rhs
            approx |= a2
            _check_size(value)
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
        bits = max(abs(base.numerator), abs(base.denominator)).bit_length()
        if abs(e) * bits > MAX_BITS:
            raise _Unsupported("too large")
        return base**e, approx

    def postfix(self) -> tuple[Fraction, bool]:
        value, approx = self.atom()
        while self.peek() == "!":
            self.take("!")
            if value.denominator != 1 or value < 0 or value > MAX_FACTORIAL or approx:
                raise _Unsupported("factorial")
            value = Fraction(math.factorial(int(value)))
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
            return num / den, a1 or a2
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
        return whole + num / den, False

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


def _check_size(value: Fraction) -> None:
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        raise _Unsupported("too large")


def close(a: Exact, b: Exact, rel_tol: float) -> bool:
    """Exact equality; within `rel_tol` (relative to the larger magnitude) only when a side is approximate."""
    if a.value == b.value:
        return True
    if not (a.approximate or b.approximate):
        return False
    return abs(a.value - b.value) <= Fraction(repr(rel_tol)) * max(abs(a.value), abs(b.value))
