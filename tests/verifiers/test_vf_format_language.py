"""Format and language-consistency rewards on crafted completions."""
import pytest

from reasoner_verifiers import get_verifier
from reasoner_verifiers.language import target_share, word_counts

GOOD = "<think>\nLet me compute 2+2.\n</think>\n<answer>4</answer>"


@pytest.mark.parametrize("completion, ok, failed", [
    (GOOD, True, []),
    ("  <think>a</think><answer>b</answer>  \n", True, []),
    ("<think>a</think>junk<answer>b</answer>", False, ["nothing_outside"]),
    ("preamble <think>a</think><answer>b</answer>", False, ["nothing_outside"]),
    ("<think>a</think><answer>b</answer> trailing", False, ["nothing_outside"]),
    ("<answer>b</answer><think>a</think>", False, ["in_order", "nothing_outside", "nonempty"]),
    ("<think>a</think><think>a</think><answer>b</answer>", False, ["one_think_open", "one_think_close", "nothing_outside"]),
    ("<think>a</think>", False, ["one_answer_open", "one_answer_close", "in_order", "nothing_outside", "nonempty"]),
    ("<think> </think><answer>b</answer>", False, ["nonempty"]),
    ("<think>a</think><answer>b", False, ["one_answer_close", "in_order", "nothing_outside", "nonempty"]),
    ("", False, ["one_think_open", "one_think_close", "one_answer_open", "one_answer_close", "in_order",
                 "nothing_outside", "nonempty"]),
])
def test_format_binary_and_partial(completion, ok, failed):
    binary = get_verifier("format").score(completion, {})
    partial = get_verifier("format_partial").score(completion, {})
    assert binary.value == (1.0 if ok else 0.0)
    assert binary.status == ("correct" if ok else "wrong")
    assert sorted(binary.details.get("failed", [])) == sorted(failed)
    assert partial.value == pytest.approx((7 - len(failed)) / 7)


def test_format_prefilled_think():
    v = get_verifier("format", think_prefilled=True)
    assert v.score("I think 4.</think><answer>4</answer>", {}).value == 1.0
    assert v.score("<think>I think</think><answer>4</answer>", {}).value == 0.0  # the prompt already opened it
    assert v.score("</think><answer>4</answer>", {}).value == 0.0  # empty thought


def test_format_custom_tags():
    v = get_verifier("format", think_tag="reasoning", answer_tag="final")
    assert v.score("<reasoning>r</reasoning><final>f</final>", {}).value == 1.0
    assert v.score(GOOD, {}).value == 0.0


def test_format_partial_option_is_the_same_verifier():
    a = get_verifier("format", partial=True).score("<think>a</think>", {})
    b = get_verifier("format_partial").score("<think>a</think>", {})
    assert a == b


# ---------------------------------------------------------------------------------------------- language
def test_word_counts_by_script():
    assert word_counts("Let x be 2. 我们 计算") == {"latin": 2, "han": 4}  # `x` is a variable, not a word
    assert word_counts("$\\frac{a}{b}$ \\alpha plus") == {"latin": 1}  # maths and commands are not language


@pytest.mark.parametrize("text, target, share", [
    ("We compute the sum step by step.", "en", 1.0),
    ("我们一步一步地计算这个和。", "zh", 1.0),
    ("我们一步一步地计算这个和。", "en", 0.0),
    ("First 我们 compute 和", "en", 2 / 5),       # 2 English words, 3 Han characters
    ("First 我们 compute 和", "zh", 3 / 5),
    ("Сначала we посчитаем", "ru", 2 / 3),
    ("まず計算します", "ja", 1.0),
    ("먼저 합을 계산합니다", "ko", 1.0),
])
def test_target_share(text, target, share):
    assert target_share(text, target)[0] == pytest.approx(share)


def test_language_reward_reads_only_the_thought():
    v = get_verifier("language", target="zh")
    mixed = "<think>首先, let us compute 二加二 which is four</think><answer>The answer is 4</answer>"
    s = v.score(mixed, {})
    # thought: Han 首先二加二 (5) vs Latin let, us, compute, which, is, four (6)
    assert s.status == "scored" and s.value == pytest.approx(5 / 11)
    assert s.details["words"] == 11


def test_language_target_per_example_overrides_the_run():
    v = get_verifier("language", target="en")
    text = "<think>我们计算</think><answer>4</answer>"
    assert v.score(text, {}).value == 0.0
    assert v.score(text, {"language": "zh"}).value == 1.0
    with pytest.raises(ValueError, match="klingon"):
        v.score(text, {"language": "klingon"})


def test_language_without_thought_or_words():
    v = get_verifier("language")
    assert v.score("<answer>4</answer>", {}).status == "no_answer"
    assert v.score("<think>$x^2 + 1 = 2$</think>", {}).status == "no_answer"
    truncated = get_verifier("language").score("<think>we were computing the", {})
    assert truncated.value == 1.0  # an unclosed thought is still a thought
    prefilled = get_verifier("language", think_prefilled=True).score("just words</think><answer>1</answer>", {})
    assert prefilled.value == 1.0 and prefilled.details["words"] == 2


def test_language_options_are_checked():
    with pytest.raises(ValueError, match="valid: ar, el, en"):
        get_verifier("language", target="xx")
    with pytest.raises(ValueError, match="scope"):
        get_verifier("language", scope="everything")
