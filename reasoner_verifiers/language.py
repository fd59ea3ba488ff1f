"""Language-consistency reward (DeepSeek-R1): the share of the thought's words written in the target language.

R1 adds "the proportion of target language words in the CoT" to the reward to stop language mixing. We measure
it by Unicode script, which is exact for the languages that differ by script (English vs Chinese, Japanese,
Korean, Russian, Arabic, Hindi, Greek, Hebrew, Thai) and is cheap:

- a *word* is a run of Latin letters (2+ letters: one-letter tokens are variables like `x`, not words), a run
  of Cyrillic / Greek / Arabic / Hebrew / Devanagari / Hangul / Thai letters, or a single Han, Hiragana or
  Katakana character (Chinese and Japanese are not written with spaces; one character per word is the usual
  convention for counting them, and it weighs a Chinese sentence a little above its English translation);
- mathematics is not language: `$…$`, `\\(…\\)`, `\\[…\\]` spans and `\\commands` are removed first;
- target `en` means "Latin script": French or German thoughts would count as English. A per-word language
  detector cannot do better on two-letter tokens, and the detectors that ship their models in a wheel
  (langid, lingua) add model files and per-call cost for a distinction this reward does not need.

The target comes from the example's `language` field when present, else from the `target` option.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import types as T
from .extract_tags import think_content
from .types import Score, Verifier

# script name -> character class (without brackets)
_SCRIPTS = {
    "latin": "A-Za-z\u00c0-\u00ff\u0100-\u024f",
    "han": "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff",
    "kana": "\u3040-\u309f\u30a0-\u30ff",
    "hangul": "\uac00-\ud7af\u1100-\u11ff",
    "cyrillic": "\u0400-\u04ff",
    "greek": "\u0370-\u03ff",
    "arabic": "\u0600-\u06ff",
    "hebrew": "\u0590-\u05ff",
    "devanagari": "\u0900-\u097f",
    "thai": "\u0e00-\u0e7f",
}
LANGUAGE_SCRIPTS = {
    "en": {"latin"}, "zh": {"han"}, "ja": {"kana", "han"}, "ko": {"hangul"}, "ru": {"cyrillic"},
    "ar": {"arabic"}, "hi": {"devanagari"}, "el": {"greek"}, "he": {"hebrew"}, "th": {"thai"},
}
_PER_CHAR = ("han", "kana")
_WORD = re.compile("|".join(
    f"(?P<{name}>[{cls}])" if name in _PER_CHAR else
    (f"(?P<{name}>[{cls}]{{2,}})" if name == "latin" else f"(?P<{name}>[{cls}]+)")
    for name, cls in _SCRIPTS.items()
))
_COMMAND = re.compile(r"\\[a-zA-Z]+")
_OPENER = re.compile(r"[$\\]")  # where a span or a command can start
_PAIRS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


@dataclass(frozen=True)
class LanguageOptions:
    target: str = "en"
    example_key: str = "language"
    scope: str = "think"              # think | completion
    think_tag: str = "think"
    think_prefilled: bool = False

    def validate(self, owner: str) -> None:
        if self.target not in LANGUAGE_SCRIPTS:
            raise ValueError(f"{owner}: unknown target {self.target!r}; valid: {', '.join(sorted(LANGUAGE_SCRIPTS))}")
        if self.scope not in ("think", "completion"):
            raise ValueError(f"{owner}: scope must be 'think' or 'completion', got {self.scope!r}")


def strip_math(text: str) -> str:
    """`text` with `$$…$$`, `$…$`, `\\(…\\)`, `\\[…\\]` spans and `\\commands` replaced by a space each.

    One left-to-right pass: at each opener the first matching closer is found with `str.find`, and a closer
    found absent is remembered as absent for the rest of the text, so the cost is linear in the length. The
    regex this replaces (`\\$\\$.*?\\$\\$|…`, lazy) rescanned to the end at every unclosed `\\(`: quadratic
    (measured before and after: docs/verifiers.md). The spans found are the same (test_vf_hardening.py).
    """
    out: list[str] = []
    nxt: dict[str, int] = {}  # closer -> the position of its next occurrence at or after the last search
    keep = 0
    m = _OPENER.search(text)
    while m is not None:
        i = m.start()
        end = _span_end(text, i, nxt)
        if end < 0:
            m = _OPENER.search(text, i + 1)
            continue
        out.append(text[keep:i])
        out.append(" ")
        keep = end
        m = _OPENER.search(text, end)
    out.append(text[keep:])
    return "".join(out)


def _span_end(text: str, i: int, nxt: dict[str, int]) -> int:
    """End of the math span or command starting at `i`, or -1 (the old regex's alternatives, in order)."""
    ch = text[i]
    if ch == "$" or (ch == "\\" and text[i + 1 : i + 2] in ("(", "[")):
        for left, right in _PAIRS:
            if text.startswith(left, i):
                close = _find(text, right, i + len(left), nxt)
                if close >= 0:
                    return close + len(right)
        return -1
    if ch == "\\":
        m = _COMMAND.match(text, i)
        return m.end() if m else -1
    return -1


def _find(text: str, needle: str, start: int, nxt: dict[str, int]) -> int:
    """`text.find(needle, start)`, remembering the answer: searches only ever move forward, so each closer's
    occurrences are scanned once in all (and a closer not found stays not found)."""
    known = nxt.get(needle)
    if known is not None and (known < 0 or known >= start):
        return known
    found = text.find(needle, start)
    nxt[needle] = found
    return found


def word_counts(text: str) -> dict[str, int]:
    """Words per script in `text`, mathematics removed."""
    counts: dict[str, int] = {}
    for m in _WORD.finditer(strip_math(text)):
        script = m.lastgroup or ""
        counts[script] = counts.get(script, 0) + 1
    return counts


def target_share(text: str, target: str) -> tuple[float, int]:
    """(share of words in the target language's scripts, total words)."""
    counts = word_counts(text)
    total = sum(counts.values())
    if total == 0:
        return 0.0, 0
    hits = sum(n for script, n in counts.items() if script in LANGUAGE_SCRIPTS[target])
    return hits / total, total


class LanguageVerifier(Verifier):
    name = "language"

    def __init__(self, options: LanguageOptions | None = None):
        self.options = options or LanguageOptions()

    def score(self, completion: str, example: Mapping[str, Any]) -> Score:
        target = example.get(self.options.example_key) or self.options.target
        if target not in LANGUAGE_SCRIPTS:
            raise ValueError(f"language verifier: example language {target!r} is not one of "
                             f"{', '.join(sorted(LANGUAGE_SCRIPTS))}")
        completion = completion or ""
        if self.options.scope == "think":
            text = think_content(completion, self.options.think_tag, self.options.think_prefilled)
            if text is None:
                return Score(0.0, T.NO_ANSWER, {"target": target, "reason": "no think block"})
        else:
            text = completion
        share, words = target_share(text, target)
        if words == 0:
            return Score(0.0, T.NO_ANSWER, {"target": target, "reason": "no words"})
        return Score(share, T.SCORED, {"target": target, "words": words})
