"""Find the final answer in a completion, and say which rule read it.

Modes (option `extract`):
- `answer_tag` (default, the R1 template): the content of the last complete `<answer>…</answer>`; when that
  content holds a `\\boxed{…}`, the last boxed expression inside it; when it is a sentence, the value after an
  answer phrase ("The answer is 18.") or its only value ("Janet makes $18 a day."); else the whole content.
- `boxed`: the last `\\boxed{…}` (or `\\fbox{…}`) anywhere in the completion, as in the MATH benchmark's
  `last_boxed_only_string`: an unbalanced (truncated) last box means no answer, not an earlier box.
- `free_form`: prose only (`free_form.py`): `#### 42`, then an answer phrase ("the answer is", "Answer:",
  `**Answer:**`, `A:`), then the last number of the final sentence.
- `auto`: the first that finds an answer of: answer tag → last box → the `free_form` rules.

Which mode suits which use is in docs/verifiers.md. `extract()` returns the answer and the rule that read it
(`answer_tag`, `boxed`, `hash`, `phrase`, `last_number`): the verifier puts both in the score's details, so a
user sees what was graded. Everything here is linear in the completion's length; size limits on the
extracted answer are the pre-filter's job.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .delimiters import BOX_COMMANDS, last_boxed, matching_brace, strip_math_delimiters
from .free_form import MAX_SEGMENT, read_free_form, read_phrase, read_sole_value, read_value
from .free_form import RULES as FREE_FORM_RULES
from .normalize import is_unit

EXTRACT_MODES = ("answer_tag", "boxed", "auto", "free_form")
ANSWER_TAG, BOXED = "answer_tag", "boxed"
EXTRACT_RULES = (ANSWER_TAG, BOXED, *FREE_FORM_RULES)
_PROSE_WORDS = re.compile(r"(?<![\\A-Za-z{])[A-Za-z]{2,}\b")

__all__ = ["EXTRACT_MODES", "EXTRACT_RULES", "Extraction", "extract", "extract_answer", "answer_tag_content",
           "last_boxed", "matching_brace", "strip_math_delimiters"]


@dataclass(frozen=True)
class Extraction:
    answer: str   # the string the judge compares with the gold
    rule: str     # one of EXTRACT_RULES
    raw: str      # the text it was read from (the tag content, the box, the phrase and its value, ...)


def extract(completion: str, mode: str = "answer_tag", tag: str = "answer") -> Extraction | None:
    """The answer and the rule that found it, or None when the completion has none where `mode` looks."""
    if mode not in EXTRACT_MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; valid: {', '.join(EXTRACT_MODES)}")
    if mode in ("answer_tag", "auto"):
        content = answer_tag_content(completion, tag)
        if content is not None or mode == "answer_tag":
            return None if content is None else _inside_tag(content)
    if mode in ("boxed", "auto"):
        box = last_boxed(completion)
        if box is not None or mode == "boxed":
            return None if box is None else Extraction(box, BOXED, box)
        if any(cmd in completion for cmd in BOX_COMMANDS) and _ends_in_open_box(completion):
            return None  # the last box was cut off: truncated, no answer
    found = read_free_form(completion)
    return None if found is None else Extraction(found.answer, found.rule, found.raw)


def extract_answer(completion: str, mode: str = "answer_tag", tag: str = "answer") -> str | None:
    """The answer string only (see `extract`)."""
    found = extract(completion, mode, tag)
    return None if found is None else found.answer


def answer_tag_content(completion: str, tag: str = "answer") -> str | None:
    """Content of the last complete `<tag>…</tag>` pair."""
    close = completion.rfind(f"</{tag}>")
    if close < 0:
        return None
    open_ = completion.rfind(f"<{tag}>", 0, close)
    if open_ < 0:
        return None
    return completion[open_ + len(tag) + 2 : close]


def _inside_tag(content: str) -> Extraction | None:
    boxed = last_boxed(content)
    if boxed is not None:
        return Extraction(boxed, ANSWER_TAG, content.strip())
    if any(cmd in content for cmd in BOX_COMMANDS):
        return None  # a box was started but never closed: truncated, no answer
    text = strip_math_delimiters(content.strip())
    if not text:
        return None
    if len(text) <= MAX_SEGMENT:
        value = _value_with_unit(text)  # `445 dollars`, `$18`, `1,234`
        if value is None and is_sentence(text):  # "The answer is 18.", "Janet makes $18 a day."
            found = read_phrase(text) or read_sole_value(text)
            value = None if found is None else found.answer
        if value is not None:
            return Extraction(value, ANSWER_TAG, content.strip())
    return Extraction(text, ANSWER_TAG, content.strip())


def _value_with_unit(text: str) -> str | None:
    """A prose number and nothing but a unit after it (`445 dollars`, `$18`, `18%`); None otherwise."""
    value = read_value(text)
    if value is None:
        return None
    rest = text[value[1]:].strip().rstrip(".")
    return value[0] if not rest or is_unit(rest) else None


def is_sentence(text: str) -> bool:
    """Three or more words outside LaTeX commands: prose, not a formula or a one-word answer (`Evelyn`)."""
    return len(_PROSE_WORDS.findall(text)) >= 3


def _ends_in_open_box(text: str) -> bool:
    """Whether the last box command in `text` is never closed (the completion was cut off inside it)."""
    start = max(text.rfind(cmd) for cmd in BOX_COMMANDS)
    brace = text.find("{", start)
    return brace >= 0 and matching_brace(text, brace) < 0
