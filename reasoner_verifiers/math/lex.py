"""The tokenizer the in-process tiers (`exact`, `screen`) share; each brings its own token pattern."""
from __future__ import annotations

import re


def tokenize(pattern: re.Pattern[str], text: str) -> list[tuple[str, str]] | None:
    """`[(group name, text), ...]` by repeated `pattern.match`; None when something does not match (or nothing
    is there). Every alternative of `pattern` is a named group; a match that consumes nothing is a failure."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = pattern.match(text, pos)
        if not m or m.end() == pos:
            return None
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens or None
