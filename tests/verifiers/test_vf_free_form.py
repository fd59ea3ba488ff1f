"""Free-form answers (issue 15): the `auto` fallback order, the `free_form` mode, `extracted` in the details, and
agreement on a labelled set built from GSM8K's worked solutions (tests/verifiers/free_form_set.py)."""
import time
from collections import Counter

import pytest

from reasoner_verifiers import get_verifier
from reasoner_verifiers.math.extract import EXTRACT_MODES, extract

SOLUTION = "Janet sells 16 - 3 - 4 = 9 eggs a day.\nShe makes 9 * 2 = $18 every day at the market."


@pytest.mark.parametrize("completion, answer, rule", [
    # the fallback order of `auto`: tag, box, ####, phrase, last number
    ("<answer>7</answer> \\boxed{8} #### 9", "7", "answer_tag"),
    ("\\boxed{8}\n#### 9", "8", "boxed"),
    ("The answer is 10.\n#### 9", "9", "hash"),
    ("So 5 + 5 = 10. The answer is 10. Then 11.", "10", "phrase"),
    (SOLUTION, "18", "last_number"),
    # phrases, markdown, few-shot
    ("So the answer is 42.", "42", "phrase"),
    ("The final answer is: 42", "42", "phrase"),
    ("**Answer:** 42", "42", "phrase"),
    ("**Answer: 42**", "42", "phrase"),
    ("**Final Answer**: $42$", "42", "phrase"),
    ("A: 42", "42", "phrase"),
    ("Final Answer: The final answer is $18$. I hope it is correct.", "18", "phrase"),
    ("The answer is:\n\n$$18$$", "18", "phrase"),
    ("The answer is therefore 16 - 3 - 4 = 9", "9", "phrase"),
    ("The answer is 17 or 18.", "17, 18", "phrase"),  # a hedge is a list: it matches neither
    # values as prose writes them
    ("The total is $1,234.50.", "1234.50", "last_number"),
    ("She earns 18 dollars.", "18", "last_number"),
    ("The rate is 18%.", "18\\%", "last_number"),
    ("She pays -$5.", "-5", "last_number"),
    ("Therefore, Janet makes \\$18 every day.", "18", "last_number"),
    ("It costs $5 and $6 together, so $11.", "11", "last_number"),
    ("She leaves at 7:00 pm.", "7", "last_number"),
    ("The point is (3, 4).", "(3, 4)", "last_number"),
    ("Thus, $x = \\frac{3}{4}$.", "\\frac{3}{4}", "last_number"),
    ("So $3 \\times 6 = 18$ dollars.", "18", "last_number"),
    ("\\[ 16 - 3 - 4 = 9 \\]\n\\[ 9 \\times 2 = 18 \\]", "18", "last_number"),
    ("So it would take 2.5*6=15 minutes to go 6 times", "15", "last_number"),  # the computation's result
    ("That is 9 eggs.\n\nI hope this helps!", "9", "last_number"),           # a closing remark is skipped
    # headings are not answers
    ("#### Step 2: compute\nThe total is 5.", "5", "last_number"),
    ("#### 3. Total cost\nIt costs $12.", "12", "last_number"),
    ("#### 18 dollars", "18", "hash"),
    # where prose is read
    ("<think>so 18</think>The answer is **19**.", "19", "phrase"),
    ("The answer is 18.\n\nQ: What is 2+2?\nA: The answer is 4.", "18", "phrase"),   # an invented next turn
    ("The answer is 18.<|im_end|>The answer is 4.", "18", "phrase"),
    # inside the answer tag
    ("<answer>445 dollars</answer>", "445", "answer_tag"),
    ("<answer>Janet makes $18 a day.</answer>", "18", "answer_tag"),
    ("<answer>The answer is 18.</answer>", "18", "answer_tag"),
    ("<answer>\\text{Evelyn}</answer>", "\\text{Evelyn}", "answer_tag"),
    ("<answer>x = 5 or x = 7</answer>", "x = 5 or x = 7", "answer_tag"),
])
def test_auto_reads(completion, answer, rule):
    found = extract(completion, "auto")
    assert found is not None and (found.answer, found.rule) == (answer, rule), found


@pytest.mark.parametrize("completion", [
    "We have 9 eggs. She sells them for",        # cut off mid-sentence
    "<think>so the answer is 18 and then",       # an unfinished thought
    "I have no idea.",
    "\\boxed{1} and then \\boxed{2",            # the last box was cut off
    "The answer is that she makes a lot. I hope it helps. Good luck. Bye. Thanks.",
])
def test_auto_finds_nothing(completion):
    assert extract(completion, "auto") is None


