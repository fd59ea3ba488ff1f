"""The numerical screen reads LaTeX the way latex2sympy does: reference (latex2sympy + sympy) vs fast (screen)."""
import json

import pytest
import sympy

from reasoner_verifiers.math import screen
from reasoner_verifiers.math.normalize import Leaf, parse_answer
from reasoner_verifiers.math.symbolic import parse_latex

CORPUS = [
    "1/2x", "a/bc", "2^3x", "-x^2", "\\frac{1}{2}x", "x^2y", "2\\sqrt{2}x", "\\sqrt{2}x", "x^{-1}", "2x^{1/2}",
    "e^{2}", "e", "ex", "E", "I", "3I+1", "i^2", "6-5i", "ab", "\\pi r^2", "(1+I)(1-I)", "2(3+x)", "3.5x", ".5",
    "xy^2z", "\\sqrt[3]{8}", "4^{1/2}", "(-8)^{1/3}", "\\frac{x}{2}y", "1-\\frac{1}{2}\\cdot3", "2\\cdot3^2",
    "\\frac{a}{b}/c", "a/b/c", "2^{-2}", "10^{10}", "R^2", "3R+r", "\\alpha+\\beta", "\\Delta x", "\\theta^2",
    "3xy/2z", "\\frac{1}{2}\\sqrt{3}", "x^2/2", "-2^2", "1/-2", "2*-3", "xI", "\\sqrt[3]{x}", "x^{0.5}",
    "\\frac{\\sqrt{3}}{3}", "2x+3y-\\pi", "e^x", "e^{I\\pi}", "10^{-3}", "\\sqrt{x}^2", "\\pi(r+1)" ,
    "x^\\pi", "(a+1)(b+2)", "\\frac{11+9a}{20}", "6r^2-4r-24", "x^8+x^7+x^6+1", "\\frac{20000}{\\pi}",
    "18+2\\pi", "3\\sqrt{13}", "11\\sqrt{5}+11", "\\sqrt{-4}", "\\frac{3\\sqrt{3}}{4}", "\\sqrt{\\frac{1}{2}}",
    "2^{2^{3}}", "\\frac{1}{x-1}", "(x+1)^{5}", "-\\frac{\\pi}{6}", "2k+2", "\\frac{x+1}{x^2-1}",
]
REFUSED = ["\\sin x", "x_1", "\\infty", "|x|", "3!", "x=1", "f(x)", "2\\frac{1}{3}", "x^23", "\\log 2", "\\frac12",
           "1,2", "\\ln(x)", "\\binom{5}{2}", "x'"]


def _sympy_value(text, point):
    expr = parse_latex(text)
    assert expr is not None, text
    subs = {s: point[s.name] for s in expr.free_symbols}
    return complex(expr.evalf(30, subs=subs))


def _check_against_sympy(texts):
    checked = 0
    for text in texts:
        tree = screen.compile_expr(text)
        if tree is None:
            continue
        names = sorted(screen._variables(tree))
        for trial in range(2):
            point = {n: 0.3 + 0.61 * k + 0.17 * trial for k, n in enumerate(names)}
            mp_point = {n: screen._CTX.mpf(v) for n, v in point.items()}
            try:
                fast = complex(screen._eval(tree, mp_point))
            except ZeroDivisionError:
                continue
            ref = _sympy_value(text, point)
            assert abs(fast - ref) <= 1e-12 * max(1.0, abs(ref)), (text, point, fast, ref)
        checked += 1
    return checked


def test_corpus_values_match_latex2sympy():
    assert _check_against_sympy(CORPUS) == len(CORPUS)  # every corpus entry is accepted and agrees


@pytest.mark.parametrize("text", REFUSED)
def test_refuses_what_it_might_misread(text):
    assert screen.compile_expr(text) is None


def test_math500_golds_match_latex2sympy(shared_data):
    rows = [json.loads(l) for l in (shared_data / "math" / "math500.jsonl").read_text().splitlines()]
    leaves = []
    for row in rows:
        node = parse_answer(row["answer"])
        if isinstance(node, Leaf) and not node.is_text:
            leaves.append(node.value)
    assert _check_against_sympy(leaves) > 100


@pytest.mark.parametrize("gold, pred", [
    ("x^2+2x+1", "(x+1)^2"), ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"), ("3\\sqrt{13}", "\\sqrt{117}"),
    ("\\pi r^2", "r^2\\pi"), ("2R", "2r"), ("\\frac{x^2-1}{x-1}", "x+1"), ("e^{2}e", "e^3"), ("1/2x", "\\frac{1}{2x}"),
    ("\\sqrt[3]{8}", "2"), ("I^2", "-1"), ("0.5x", "\\frac{x}{2}"),
])
def test_never_separates_equal_answers(gold, pred):
    assert not screen.clearly_different(gold, pred, 1e-20 if "." not in gold + pred else 1e-6)


@pytest.mark.parametrize("gold, pred", [
    ("x^2+2x+1", "(x+1)^3"), ("\\sqrt{2}", "1.4142"), ("\\pi", "3.14"), ("2r", "2s"), ("e", "E"), ("i^2", "-1"),
])
def test_separates_different_answers(gold, pred):
    assert screen.clearly_different(gold, pred, 1e-20 if "." not in gold + pred else 1e-6)


def test_fast_sympy_build_equals_latex2sympy():
    """What the symbolic tier builds from the screen's tree is the expression latex2sympy parses."""
    from reasoner_verifiers.math.symbolic import parse_leaf

    for text in CORPUS:
        fast, ref = parse_leaf(text), parse_latex(text)
        assert {s.name: s.assumptions0.get("real") for s in fast.free_symbols} == \
            {s.name: s.assumptions0.get("real") for s in ref.free_symbols}, text
        diff = sympy.simplify(fast - ref)
        assert diff == 0 or (diff.is_number and abs(complex(diff.evalf(30))) < 1e-12), (text, fast, ref)


def test_one_operator_table_for_both_evaluators():
    """screen.fold is the only place the tree's operators are interpreted (mpmath here, sympy in symbolic)."""
    def ops(tree):
        return {tree[0]} | set().union(*(ops(c) for c in tree[1:] if isinstance(c, tuple)))

    seen = set().union(*(ops(screen.compile_expr(t)) for t in CORPUS))
    assert seen <= set(screen.OPERATORS) | set(screen.LEAVES)
    assert set(screen.OPERATORS) <= seen  # every entry of the table is exercised by the corpus
    with pytest.raises(ValueError, match="unknown operator"):
        screen.fold(("mod", ("num", "1"), ("num", "2")), lambda n: 1, screen._MP)
