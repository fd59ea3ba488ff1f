"""A labelled set of free-form completions, generated from GSM8K's worked solutions (../shared/data/math/
gsm8k_train.jsonl, the only shared file with solutions): never stored, rebuilt deterministically.

Each item is a real worked solution followed by a final answer in one of the styles models use (`#### 18`,
"The answer is 18.", `**Answer:** 18`, few-shot `... The answer is 18.`, Minerva's "Final Answer: The final
answer is $18$. I hope it is correct.", a box, R1 with and without the answer tag, a chat sign-off, a display
equation, a base model that goes on to invent the next question, the bare solution), with the value written
as prose writes it (`18`, `1,234`, `$18`, `18 dollars`, `18.00`, `18%` for percent questions).

Labels are the truth, decided by construction, not by any grader: an item is correct iff the value it states
as its final answer equals the gold. Wrong-answer controls (label False): a value one off, a number taken from
the reasoning, the gold written as the number *before* the last in the final sentence, `$1,234.50`-style
amounts for an integer gold, a comma trap (`1,018` for gold 18), a hedge ("18 or 19"), and a solution cut off
before its answer. The gold always appears somewhere in the reasoning of the controls, so an extractor that
reads the wrong number is caught.

    python tests/verifiers/free_form_set.py OUT.jsonl     # writes the set (for reading; tests rebuild it)
"""
from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path

SEED = 20240615
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.]*\d)")
PERCENT_QUESTION = re.compile(r"\b(?:what|which)\s+percent(?:age)?\b|\bpercentage\b|\bin percent\b", re.I)


def load_rows(shared: Path) -> list[dict]:
    path = shared / "math" / "gsm8k_train.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------------------ values
def render(x: int, problem: str, rng: random.Random) -> str:
    """The value as prose writes it; every rendering has the value x."""
    options = [str(x)]
    if abs(x) >= 1000:
        options.append(f"{x:,}")
    if "$" in problem:
        options += [f"${x:,}" if abs(x) >= 1000 else f"${x}", f"{x} dollars", f"${x}.00"]
    if PERCENT_QUESTION.search(problem):
        options.append(f"{x}%")
    return rng.choice(options)


def wrong_value(gold: int, solution: str, rng: random.Random) -> tuple[int, str]:
    """A wrong value and how it was chosen: off by a little, or a number from the reasoning."""
    from_reasoning = sorted({int(float(n)) for n in NUMBER.findall(solution)
                             if float(n).is_integer() and int(float(n)) != gold})
    if from_reasoning and rng.random() < 0.5:
        return rng.choice(from_reasoning), "number_from_reasoning"
    return gold + rng.choice([1, -1, 2, 10, gold or 1]), "off_by"


# ------------------------------------------------------------------------------------------------ styles
Style = Callable[[str, str, random.Random], str]  # (solution, value text, rng) -> completion


def _latex(value: str) -> str:
    """A prose value inside math: no currency sign, the unit in `\\text{}`, an escaped percent sign."""
    return value.replace("$", "").replace(" dollars", "\\text{ dollars}").replace("%", "\\%")


def _oneline(solution: str) -> str:
    return " ".join(line.strip() for line in solution.splitlines())