def test_modes_differ_where_documented():
    text = "<answer>5</answer> \\boxed{6} The answer is 7."
    assert [extract(text, m).answer for m in ("answer_tag", "boxed", "auto", "free_form")] == ["5", "6", "5", "7"]
    assert extract("The answer is 7.", "answer_tag") is None and extract("The answer is 7.", "boxed") is None
    assert extract("The answer is 7.", "free_form").answer == "7"


def test_hedges_never_pass(strict_math):
    for completion in ("The answer is 18 or 19.", "The answer is 17, 18.", "<answer>18 or 19</answer>"):
        assert strict_math.score(completion, {"answer": "18"}).status == "wrong", completion


def test_details_say_what_was_read_and_by_which_rule(strict_math):
    s = strict_math.score("Work... **Answer:** $1,234", {"answer": "1234"})
    assert s.correct and s.details["extracted"] == {"rule": "phrase", "text": "Answer:** $1,234"}
    assert s.details["answer"] == "1234"
    s = strict_math.score("<answer>\\sqrt{4}</answer>", {"answer": "2"})  # decided in a worker: still there
    assert s.correct and s.details["extracted"]["rule"] == "answer_tag"
    assert strict_math.score("nothing here", {"answer": "1"}).details == {"extract": "auto"}


BOMBS = {
    "hash_line": "#### " * 200_000, "phrases": "the answer is " * 70_000, "dollars": "$" * 1_000_000,
    "open_parens": "\\( " * 330_000, "open_boxes": "\\boxed{" * 140_000, "run": "1+" * 500_000,
    "alternatives": "The answer is " + "1 or " * 200_000, "tuples": "(1," * 330_000, "clock": "7:30 " * 200_000,
    "tag_prose": "<answer>" + "The answer is 1 or " * 50_000 + "</answer>", "sentences": "a. " * 330_000,
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_extraction_is_linear_on_megabyte_completions(name):
    for mode in EXTRACT_MODES:
        t0 = time.perf_counter()
        extract(BOMBS[name], mode)
        assert time.perf_counter() - t0 < 1.0, (name, mode)


# ------------------------------------------------------------------------------------------ the labelled set
@pytest.fixture(scope="module")
def labelled(shared_data):
    from tests.verifiers.free_form_set import build, load_rows

    path = shared_data / "math" / "gsm8k_train.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return build(load_rows(shared_data))


@pytest.fixture(scope="module")
def scored(labelled):
    """Scores of the labelled set per (mode, gold_format), each computed once."""
    cache = {}

    def get(mode="strict", gold_format="gsm8k"):
        if (mode, gold_format) not in cache:
            v = get_verifier("math", extract="auto", mode=mode, gold_format=gold_format)
            try:
                cache[(mode, gold_format)] = v.score_batch([it["completion"] for it in labelled], labelled)
            finally:
                v.close()
        return cache[(mode, gold_format)]

    return get


def _disagreements(items, scores):
    return [(it, s) for it, s in zip(items, scores) if s.correct != it["label"]]


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_agreement_on_the_gsm8k_free_form_set(labelled, scored, mode):
    """The GSM8K preset (`extract=auto, gold_format=gsm8k`). Measured: docs/verifiers.md."""
    assert len(labelled) > 20_000 and Counter(it["label"] for it in labelled)[False] > 10_000
    wrong = _disagreements(labelled, scored(mode))
    assert 1 - len(wrong) / len(labelled) >= 0.995, Counter(it["style"] for it, _ in wrong)
    false_positives = [it["id"] for it, s in wrong if s.correct]
    assert len(false_positives) <= len(labelled) * 0.0005, false_positives


def test_every_control_class_is_graded_wrong(labelled, scored):
    """Per wrong-answer control (number before the last, from the reasoning, cents, comma trap, hedge,
    truncation): at least 99.5% graded not correct."""
    pairs = [(it, s) for it, s in zip(labelled, scored()) if it["control"]]
    passed = Counter(it["control"] for it, s in pairs if s.correct)
    total = Counter(it["control"] for it, _ in pairs)
    assert set(total) >= {"number_before_last", "number_from_reasoning", "off_by", "cents_amount", "comma_trap",
                          "hedge", "truncated"}
    assert all(passed[c] <= 0.005 * total[c] for c in total), (passed, total)


def test_plain_golds_refuse_a_percent_sign_in_strict_mode(labelled, scored):
    """Without the GSM8K gold format, strict mode keeps `50 != 50%`: the percent renderings then disagree."""
    percent = [k for k, it in enumerate(labelled) if it["label"] and it["style"] != "bare"
               and it["completion"].rstrip(".* \n").endswith("%")]
    assert len(percent) > 20
    plain, preset = scored("strict", "plain"), scored("strict", "gsm8k")
    assert sum(plain[k].correct for k in percent) < 0.1 * len(percent)
    assert all(preset[k].correct for k in percent)
