"""Numerical screening: decide in-process that two answers are *different*, without sympy.

Most answers a policy writes are wrong, and for a symbolic gold (`3\\sqrt{13}`, `2\\pi r^2`, `x^2+2x-1`) proving
that takes a LaTeX parse in a worker (ANTLR, in pure Python) and sympy. Evaluating both sides at two fixed
points with mpmath at 30 digits costs a small fraction of that (docs/verifiers.md), and when the values
clearly differ, the answer is wrong. This tier only ever says NO: agreement at the points proves nothing and
goes on to the symbolic tier, so a wrong screen can cost a false negative, never a false positive. To keep it
from costing those, it mirrors how latex2sympy (the parser of the symbolic tier) reads the same text and
refuses anything else:

- implicit multiplication binds tighter than `/`, `\\cdot`, `\\times` (`1/2x` is 1/(2x)); `-x^2` is -(x^2);
- a letter is a variable, case-folded as latex2sympy does (`R` is `r`), except `e` (Euler's number, while
  `E` is the variable e) and `I` (the imaginary unit, while `i` is a variable); Greek letters are variables,
  `\\pi` is π;
- `\\frac`, `\\sqrt`, `\\sqrt[n]`, `^` (with a braced, one-character or digit exponent), parentheses;
- refused (None): functions (`\\sin`, `\\log`, …), subscripts, `\\infty`, `|…|`, factorials, relations,
  a letter or command followed by `(` (latex2sympy reads `f(x)` as a function call), a number followed by
  `\\frac` (a mixed number or a product, depending on the arguments), and anything else unknown.
`tests/verifiers/test_vf_screen.py` checks the values against latex2sympy + sympy on a corpus.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import mpmath

from reasoner_verifiers.math.lex import tokenize

MAX_TOKENS = 300  # trees stay shallow enough for recursive evaluation on any thread's stack
_CTX = mpmath.MPContext()  # private context: nobody else changes its precision
_CTX.dps = 30
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
          "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi",
          "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega"}
_TOKEN = re.compile(r"\s*(?:(?P<num>\d+\.?\d*|\.\d+)|(?P<cmd>\\[a-zA-Z]+)|(?P<letter>[a-zA-Z])"
                    r"|(?P<op>[-+*/^(){}\[\]]))")
_MULT_OPS = ("*", "/", "\\cdot", "\\times", "\\div")
# Two evaluation points per variable: positive, irrational-looking, distinct across variables.
_BASES = (0.5772156649015329, 1.4142135623730951, 0.7320508075688772, 1.2360679774997898, 0.6180339887498949,
          0.8284271247461903, 1.6487212707001282, 0.4142135623730951)


class _Refuse(Exception):
    pass


Expr = tuple  # a small tree: ("num", value) | ("var", name) | ("const", name) | (op, a, b) | ("neg", a)


@lru_cache(maxsize=16384)
def compile_expr(text: str) -> Expr | None:
    """Parse a normalised leaf into an evaluable tree, or None when the screen does not handle it."""
    tokens = _tokenize(text)
    if tokens is None or len(tokens) > MAX_TOKENS:
        return None
    parser = _Parser(tokens)
    try:
        tree = parser.additive()
        if parser.pos != len(tokens):
            return None
        return tree
    except (_Refuse, RecursionError):
        return None


def clearly_different(gold: str, pred: str, rel_tol: float) -> bool:
    """True when both sides evaluate to finite numbers at a common point and differ beyond `rel_tol`."""
    g, p = compile_expr(gold), compile_expr(pred)
    if g is None or p is None:
        return False
    names = sorted(_variables(g) | _variables(p))
    for trial in range(2):
        point = {name: _CTX.mpf(_BASES[(k + 3 * trial) % len(_BASES)] + k % 3) for k, name in enumerate(names)}
        try:
            vg, vp = _eval(g, point), _eval(p, point)
        except (ZeroDivisionError, ValueError, OverflowError):
            return False
        if not (_CTX.isfinite(vg) and _CTX.isfinite(vp)):
            return False
        scale = max(abs(vg), abs(vp), _CTX.mpf(1e-300))
        if abs(vg - vp) > rel_tol * scale:
            return True
    return False


def _tokenize(text: str) -> list[tuple[str, str]] | None:
    return tokenize(_TOKEN, text)


class _Parser:
    """additive := mp (± mp)*; mp := unary ((·|×|*|/|÷) unary)*; unary := ±unary | factor+ (juxtaposed)."""

    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise _Refuse()
        self.pos += 1
        return tok

    def additive(self) -> Expr:
        node = self.mp()
        while (tok := self.peek()) is not None and tok[1] in ("+", "-"):
            self.take()
            node = ("add" if tok[1] == "+" else "sub", node, self.mp())
        return node

    def mp(self) -> Expr:
        node = self.unary()
        while (tok := self.peek()) is not None and tok[1] in _MULT_OPS:
            self.take()
            node = ("div" if tok[1] in ("/", "\\div") else "mul", node, self.unary())
        return node

    def unary(self) -> Expr:
        tok = self.peek()
        if tok is not None and tok[1] in ("+", "-"):
            self.take()
            inner = self.unary()
            return ("neg", inner) if tok[1] == "-" else inner
        node = self.power()
        while self._starts_factor():
            node = ("mul", node, self.power())
        return node

    def _starts_factor(self) -> bool:
        tok = self.peek()
        if tok is None:
            return False
        kind, value = tok
        return kind in ("num", "letter") or value in ("(", "{") or (kind == "cmd" and value not in _MULT_OPS)

    def power(self) -> Expr:
        base = self.atom()
        tok = self.peek()
        if tok is None or tok[1] != "^":
            return base
        self.take("^")
        exponent = self._group_or_single()
        if (nxt := self.peek()) is not None and nxt[1] == "^":
            raise _Refuse()  # a double superscript
        return ("pow", base, exponent)

    def _group_or_single(self) -> Expr:
        tok = self.peek()
        if tok is None:
            raise _Refuse()
        if tok[1] == "{":
            return self.group()
        kind, value = self.take()
        if kind == "num":
            if len(value) > 1:
                raise _Refuse()  # `x^23` is x^2 times 3 in LaTeX: too easy to misread, leave it to the parser
            return ("num", value)
        if kind == "letter":
            return self._letter(value)
        if kind == "cmd":
            return self._constant(value)
        raise _Refuse()

    def group(self) -> Expr:
        self.take("{")
        node = self.additive()
        self.take("}")
        return node

    def atom(self) -> Expr:
        kind, value = self.take()
        if kind == "num":
            nxt = self.peek()
            if nxt is not None and nxt[1] == "\\frac":
                raise _Refuse()  # `2\frac{1}{3}` is a mixed number, `2\frac{x}{3}` a product: not ours to guess
            return ("num", value)
        if kind == "letter":
            self._no_call()
            return self._letter(value)
        if value == "(":
            node = self.additive()
            self.take(")")
            return node
        if value == "{":
            node = self.additive()
            self.take("}")
            return node
        if value == "\\frac":
            return ("div", self._group_or_single(), self._group_or_single())
        if value == "\\sqrt":
            return self._sqrt()
        if kind == "cmd":
            node = self._constant(value)
            if value != "\\pi":  # `\pi(r+1)` is a product for latex2sympy, `\theta(2)` a function call
                self._no_call()
            return node
        raise _Refuse()

    def _sqrt(self) -> Expr:
        index: Expr = ("num", "2")
        if (tok := self.peek()) is not None and tok[1] == "[":
            self.take("[")
            index = self.additive()
            self.take("]")
        return ("root", self._group_or_single(), index)

    def _no_call(self) -> None:
        tok = self.peek()
        if tok is not None and tok[1] == "(":
            raise _Refuse()  # latex2sympy reads `f(x)` as a function application

    @staticmethod
    def _letter(ch: str) -> Expr:
        if ch == "e":
            return ("const", "e")
        if ch == "I":
            return ("const", "I")
        return ("var", ch.lower())

    @staticmethod
    def _constant(cmd: str) -> Expr:
        name = cmd[1:]
        if name == "pi":
            return ("const", "pi")
        if name in _GREEK:
            return ("var", name.lower())
        raise _Refuse()


def _variables(tree: Expr) -> set[str]:
    if tree[0] == "var":
        return {tree[1]}
    if tree[0] in ("num", "const"):
        return set()
    out: set[str] = set()
    for child in tree[1:]:
        out |= _variables(child)
    return out


# ------------------------------------------------------------------------------ the trees' operator table
# One definition for both evaluators of the screen's trees: mpmath here (`_eval`), sympy in symbolic.py
# (`_build`). Addition, subtraction, multiplication and negation are the number types' own operators; the
# three operations whose guards differ (a zero divisor, a huge exponent) come from each backend's Arithmetic.
LEAVES = ("num", "var", "const")
OPERATORS = ("neg", "add", "sub", "mul", "div", "pow", "root")


@dataclass(frozen=True)
class Arithmetic:
    div: Callable[[Any, Any], Any]
    power: Callable[[Any, Any], Any]
    root: Callable[[Any, Any], Any]  # root(radicand, index)


def fold(tree: Expr, leaf: Callable[[Expr], Any], arith: Arithmetic) -> Any:
    """Evaluate a tree bottom-up: `leaf` for num/var/const nodes, the shared table for the operators."""
    op = tree[0]
    if op in LEAVES:
        return leaf(tree)
    if op == "neg":
        return -fold(tree[1], leaf, arith)
    a, b = fold(tree[1], leaf, arith), fold(tree[2], leaf, arith)
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "div":
        return arith.div(a, b)
    if op == "pow":
        return arith.power(a, b)
    if op == "root":
        return arith.root(a, b)
    raise ValueError(f"unknown operator {op!r}")


def _mp_div(a, b):
    if b == 0:
        raise ZeroDivisionError
    return a / b


def _mp_power(a, b):
    if a == 0 and _CTX.re(b) <= 0:
        raise ZeroDivisionError
    if abs(b) > 1e5:
        raise OverflowError
    return _CTX.power(a, b)


def _mp_root(a, b):
    if b == 0:
        raise ZeroDivisionError
    return _CTX.power(a, 1 / b)


_MP = Arithmetic(div=_mp_div, power=_mp_power, root=_mp_root)
_MP_CONSTANTS = {"pi": _CTX.pi, "e": _CTX.e, "I": _CTX.mpc(0, 1)}


def _eval(tree: Expr, point: dict[str, object]):
    def leaf(node: Expr):
        if node[0] == "num":
            return _CTX.mpf(node[1])
        if node[0] == "var":
            return point[node[1]]
        return _MP_CONSTANTS[node[1]]

    return fold(tree, leaf, _MP)
