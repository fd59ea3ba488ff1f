"""Find the final answer in a completion: the R1 `<answer>…</answer>` tag, the last `\\boxed{…}`, or either.

Modes (option `extract`):
- `answer_tag` (default, the R1 template): the content of the last complete `<answer>…</answer>`; when that
  content holds a `\\boxed{…}`, the last boxed expression inside it is the answer.
- `boxed`: the last `\\boxed{…}` (or `\\fbox{…}`) anywhere in the completion, as in the MATH benchmark's
  `last_boxed_only_string`: an unbalanced (truncated) last box means no answer, not an earlier box.
- `auto`: `answer_tag` when the completion has a complete answer tag, else `boxed`.

Everything here is linear in the completion's length (`rfind` plus one forward brace scan), so a megabyte
completion costs milliseconds; size limits on the extracted answer are the pre-filter's job.
"""
from __future__ import annotations

EXTRACT_MODES = ("answer_tag", "boxed", "auto")
_BOX_COMMANDS = ("\\boxed", "\\fbox")


def extract_answer(completion: str, mode: str = "answer_tag", tag: str = "answer") -> str | None:
    """The answer string, or None when the completion has none in the requested place."""
    if mode == "answer_tag":
        content = answer_tag_content(completion, tag)
        return None if content is None else _inside_tag(content)
    if mode == "boxed":
        return last_boxed(completion)
    if mode == "auto":
        content = answer_tag_content(completion, tag)
        return _inside_tag(content) if content is not None else last_boxed(completion)
    raise ValueError(f"unknown extraction mode {mode!r}; valid: {', '.join(EXTRACT_MODES)}")


def answer_tag_content(completion: str, tag: str = "answer") -> str | None:
    """Content of the last complete `<tag>…</tag>` pair."""
    close = completion.rfind(f"</{tag}>")
    if close < 0:
        return None
    open_ = completion.rfind(f"<{tag}>", 0, close)
    if open_ < 0:
        return None
    return completion[open_ + len(tag) + 2 : close]


def _inside_tag(content: str) -> str | None:
    boxed = last_boxed(content)
    if boxed is not None:
        return boxed
    if any(cmd in content for cmd in _BOX_COMMANDS):
        return None  # a box was started but never closed: truncated, no answer
    text = strip_math_delimiters(content.strip())
    return text if text else None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{…}` / `\\fbox{…}` (or `\\boxed x`), None if absent or unbalanced."""
    start, command = -1, ""
    for cmd in _BOX_COMMANDS:
        pos = text.rfind(cmd)
        if pos > start:
            start, command = pos, cmd
    if start < 0:
        return None
    i = start + len(command)
    if i < len(text) and text[i] == " ":  # `\boxed 5`: the argument runs to the next space or `$`
        j = i + 1
        while j < len(text) and text[j] not in " $\n":
            j += 1
        arg = text[i + 1 : j].strip()
        return arg or None
    if i >= len(text) or text[i] != "{":
        return None
    end = matching_brace(text, i)
    if end < 0:
        return None
    return text[i + 1 : end].strip() or None


def matching_brace(text: str, open_pos: int) -> int:
    """Index of the `}` closing the `{` at `open_pos`, skipping escaped `\\{` `\\}`; -1 when unbalanced."""
    depth = 0
    i = open_pos
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def strip_math_delimiters(text: str) -> str:
    """Remove one layer of `$…$`, `$$…$$`, `\\(…\\)`, `\\[…\\]` around the whole string."""
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
            inner = text[len(left) : len(text) - len(right)]
            if left.startswith("$") and "$" in inner:  # `$a$ and $b$` is two formulas, not one
                return text
            return inner.strip()
    return text
