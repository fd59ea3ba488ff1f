"""Agreement with the labels of 800 real Qwen2.5-Math completions (../shared/data/math, see its MANIFEST).

The labels come from Qwen2.5-Math's own grader. Expected disagreements, each explained in docs/verifiers.md:
  qwen-math-cot-72-7  gold `10{,}000`, answer `10000`: labelled False, correct (the known label error: Qwen's
                      grader does not read LaTeX's `{,}` thousands separator).

The same completions with every `\\boxed{…}` unwrapped (its content left in place) are real model prose whose
answer the free-form rules must find ("Therefore, the final answer is $420$."): a check of `auto`'s fallback
on text no generator of ours wrote. Expected disagreements there, besides 72-7: 25-1, 45-5 and 48-3, whose
boxed answer is followed by hundreds of characters of garbage tokens, so no final sentence states it.
"""
import json
from collections import Counter

import pytest

EXPECTED_DISAGREEMENTS = {"qwen-math-cot-72-7"}
UNBOXED_DISAGREEMENTS = EXPECTED_DISAGREEMENTS | {"qwen-math-cot-25-1", "qwen-math-cot-45-5", "qwen-math-cot-48-3"}


@pytest.fixture(scope="module")
def rows(shared_data):
    path = shared_data / "math" / "labelled_qwen25math_math_cot_800.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_agreement_with_labels(rows, mode):
    from reasoner_verifiers import get_verifier

    # the completions end with \boxed{...} and do not use the R1 template: `auto` falls back to the last box
    v = get_verifier("math", mode=mode, extract="auto")
    try:
        scores = v.score_batch([r["completion"] for r in rows], rows)
    finally:
        v.close()
    statuses = Counter(s.status for s in scores)
    assert statuses["timeout"] == statuses["parse_error"] == statuses["rejected"] == 0, statuses
    disagree = {r["id"] for r, s in zip(rows, scores) if s.correct != r["label"]}
    assert disagree == EXPECTED_DISAGREEMENTS
    assert 1 - len(disagree) / len(rows) >= 0.995


def unbox(text: str) -> str:
    """`\\boxed{x}` -> `x`, every box."""
    from reasoner_verifiers.math.delimiters import matching_brace

    while (i := text.rfind("\\boxed{")) >= 0 and (j := matching_brace(text, i + 6)) >= 0:
        text = text[:i] + text[i + 7 : j] + text[j + 1 :]
    return text


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_agreement_with_labels_when_the_boxes_are_gone(rows, mode):
    from reasoner_verifiers import get_verifier

    unboxed = [dict(r, completion=unbox(r["completion"])) for r in rows]
    assert not any("\\boxed" in r["completion"] for r in unboxed)
    v = get_verifier("math", mode=mode, extract="auto")
    try:
        scores = v.score_batch([r["completion"] for r in unboxed], unboxed)
    finally:
        v.close()
    rules = Counter(s.details.get("extracted", {}).get("rule") for s in scores)
    assert rules["last_number"] + rules["phrase"] >= 790, rules
    disagree = {r["id"] for r, s in zip(unboxed, scores) if s.correct != r["label"]}
    assert disagree == UNBOXED_DISAGREEMENTS
