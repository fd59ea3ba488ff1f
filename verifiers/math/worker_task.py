"""What a math worker process runs: the full judge, symbolic tier included (see `verifiers.pool`)."""
from __future__ import annotations

import logging

from .judge import CompareConfig, judge
from .normalize import parse_answer
from .symbolic import heavy_compare, parse_latex


def warm_up() -> None:
    """Load the LaTeX grammar before saying ready, so the first deadline is not spent importing."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)
    parse_latex("\\frac{1}{2}+x^2")


def run(payload: tuple[str, str, str, float | None]) -> tuple[str, str, str]:
    gold, pred, mode, rel_tol = payload
    verdict = judge(parse_answer(gold), parse_answer(pred), CompareConfig(mode, rel_tol), heavy=heavy_compare)
    return verdict.status, verdict.tier, verdict.reason
