"""The symbolic tier: parse leaves with latex2sympy (math-verify's parser) and compare them with sympy.

Runs only inside worker processes (it imports sympy and math-verify, and may take unbounded time on hostile
input; the pool's deadline is what bounds it). It wraps math-verify where math-verify fails us:

- Constants (no free symbols) never reach math-verify's `(a - b).evalf(chop=True) == 0`, which calls any two
  numbers below 1e-15 equal (`1/2004!` ≡ `1/2006!`). Rationals compare exactly; other constants compare by a
  *relative* 60-digit numerical difference, then by `simplify`/`equals` to confirm an apparent equality, so
  `1 + e^{-200}` is not `1`. Only when sympy cannot decide either way do 60 agreeing digits count as equal.
- Expressions with free symbols are first evaluated at a few fixed points: if gold and answer differ clearly
  there they are different functions and we answer `wrong` without `simplify` (the slow part of
  math-verify on wrong answers). Agreement at the points is not taken as proof: math-verify's `verify`
  (no signal-based timeout: `timeout_seconds=None`) makes the positive decision.
- Relations, sets, matrices and everything else go to math-verify's `verify` directly.

Parsing: latex2sympy's ANTLR parser runs in pure Python, and it dominated this tier (docs/verifiers.md).
Leaves that the numerical screen can read (polynomials, radicals, π, fractions: see screen.py, whose
reading is tested against latex2sympy's) are built into sympy directly from the screen's tree.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import sympy
from latex2sympy2_extended.latex2sympy2 import NormalizationConfig, latex2sympy, normalize_latex
from math_verify import verify
from math_verify.grader import should_treat_as_complex

from . import screen
from .judge import NO, UNPARSABLE, YES, CompareConfig

_NORMALIZATION = NormalizationConfig(
    basic_latex=True, units=True, malformed_operators=True, nits=True, boxed="all", equations=False
)
_POINTS = (0.5772156649, 1.4142135623, 2.7182818284, 0.3183098861)  # fixed, irrational-looking, positive
_HUNDREDTH = sympy.Rational(1, 100)


@lru_cache(maxsize=8192)
def parse_latex(text: str) -> Any:
    """sympy object for a normalised leaf, or None when latex2sympy cannot read it (cached: golds repeat)."""
    try:
        norm = normalize_latex(text, config=_NORMALIZATION)
        return latex2sympy(norm, is_real=not should_treat_as_complex(norm), convert_degrees=False,
                           normalization_config=None)
    except Exception:  # latex2sympy raises many exception types on malformed input
        return None


@lru_cache(maxsize=8192)
def parse_leaf(text: str) -> Any:
    """sympy object for a leaf: built straight from the screen's tree when the screen reads the text (it reads
    it as latex2sympy does, see screen.py; far cheaper than the ANTLR parser: docs/verifiers.md), else latex2sympy."""
    tree = screen.compile_expr(text)
    if tree is not None:
        try:
            return _build(tree, real=not should_treat_as_complex(text))
        except (ZeroDivisionError, ValueError, TypeError, OverflowError):
            pass
    return parse_latex(text)


_SYMPY = screen.Arithmetic(
    div=lambda a, b: a / b,
    power=lambda a, b: a**b,
    root=lambda a, b: sympy.sqrt(a) if b == 2 else a ** (sympy.Integer(1) / b),
)
_SYMPY_CONSTANTS = {"pi": sympy.pi, "e": sympy.E, "I": sympy.I}


def _build(tree: tuple, real: bool) -> Any:
    """The screen's tree as a sympy expression (its operator table: screen.fold); symbols carry latex2sympy's
    assumptions (real unless the text looks complex, in which case latex2sympy declares them non-real)."""

    def leaf(node: tuple) -> Any:
        if node[0] == "num":  # sympy.Number keeps every digit of a decimal, as latex2sympy does (Float: 15)
            return sympy.Number(node[1]) if "." in node[1] else sympy.Integer(node[1])
        if node[0] == "var":
            return sympy.Symbol(node[1], real=real)
        return _SYMPY_CONSTANTS[node[1]]

    return screen.fold(tree, leaf, _SYMPY)


def heavy_compare(gold: str, pred: str, g_pct: bool, p_pct: bool, cfg: CompareConfig) -> tuple[str, str]:
    """YES / NO / UNPARSABLE for one leaf pair, and the tier that decided it."""
    g = parse_leaf(gold)
    if g is None:
        return NO, "string"  # the gold is not mathematics; the string tier already said the texts differ
    p = parse_leaf(pred)
    if p is None:
        return UNPARSABLE, "sympy"
    result, tier = _equal(g, p, cfg)
    if result == NO and not cfg.strict and g_pct != p_pct:
        g2 = g * _HUNDREDTH if g_pct else g
        p2 = p * _HUNDREDTH if p_pct else p
        result, tier = _equal(g2, p2, cfg)
    return result, tier


def _equal(g: Any, p: Any, cfg: CompareConfig) -> tuple[str, str]:
    if _is_constant(g) and _is_constant(p):
        exact = bool(getattr(g, "is_Integer", False))  # integer golds: no tolerance (judge.py)
        return constants_equal(g, p, cfg.tolerance, exact=exact)
    if isinstance(g, sympy.Expr) and isinstance(p, sympy.Expr) and _differ_at_points(g, p):
        return NO, "numeric"
    ok = verify(g, p, strict=True, timeout_seconds=None)
    return (YES if ok else NO), "sympy"


def _is_constant(x: Any) -> bool:
    return isinstance(x, sympy.Expr) and not x.free_symbols


def constants_equal(a: sympy.Expr, b: sympy.Expr, rel_tol: float, exact: bool = False) -> tuple[str, str]:
    """`exact`: no relative tolerance even when a side holds a decimal (an integer gold)."""
    a, b = _doit(a), _doit(b)
    if a.is_Rational and b.is_Rational:
        return (YES if a == b else NO), "sympy"
    approximate = a.has(sympy.Float) or b.has(sympy.Float)
    tolerant = approximate and not exact
    digits = 30 if tolerant else 60
    try:  # sympy Floats have arbitrary exponents: no overflow for 2^{100000}, no underflow for 1/2004!
        scale = sympy.Max(abs(a.evalf(digits)), abs(b.evalf(digits)))
        diff = abs((a - b).evalf(digits))
        tolerance = sympy.Float(rel_tol if tolerant else 1e-45, digits) * scale
        differ = bool(diff > tolerance)
    except (TypeError, ValueError, ArithmeticError):
        ok = verify(a, b, strict=True, timeout_seconds=None)
        return (YES if ok else NO), "sympy"
    if approximate or differ:
        return (NO if differ else YES), "numeric"
    try:
        if sympy.simplify(a - b) == 0:
            return YES, "sympy"
        proven = (a - b).equals(0)
    except Exception:  # sympy's simplifiers raise assorted errors on odd inputs
        proven = None
    if proven is None:
        return YES, "numeric"  # 60 agreeing digits and sympy cannot tell: accept, say how
    return (YES if proven else NO), "sympy"


def _doit(x: sympy.Expr) -> sympy.Expr:
    try:
        return x.doit()
    except Exception:
        return x


def _differ_at_points(g: sympy.Expr, p: sympy.Expr) -> bool:
    """True only when both evaluate to finite numbers at a point and clearly differ there."""
    symbols = sorted(g.free_symbols | p.free_symbols, key=str)
    if not symbols or g.free_symbols != p.free_symbols or len(symbols) > 6:
        return False
    for shift in range(2):
        point = {s: sympy.Float(_POINTS[(k + shift) % len(_POINTS)] + k, 30) for k, s in enumerate(symbols)}
        try:
            vg = complex(g.evalf(30, subs=point))
            vp = complex(p.evalf(30, subs=point))
        except (TypeError, ValueError, ArithmeticError):
            return False
        if not all(map(_finite, (vg, vp))):
            return False
        if abs(vg - vp) > 1e-9 * max(1.0, abs(vg), abs(vp)):
            return True
    return False


def _finite(z: complex) -> bool:
    return z == z and abs(z) != float("inf")
