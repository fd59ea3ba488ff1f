"""Brace matching, the last `\\boxed{…}`, and math delimiters: the string helpers every extraction rule shares.

Each is one forward scan or an `rfind`: linear in the completion's length (docs/verifiers.md times a megabyte).
"""
from __future__ import annotations

BOX_COMMANDS = ("\\boxed", "\\fbox")


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{…}` / `\\fbox{…}` (or `\\boxed x`), None if absent or unbalanced."""
    start, command = -1, ""
    for cmd in BOX_COMMANDS:
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


def matching_brace(text: str, open_pos: int, end: int | None = None) -> int:
    """Index of the `}` closing the `{` at `open_pos`, skipping escaped `\\{` `\\}`; -1 when unbalanced (or
    not closed before `end`)."""
    depth = 0
    i = open_pos
    n = len(text) if end is None else min(end, len(text))
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