STYLES: dict[str, Style] = {
    "hash": lambda s, v, r: f"{s}\n#### {v}",
    "the_answer_is": lambda s, v, r: f"{s}\nThe answer is {v}.",
    "final_answer_is": lambda s, v, r: f"{s}\nTherefore, the final answer is {v}.",
    "bold_label": lambda s, v, r: f"{s}\n\n**Answer:** {v}",
    "bold_all": lambda s, v, r: f"{s}\n\n**Answer: {v}**",
    "answer_colon": lambda s, v, r: f"{s}\nAnswer: {v}",
    "few_shot": lambda s, v, r: f"{_oneline(s)} The answer is {v}.",
    "few_shot_a": lambda s, v, r: f"A: {_oneline(s)}\nA: {v}",
    "minerva": lambda s, v, r: f"{s}\nFinal Answer: The final answer is ${_latex(v)}$. I hope it is correct.",
    "boxed": lambda s, v, r: f"{s}\nSo the answer is $\\boxed{{{_latex(v)}}}$.",
    "r1_no_tag": lambda s, v, r: f"<think>\n{s}\n</think>\n\nThe answer is {v}.",
    "r1_tag": lambda s, v, r: f"<think>\n{s}\n</think>\n<answer>{v}</answer>",
    "r1_tag_sentence": lambda s, v, r: f"<think>\n{s}\n</think>\n<answer>She ends up with {v} in total.</answer>",
    "chat_signoff": lambda s, v, r: f"{s}\n\nSo, the answer is **{v}**. Let me know if you have any other questions!",
    "last_sentence": lambda s, v, r: f"{s}\nSo in the end the total comes to {v}.",
    "last_sentence_remark": lambda s, v, r: f"{s}\nIn total that makes {v}.\n\nI hope this helps!",
    "display": lambda s, v, r: f"{s}\n\\[\n\\text{{Total}} = {_latex(v)}\n\\]",
    "invented_turn": lambda s, v, r: (f"{_oneline(s)} The answer is {v}.\n\nQuestion: Tom has 3 apples and buys 4 "
                                      f"more. How many apples does he have?\nAnswer: 3 + 4 = 7. The answer is 7."),
}
NUMBER_BEFORE_LAST = "number_before_last"  # "... that is {gold} a day, so {wrong} in all."


def item(row: dict, style: str, correct: bool, rng: random.Random) -> dict:
    gold = int(row["answer"])
    solution = row["solution"]
    control = ""
    if correct:
        value = gold
    else:
        value, control = wrong_value(gold, solution, rng)
    text = STYLES[style](solution, render(value, row["problem"], rng), rng)
    return {"id": f"{row['id']}/{style}/{'ok' if correct else control}", "style": style, "control": control,
            "answer": row["answer"], "completion": text, "label": correct}


def controls(row: dict, rng: random.Random) -> list[dict]:
    """The targeted wrong-answer controls (and their correct twins where the value rendering is the point)."""
    gold = int(row["answer"])
    s = row["solution"]
    out = []

    def add(kind: str, text: str, label: bool) -> None:
        out.append({"id": f"{row['id']}/{kind}", "style": kind, "control": "" if label else kind,
                    "answer": row["answer"], "completion": text, "label": label})

    wrong, _ = wrong_value(gold, s, rng)
    add(NUMBER_BEFORE_LAST, f"{s}\nThat is {gold} so far, and {wrong} in all.", False)
    add("gold_last_after_other", f"{s}\nThat is {wrong} so far, and {gold} in all.", True)
    add("cents_amount", f"{s}\nThe answer is ${gold:,}.50.", False)
    add("cents_zero", f"{s}\nThe answer is ${gold:,}.00.", True)
    if 0 <= gold < 1000:
        add("comma_trap", f"{s}\nThe answer is 1,{gold:03d}.", False)
    add("hedge", f"{s}\nThe answer is {gold} or {gold + 1}.", False)
    lines = s.splitlines()
    if len(lines) >= 2:
        add("truncated", "\n".join(lines[:-1]) + "\n" + _cut_before_numbers(lines[-1]), False)
    return out


def _cut_before_numbers(line: str) -> str:
    """The last line cut off before its first number (a completion stopped mid-sentence)."""
    m = re.search(r"\d", line)
    cut = line[: m.start()] if m else line[: len(line) // 2]
    return cut.rstrip(" $=") or "So"


def build(rows: list[dict], per_row: int = 2, seed: int = SEED) -> list[dict]:
    """Per row: `per_row` styled items (alternately correct and wrong) plus, for every fourth row, the
    targeted controls. Deterministic for a given seed."""
    rng = random.Random(seed)
    names = sorted(STYLES)
    items = []
    for k, row in enumerate(rows):
        for j in range(per_row):
            items.append(item(row, rng.choice(names), correct=(j % 2 == 0), rng=rng))
        if k % 4 == 0:
            items.extend(controls(row, rng))
        if k % 8 == 0:
            items.append({"id": f"{row['id']}/bare", "style": "bare", "control": "", "answer": row["answer"],
                          "completion": row["solution"], "label": True})
    return items


if __name__ == "__main__":
    import os

    shared = Path(os.environ.get("REASONER_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")
    data = build(load_rows(shared))
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        for it in data:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    print(f"{len(data)} items, {sum(it['label'] for it in data)} correct")
