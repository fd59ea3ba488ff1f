"""What a math worker process runs: the full judge, symbolic tier included (see `reasoner_verifiers.pool`)."""
from __future__ import annotations

import logging

from .judge import CompareConfig, judge
from .normalize import parse_answer
from .symbolic import heavy_compare, parse_latex, parse_leaf

# Typical answer shapes. Parsing them once at start-up loads sympy's lazily imported modules and fills
# ANTLR's prediction cache, which otherwise makes each new construct several times slower the first time it
# is seen, in every worker, and would be paid inside the first deadlines.
WARM_UP_PAIRS = (
    ("\\frac{\\sqrt{3}}{2}", "\\frac{3}{2\\sqrt{3}}"), ("2\\pi r^2", "2r^2\\pi + 1"), ("x^2-1", "(x-1)(x+1)"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"), ("[-2, 7)", "[-2, 7)"), ("y = 2x + 3", "2x - y + 3 = 0"),
    ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"), ("6 - 5i", "6-5i+0"),
    ("\\sin x + \\cos^2 y", "\\cos^{2}(y) + \\sin(x)"), ("3\\sqrt{13}", "\\sqrt{117}"), ("\\ln 2", "\\log_2 e"),
    ("x \\in (-\\infty, 1]", "(-\\infty, 1]"), ("\\{1, 2\\}", "\\{2, 1\\}"), ("0.25", "\\tfrac{1}{4} + 0.0"),
    ("\\dbinom{5}{2}", "10 + 0x"), ("|x - 1| \\le 2", "-1 \\le x \\le 3"), ("a^{3} b^{-1}", "\\frac{a^3}{b}"),
)


def warm_up() -> None:
    """Before the worker says ready: quiet loggers, import sympy's lazy parts, warm the LaTeX parser."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)
    for mode in ("strict", "lenient"):
        for gold, pred in WARM_UP_PAIRS:
            run([gold, pred, CompareConfig(mode).to_wire()])
    parse_latex.cache_clear()  # warm the parser, not the caches: benchmarks and tests start from empty caches
    parse_leaf.cache_clear()


def run(payload: list) -> list[str]:
    """`[gold, answer, CompareConfig.to_wire()]` -> `[status, tier, reason]` (plain data: see
    reasoner_verifiers.wire)."""
    gold, pred, cfg = payload
    verdict = judge(parse_answer(str(gold)), parse_answer(str(pred)), CompareConfig.from_wire(cfg),
                    heavy=heavy_compare)
    return [verdict.status, verdict.tier, verdict.reason]
