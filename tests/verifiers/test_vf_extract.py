"""Answer extraction: answer tag, last box, auto; truncated and adversarial shapes."""
import pytest

from reasoner_verifiers.math.extract import extract_answer, last_boxed, strip_math_delimiters

R1 = "<think>try 3, then \\boxed{3}</think> <answer>The result is $\\boxed{\\frac{1}{2}}$.</answer>"


@pytest.mark.parametrize("completion, mode, expected", [
    (R1, "answer_tag", "\\frac{1}{2}"),
    (R1, "boxed", "\\frac{1}{2}"),
    ("<think>x</think><answer> 42 </answer>", "answer_tag", "42"),
    ("<think>x</think><answer>$x = 5$</answer>", "answer_tag", "x = 5"),
    ("<answer>1</answer> then <answer>2</answer>", "answer_tag", "2"),
    ("no tags, \\boxed{7}", "answer_tag", None),
    ("no tags, \\boxed{7}", "auto", "7"),
    ("<answer>5</answer> and \\boxed{7}", "auto", "5"),
    ("\\boxed{1} then \\boxed{2}", "boxed", "2"),
    ("\\boxed{\\frac{a}{b}} ok", "boxed", "\\frac{a}{b}"),
    ("\\boxed{\\{1, 2\\}}", "boxed", "\\{1, 2\\}"),
    ("\\fbox{9}", "boxed", "9"),
    ("so \\boxed 5$ done", "boxed", "5"),
    ("\\boxed{1} and then \\boxed{2", "boxed", None),        # the last box is truncated: no answer
    ("<answer>\\boxed{3</answer>", "answer_tag", None),
    ("<answer>unclosed", "answer_tag", None),
    ("<answer>   </answer>", "answer_tag", None),
    ("", "auto", None),
])
def test_extract(completion, mode, expected):
    assert extract_answer(completion, mode) == expected


def test_unknown_mode_names_the_valid_ones():
    with pytest.raises(ValueError, match="answer_tag, boxed, auto"):
        extract_answer("x", "last")


def test_megabyte_completion_is_linear():
    import time
    text = "a" * 1_000_000 + "\\boxed{" + "{" * 1_000_000
    t0 = time.perf_counter()
    assert last_boxed(text) is None
    assert time.perf_counter() - t0 < 2.0


def test_strip_math_delimiters():
    assert strip_math_delimiters("$$x$$") == "x"
    assert strip_math_delimiters("\\(x\\)") == "x"
    assert strip_math_delimiters("\\[ x \\]") == "x"
    assert strip_math_delimiters("$a$ and $b$") == "$a$ and $b$"  # two formulas, not one
