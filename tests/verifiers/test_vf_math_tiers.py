"""Hand-written equivalence cases, tier by tier, in both modes (the judge run in-process, sympy included)."""
import pytest

from reasoner_verifiers.math.judge import CompareConfig, NeedsHeavy, judge
from reasoner_verifiers.math.normalize import parse_answer
from reasoner_verifiers.math.symbolic import heavy_compare

BOTH = ("strict", "lenient")


def decide(gold, pred, mode="strict"):
    return judge(parse_answer(gold), parse_answer(pred), CompareConfig(mode), heavy=heavy_compare)


def cheap(gold, pred, mode="strict"):
    """The in-process pass only (what the trainer's process runs)."""
    return judge(parse_answer(gold), parse_answer(pred), CompareConfig(mode))


# (gold, prediction, status, tier) — the same in both modes
CASES = [
    # normalised string
    ("\\frac{1}{2}", "\\dfrac{1}{2}", "correct", "string"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", "correct", "string"),
    ("90^\\circ", "90", "correct", "string"),
    ("10{,}000", "10000", "correct", "string"),
    ("\\$32,\\!348", "32348", "correct", "string"),
    ("\\text{(C)}", "C", "correct", "string"),
    ("A", "C", "wrong", "string"),
    ("\\text{Evelyn}", "evelyn", "correct", "string"),
    ("\\text{east}", "\\text{West}", "wrong", "string"),
    ("864 \\mbox{ inches}^2", "864", "correct", "string"),
    ("x \\in [-2,7]", "[-2, 7]", "correct", "string"),
    ("\\frac43", "\\frac{4}{3}", "correct", "string"),
    ("1 \\pm \\sqrt{19}", "1-\\sqrt{19}, 1+\\sqrt{19}", "correct", "string"),
    ("52_8", "52_{8}", "correct", "string"),
    ("52_8", "42", "wrong", "string"),
    # exact integers / rationals / decimals
    ("\\frac{1}{2}", "0.5", "correct", "exact"),
    ("12\\frac{3}{5}", "\\frac{63}{5}", "correct", "exact"),
    ("1\\frac{1}{4}", "1.25", "correct", "exact"),
    ("1024", "2^{10}", "correct", "exact"),
    ("6", "3!", "correct", "exact"),
    ("-\\frac{40}{153}", "\\frac{-40}{153}", "correct", "exact"),
    ("025", "25", "correct", "exact"),
    ("37.50", "37.5", "correct", "exact"),
    ("58,500", "58500", "correct", "string"),
    ("58,500", "58, 500", "wrong", "structure"),
    ("\\frac{1}{2004!}", "\\frac{1}{2006!}", "wrong", "exact"),
    ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", "wrong", "exact"),
    ("\\frac{2^{2005}+1}{3\\cdot 2^{2006}}", "\\frac{1}{3\\cdot 2^{2006}}", "wrong", "exact"),
    ("\\frac{2^{2005}+1}{3\\cdot 2^{2006}}", "\\frac{2^{2005}+1}{3\\cdot 2^{2006}}", "correct", "string"),
    ("\\frac{1}{6}+\\frac{1}{3 \\cdot 2^{2006}}", "\\frac{2^{2005}+1}{3\\cdot 2^{2006}}", "correct", "exact"),
    # tolerance only where a side is a decimal
    ("\\frac{1}{3}", "0.333333", "correct", "float"),
    ("\\frac{1}{3}", "0.3333", "wrong", "float"),
    ("10000", "9999.857142857143", "wrong", "float"),
    ("\\pi", "3.14159265", "correct", "numeric"),
    ("\\pi", "3.1416", "wrong", "screen"),
    # structure
    ("(1,2)", "(2,1)", "wrong", "exact"),
    ("(1,2)", "[1,2]", "wrong", "structure"),
    ("(1,2]", "(1,2)", "wrong", "structure"),
    ("1, 2", "2, 1", "correct", "string"),
    ("\\{1,2\\}", "(2, 1)", "correct", "string"),
    ("\\{1\\pm\\sqrt{5},-2\\}", "-2, 1-\\sqrt{5}, 1+\\sqrt{5}", "correct", "string"),
    ("(0,9) \\cup (9,36)", "(9,36) \\cup (0,9)", "correct", "string"),
    ("(0,9) \\cup (9,36)", "(0,9) \\cup (9,35)", "wrong", "exact"),
    ("x=5", "5", "correct", "string"),
    ("5", "x = 5", "correct", "string"),
    ("5", "(5, 6)", "wrong", "structure"),
    ("\\{5\\}", "5", "correct", "string"),
    ("3, 5, 7", "3, 5", "wrong", "structure"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", "correct", "string"),
    ("\\begin{pmatrix} 1 & 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "wrong", "structure"),
    # symbolic
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", "correct", "sympy"),
    ("3\\sqrt{13}", "\\sqrt{117}", "correct", "sympy"),
    ("x^2+2x+1", "(x+1)^2", "correct", "sympy"),
    ("x^2+2x+1", "(x+1)^3", "wrong", "screen"),
    ("p - q", "-q+p", "correct", "sympy"),
    ("\\cot x", "\\frac{\\cos x}{\\sin x}", "correct", "sympy"),
    ("y = 2x + 3", "2x - y + 3 = 0", "correct", "sympy"),
    ("6 - 5i", "-5i+6", "correct", "sympy"),
    ("1", "1+e^{-200}", "wrong", "sympy"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{2\\pi}{4})", "correct", "sympy"),
    ("\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}", "\\begin{pmatrix} -\\frac{1}{3} \\\\ \\frac{2}{3} \\end{pmatrix}",
     "correct", "exact"),
    # unparseable answers are counted as such, not as wrong
    ("5", "\\frac{", "parse_error", "sympy"),
]


@pytest.mark.parametrize("mode", BOTH)
@pytest.mark.parametrize("gold, pred, status, tier", CASES)
def test_equivalence_cases(gold, pred, status, tier, mode):
    verdict = decide(gold, pred, mode)
    assert (verdict.status, verdict.tier) == (status, tier), verdict


# where the modes differ: strict for RL rewards, lenient for evaluation
MODE_CASES = [
    ("50", "50\\%", "wrong", "correct"),
    ("50\\%", "50", "wrong", "correct"),
    ("50\\%", "0.5", "wrong", "correct"),
    ("12.5\\%", "\\frac{1}{8}", "wrong", "correct"),
    ("50\\%", "50\\%", "correct", "correct"),
    ("(1,2)", "1, 2", "wrong", "correct"),
    ("(1,2)", "2, 1", "wrong", "wrong"),
    ("x=5", "y=5", "wrong", "correct"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1, 2)", "wrong", "correct"),
]


@pytest.mark.parametrize("gold, pred, strict, lenient", MODE_CASES)
def test_modes(gold, pred, strict, lenient):
    assert decide(gold, pred, "strict").status == strict
    assert decide(gold, pred, "lenient").status == lenient


@pytest.mark.parametrize("gold, pred, status", [
    ("42", "42", "correct"), ("42", "43", "wrong"), ("\\frac{1}{2}", "0.5", "correct"), ("(1,2)", "(2,1)", "wrong"),
    ("\\frac{1}{2004!}", "\\frac{1}{2006!}", "wrong"), ("50", "50\\%", "wrong"), ("\\text{(B)}", "B", "correct"),
    ("3, 5", "5, 3", "correct"),
])
def test_cheap_tiers_decide_without_sympy(gold, pred, status):
    assert cheap(gold, pred).status == status  # decided in-process: NeedsHeavy is not raised


@pytest.mark.parametrize("gold, pred", [("\\sqrt{2}", "\\frac{2}{\\sqrt{2}}"), ("x+1", "1+x"), ("2", "\\sqrt{4}")])
def test_symbolic_pairs_need_a_worker(gold, pred):
    with pytest.raises(NeedsHeavy):
        cheap(gold, pred)


def test_a_wrong_tuple_element_decides_without_sympy():
    # the second element would need sympy, the first is already wrong
    assert cheap("(1, \\sqrt{2})", "(2, \\frac{2}{\\sqrt{2}})").status == "wrong"


def test_rel_tol_option():
    cfg = CompareConfig("strict", rel_tol=1e-3)
    assert judge(parse_answer("\\frac{1}{3}"), parse_answer("0.3333"), cfg).status == "correct"
