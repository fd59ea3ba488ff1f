"""Answer strings to a small tree: normalised leaves inside tuples, sets, lists, unions and matrices.

This is the cheap first tier. It does, with string operations only, what the MATH benchmark's `strip_string`
and Qwen2.5-Math's answer normaliser do (drop `\\left`/`\\right`, spacing, `\\dfrac`, degrees, dollar signs,
trailing units, thousands separators in a lone number, `\\frac12` shorthands), and then reads the *structure*
of the answer at the string level, before any parser sees it:

- `(a, b)` / `[a, b)` → an ordered `tuple` that keeps its brackets (a point and an interval look alike, so the
  brackets are part of the answer);
- `\\{a, b\\}` → an unordered `set`; a bare `a, b` (or `a and b`) → an unordered `list` ("enter all solutions");
- `A \\cup B` → an unordered `union`; `\\begin{pmatrix}…\\end{pmatrix}` → a `matrix` with its shape;
- `a \\pm b` → the list `a+b, a-b`;
- a leaf keeps its percent sign as a flag and an assignment `x = 5` as (lhs, value).

Reading structure here is what makes ordered tuples and percentages exact decisions instead of heuristics buried
in a symbolic comparison, and it leaves only scalar leaves for the expensive tiers.

Simplified on purpose: a comma between digits is a thousands separator only when the whole answer is one number
(`58,500`), or when written with LaTeX's explicit `{,}` / `,\\!` idioms; `1,234` as a two-element list cannot be
told apart from one thousand two hundred and thirty-four, and we read it as the number.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .delimiters import strip_math_delimiters

MAX_ITEMS = 100


class TooManyItems(ValueError):
    """The answer lists more items than any competition answer needs (a cheap bomb)."""


@dataclass(frozen=True)
class Leaf:
    text: str                 # the whole normalised leaf, relation included (`y=2x+3`)
    value: str                # what is compared: the right-hand side of an assignment, else `text`
    lhs: str | None = None    # `x` for `x = 5`
    percent: bool = False     # written with a percent sign (removed from `text` and `value`)
    is_text: bool = False     # a word answer (`\text{Evelyn}`, base-n numerals): compared as a string

    @property
    def is_relation(self) -> bool:
        return self.lhs is None and bool(_RELATION.search(self.text))


@dataclass(frozen=True)
class Group:
    kind: str                         # tuple | list | set | union | matrix
    items: tuple[Node, ...]
    brackets: str = ""                # tuple: opening and closing bracket, e.g. "(]"
    shape: tuple[int, int] = (0, 0)   # matrix rows, columns

    @property
    def ordered(self) -> bool:
        return self.kind in ("tuple", "matrix")


Node = Leaf | Group

_SIZE_CMDS = r"left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg"
_TEXT_CMDS = r"text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname"
_RELATION = re.compile(r"=|<|>|\\le|\\ge|\\ne|\\neq|\\leq|\\geq")
_ASSIGN = re.compile(r"^([a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?|\\[a-zA-Z]+)=(?!=)(.+)$")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_PERCENT_TAIL = re.compile(r"(?:\\%|%|\\text\{\s*percent\s*\}|percent)$")
_UNIT_TAIL = re.compile(r"\\(?:" + _TEXT_CMDS + r")\s*\{([^{}]*)\}\s*(?:\^\s*\{?\s*\d\s*\}?)?\s*$")
_UNIT_WORD = re.compile(r"[A-Za-z][A-Za-z./-]*(?:\^\{?[23]\}?)?")
_NOT_UNITS = frozenset(
    "or and not no nor but maybe possibly perhaps probably either else if than then plus minus times over "
    "wait actually is it its correct incorrect wrong right answer also instead rather approx approximately about "
    "around nearly almost exactly zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
    "hundred thousand million billion half third quarter".split()
)
_WORD_TEXT = re.compile(r"^\\(?:" + _TEXT_CMDS + r")\{\s*([A-Za-z][A-Za-z .'-]*)\s*\}$")
_BASE_NUMERAL = re.compile(r"^\d+_\{?\d+\}?$")
_CHOICE = re.compile(r"^\(?([A-Z])\)?$")
_MATRIX = re.compile(r"^\\begin\{([pbvBV]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}$", re.DOTALL)


def normalize_text(s: str) -> str:
    """String-level cleanup shared by gold and prediction; deterministic and linear-ish in length."""
    s = strip_math_delimiters(s.strip()).replace("\n", " ")
    s = re.sub(r"\\(?:displaystyle|textstyle|scriptstyle)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\(?:left|right)\.", "", s)
    s = re.sub(r"\\(?:" + _SIZE_CMDS + r")(?![a-zA-Z])\s*", "", s)
    s = re.sub(r"\{,\}", "", s)                      # 10{,}000
    s = re.sub(r",\\!\s*(?=\d{3}(?!\d))", "", s)       # 10,\!080
    s = re.sub(r"(?<!\\)\\!", "", s)
    s = re.sub(r"(?<!\\)\\[,;: ]|\\q?quad(?![a-zA-Z])|~", " ", s)
    s = re.sub(r"\\[dtc]frac(?![a-zA-Z])", r"\\frac", s)
    s = re.sub(r"\\[dt]binom(?![a-zA-Z])", r"\\binom", s)
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°|\\degree(?![a-zA-Z])", "", s)
    s = s.replace("\\$", "").replace("$", "")
    s = _strip_unit_tail(s)
    s = re.sub(r"\\text\{\s*(?:and|or)\s*\}", ",", s)
    s = re.sub(r"\s+(?:and|or)\s+", ",", s)
    if _THOUSANDS.fullmatch(s.strip().rstrip(".")):  # before spaces go: `58, 500` is a list, `58,500` a number
        s = s.replace(",", "")
    s = _collapse_spaces(s)
    s = _fix_shorthands(s)
    return s.rstrip(".").strip()


def _strip_unit_tail(s: str) -> str:
    """Drop a trailing `\\text{ cm}^2`-style unit when something precedes it; `\\text{ percent}` stays."""
    m = _UNIT_TAIL.search(s)
    if m and s[: m.start()].strip() and "percent" not in m.group(1) and is_unit(m.group(1)):
        return s[: m.start()].rstrip()
    return s


def is_unit(text: str) -> bool:
    """Whether trailing text reads as a unit (`cm`, `square feet`, `km/h`, `p.m.`), not as more of the answer.

    A unit is one to three words of letters (with `.`, `/`, `-`), no digits, no brackets or commas, and none of
    the words that turn a tail into a second answer or a retraction (`or`, `not`, `possibly`, number words):
    `5\\text{ or possibly 7}` and `12 \\quad \\text{(no, it is 13)}` keep their tails, and then do not match 5 or 12.
    """
    words = text.split()
    if not 1 <= len(words) <= 3 or not all(_UNIT_WORD.fullmatch(w) for w in words):
        return False
    return not any(w.lower().strip(".") in _NOT_UNITS for w in words)


def _collapse_spaces(s: str) -> str:
    """Remove spaces, except the one that separates a `\\command` from a following letter (`\\pi r`)."""
    s = re.sub(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])", lambda m: m.group(1) + "\x00", s)
    s = re.sub(r"\s+", "", s)
    return s.replace("\x00", " ")


def _fix_shorthands(s: str) -> str:
    """`\\frac12` → `\\frac{1}{2}`, `\\frac9{19}`, `\\frac{270}7`, `\\sqrt2` → braced arguments."""
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac(\{[^{}]*\})(\d)", r"\\frac\1{\2}", s)
    s = re.sub(r"\\sqrt(\d)", r"\\sqrt{\1}", s)
    s = re.sub(r"_\{(\d+)\}", r"_\1", s)
    return s


@lru_cache(maxsize=16384)
def parse_answer(s: str) -> Node:
    """Normalise and read the structure of one answer string (cached: golds repeat across a group)."""
    return _node(normalize_text(s))


def _node(s: str) -> Node:
    s = re.sub(r"^[a-zA-Z]\\in", "", s)
    parts = split_top(s, "\\cup")
    if len(parts) > 1:
        return Group("union", _items(parts))
    m = _MATRIX.match(s)
    if m:
        rows = [r for r in split_top(m.group(2), "\\\\") if r.strip()]
        cells = [split_top(r, "&") for r in rows]
        width = len(cells[0]) if cells else 0
        if cells and all(len(r) == width for r in cells):
            return Group("matrix", _items([c for r in cells for c in r]), shape=(len(cells), width))
    if s.startswith("\\{") and s.endswith("\\}") and _closes_at_end(s, 2):
        return Group("set", _items(split_top(s[2:-2], ","), splice=True))
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _closes_at_end(s, 1):
        items = split_top(s[1:-1], ",")
        if len(items) >= 2:
            return Group("tuple", _items(items), brackets=s[0] + s[-1])
    items = split_top(s, ",")
    if len(items) > 1:
        return Group("list", _items(items, splice=True))
    for sign in ("\\pm", "\\mp"):
        if s.count(sign) == 1:
            plus, minus = ("+", "-") if sign == "\\pm" else ("-", "+")
            return Group("list", (_leaf(s.replace(sign, plus)), _leaf(s.replace(sign, minus))))
    return _leaf(s)


def _items(parts: list[str], splice: bool = False) -> tuple[Node, ...]:
    if len(parts) > MAX_ITEMS:
        raise TooManyItems(f"{len(parts)} items (limit {MAX_ITEMS})")
    out: list[Node] = []
    for part in parts:
        node = _node(part.strip())
        if splice and isinstance(node, Group) and node.kind == "list":
            out.extend(node.items)  # `\{1\pm\sqrt5, -2\}` is a set of three
        else:
            out.append(node)
    return tuple(out)


def _leaf(s: str) -> Leaf:
    word = _WORD_TEXT.match(s)
    if word and not _CHOICE.match(word.group(1).strip()):
        return Leaf(text=word.group(1).strip().lower(), value=word.group(1).strip().lower(), is_text=True)
    s = re.sub(r"\\(?:" + _TEXT_CMDS + r")\{([^{}]*)\}", r"\1", s)
    if _BASE_NUMERAL.match(s):
        return Leaf(text=s, value=s, is_text=True)
    choice = _CHOICE.match(s)
    if choice:  # a multiple-choice letter: never a symbol (sympy would let `A` equal `C` up to renaming)
        return Leaf(text=choice.group(1), value=choice.group(1), is_text=True)
    percent = False
    m = _PERCENT_TAIL.search(s)
    if m and m.start() > 0:
        percent, s = True, s[: m.start()]
    s = s.lstrip("+") if not s.startswith("+-") else s
    assign = _ASSIGN.match(s)
    if assign and not _RELATION.search(assign.group(2).replace("=", "")):
        value = assign.group(2).split("=")[-1] if "=" in assign.group(2) else assign.group(2)
        return Leaf(text=s, value=value, lhs=assign.group(1), percent=percent)
    return Leaf(text=s, value=s, percent=percent)


def split_top(s: str, sep: str) -> list[str]:
    """Split at `sep` where no bracket of any kind (`{([` and `\\{`) is open."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    n = len(s)
    while i < n:
        ch = s[i]
        if depth == 0 and s.startswith(sep, i) and not (sep[0] == "\\" and _is_longer_command(s, i, sep)):
            parts.append(s[start:i])
            i += len(sep)
            start = i
            continue
        if ch == "\\":
            if i + 1 < n and s[i + 1] in "{}":
                depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        i += 1
    parts.append(s[start:])
    return parts if len(parts) > 1 else [s]


def _is_longer_command(s: str, i: int, sep: str) -> bool:
    """`\\cup` must not match the start of `\\cupcake`."""
    j = i + len(sep)
    return sep[-1].isalpha() and j < len(s) and s[j].isalpha()


def _closes_at_end(s: str, width: int) -> bool:
    """Whether the bracket opening at s[0] (of `width` characters) is closed only by the last character(s)."""
    depth = 0
    i = 0
    n = len(s)
    while i < n:
        ch = s[i]
        if ch == "\\" and i + 1 < n and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            if depth == 0 and i + 2 < n:
                return False
            i += 2
            continue
        if ch == "\\":
            i += 2
            continue
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
            if depth == 0 and i < n - 1:
                return False
        i += 1
    return depth == 0
