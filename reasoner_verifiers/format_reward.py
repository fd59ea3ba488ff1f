"""Format reward for the R1 template: `<think>…</think><answer>…</answer>`, each tag once, in order.

Binary (`format`): 1.0 when every check passes. Partial credit (`format_partial`, or `partial=True`): the
fraction of the checks that pass, so a policy that gets the tags half right is rewarded half; the failed
checks are listed in `details` either way.

Checks: each of the four tags appears exactly once; they appear in the order think, /think, answer, /answer;
nothing but whitespace sits outside the two blocks; neither block is empty. With `think_prefilled=True` (the
prompt already ends with `<think>`, as in R1-Zero setups that prefill it) the completion must *not* contain
`<think>` and its text before `</think>` is the thought.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import types as T
from .types import Score, Verifier


@dataclass(frozen=True)
class FormatOptions:
    think_tag: str = "think"
    answer_tag: str = "answer"
    think_prefilled: bool = False
    partial: bool = False
    require_nonempty: bool = True


class FormatVerifier(Verifier):
    name = "format"

    def __init__(self, options: FormatOptions | None = None):
        self.options = options or FormatOptions()

    def score(self, completion: str, example: Mapping[str, Any]) -> Score:
        checks = format_checks(completion or "", self.options)
        failed = [name for name, ok in checks.items() if not ok]
        if not failed:
            return Score(1.0, T.CORRECT, {})
        value = (len(checks) - len(failed)) / len(checks) if self.options.partial else 0.0
        return Score(value, T.WRONG, {"failed": failed})


def format_checks(text: str, o: FormatOptions) -> dict[str, bool]:
    tags = {
        "think_open": f"<{o.think_tag}>",
        "think_close": f"</{o.think_tag}>",
        "answer_open": f"<{o.answer_tag}>",
        "answer_close": f"</{o.answer_tag}>",
    }
    counts = {name: text.count(tag) for name, tag in tags.items()}
    checks: dict[str, bool] = {}
    for name, n in counts.items():
        expected = 0 if (o.think_prefilled and name == "think_open") else 1
        checks[f"one_{name}"] = n == expected
    positions = {name: text.find(tag) for name, tag in tags.items()}
    if o.think_prefilled:
        positions["think_open"] = -len(tags["think_open"])  # virtually just before the completion starts
    order = [positions[k] for k in ("think_open", "think_close", "answer_open", "answer_close")]
    in_order = all(p is not None for p in order) and all(
        order[i] < order[i + 1] for i in range(3)) and min(order[1:]) >= 0 and (o.think_prefilled or order[0] >= 0)
    checks["in_order"] = in_order
    if in_order:
        t_open, t_close, a_open, a_close = order
        before = "" if o.think_prefilled else text[:t_open]
        between = text[t_close + len(tags["think_close"]) : a_open]
        after = text[a_close + len(tags["answer_close"]) :]
        checks["nothing_outside"] = not (before.strip() or between.strip() or after.strip())
        if o.require_nonempty:
            think = text[max(0, t_open + len(tags["think_open"])) : t_close]
            answer = text[a_open + len(tags["answer_open"]) : a_close]
            checks["nonempty"] = bool(think.strip()) and bool(answer.strip())
    else:
        checks["nothing_outside"] = False
        if o.require_nonempty:
            checks["nonempty"] = False
    return checks
