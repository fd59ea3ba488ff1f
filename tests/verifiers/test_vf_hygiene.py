"""Package hygiene: no torch (nor sympy) in the caller's process; the cheap tiers survive junk quickly."""
import random
import subprocess
import sys
import time
from pathlib import Path

from reasoner_verifiers.math.judge import CompareConfig, NeedsHeavy, judge
from reasoner_verifiers.math.normalize import TooManyItems, parse_answer
from reasoner_verifiers.math.prefilter import Limits, check

ROOT = Path(__file__).resolve().parents[2]


def test_importing_and_cheap_scoring_loads_neither_torch_nor_sympy():
    code = (
        "import sys\n"
        "import reasoner_verifiers, reasoner_verifiers.adapters, reasoner_verifiers.cli, reasoner_verifiers.pool\n"
        "from reasoner_verifiers import RewardSpec\n"
        "spec = RewardSpec.from_config({'math': {}, 'format': {'weight': 0.1}, 'language': {'weight': 0.1}})\n"
        "b = spec.score_batch(['<think>so</think><answer>\\\\frac{1}{2}</answer>'] * 4, [{'answer': '0.5'}] * 4)\n"
        "assert b.correct == [True] * 4, b.scores\n"
        "spec.close()\n"
        "bad = sorted(m for m in ('torch', 'sympy', 'numpy', 'math_verify') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


def test_no_torch_import_in_the_sources():
    sources = list((ROOT / "reasoner_verifiers").rglob("*.py"))
    assert len(sources) > 20
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert "import torch" not in text and "from torch" not in text, path


ALPHABET = ["\\text{", "}", "{", " ", "\\frac", "^", "-", "+", "1", "x", "(", ")", ",", "\\!", "\\%", "=", "\\cup",
            "\\pm", "[", "]", "\\{", "\\}", ".", "!", "\\sqrt", "\\left(", "\\right)", "\\$", "\\", "&", "\\\\",
            "\\begin{pmatrix}", "\\end{pmatrix}", "_", "a", "e", "I", "9", "  ", "\\infty", "\\cdot"]
SPECIALS = ["-" * 1990 + "1", "+" * 1999, "\\text{a}" + " " * 1990 + "x", "\\text{a} " * 200, "x" * 2000,
            "2\\cdot" * 300 + "2", "\\sqrt" * 300 + "{2}", "(" * 15 + ")" * 15 + "!" * 1500, "1" + "^{1}" * 300]


def test_cheap_tiers_never_raise_and_stay_fast_on_junk():
    rng = random.Random(1234)
    samples = SPECIALS + ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 400))) for _ in range(600)]
    gold = parse_answer("x^2+1")
    for s in samples:
        t0 = time.perf_counter()
        if check(s, Limits()) is None:
            try:
                judge(gold, parse_answer(s), CompareConfig())
            except (NeedsHeavy, TooManyItems):
                pass
        assert time.perf_counter() - t0 < 0.5, s[:80]


def test_the_answer_normaliser_is_public():
    """reasoner's majority voting keys on it (issue 17: it imported reasoner_verifiers.math.normalize past the API)."""
    import reasoner_verifiers
    from reasoner_verifiers.math.normalize import normalize_text

    assert "normalize_answer" in reasoner_verifiers.__all__ and reasoner_verifiers.normalize_answer is normalize_text
    assert reasoner_verifiers.normalize_answer("\\dfrac{1}{2}\\text{ cm}") == "\\frac{1}{2}"
    assert reasoner_verifiers.normalize_answer("$10{,}000$") == "10000"
