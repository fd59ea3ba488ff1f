"""Reading the final answer from prose: `#### 42`, "The answer is 42.", `**Answer:** 42`, `A: 42`, or the last
number of the final sentence.

GSM8K-style data, base models with few-shot prompts and most instruct models answer in plain text, not in an
`<answer>` tag or a `\\boxed{}`; lm-eval-harness ("flexible extract"), math-verify and open-r1 read those too.
The rules, tried in this order (each reads one value, so hedging earns nothing; the phrase rule reads "the
answer is 17 or 18" as a list, which matches neither):

1. `hash`: the last `#### <value>` line (GSM8K's own format). A markdown heading (`#### Step 2`, `#### 3. Cost`)
   is not an answer: the value must end the line, optionally followed by a short unit.
2. `phrase`: the last "the (final) answer is", "answer:", "**Answer:**" (markdown emphasis anywhere around it)
   or a line-initial `A:`; the value must follow at once (a few filler words such as "therefore" aside), on
   the same line or the next non-empty one. A last phrase with no value right after it ("the answer is that
   …") gives nothing, and the next rule decides.
3. `last_number`: the final sentence's last computation result (a value right after `=`: `2.5*6=15 minutes
   to go 6 times` reads 15), else its last value. Closing remarks without a number ("I hope it helps.") are
   skipped, up to three of them; a final fragment without a number and without closing punctuation is a
   truncated completion, and gives nothing.

A *value* is a number as prose writes it (`-3`, `1,234.50`, `$18`, `\\$18`, `18%`, `18 dollars`: currency signs
and thousands commas dropped, the unit ignored, a percent sign kept for the judge), an arithmetic run whose
result follows the last `=` (`9 * 2 = 18` reads 18), a bracketed tuple of numbers (`(3, 4)`), or a math span
(`$…$`, `\\(…\\)`, `\\[…\\]`, `$$…$$`, a `\\boxed{}`), of which the part after the last top-level `=` is the
answer; a formula without a digit counts only when it ends its sentence ("the correct graph is \\(A\\).").
A `$` is currency, not a math delimiter, when what it would enclose holds English words (`$18 and $20`) or
when a digit follows its partner (`$16 + $20`). `7:00` is the hour 7, `7:30` no value; digits glued to
letters (`x2`) are not values.

Only the prose a model means as its answer is read: after the last `</think>` when there is one (an unclosed
`<think>` is an unfinished thought and gives nothing), and before a line that starts inventing the next
few-shot turn (`Q:`, `Question:`) or an end-of-text token a server left in. Every step is linear in the
completion's length.
"""
from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

from .delimiters import last_boxed, matching_brace

HASH, PHRASE, LAST_NUMBER = "hash", "phrase", "last_number"
RULES = (HASH, PHRASE, LAST_NUMBER)
MAX_SKIPPED_REMARKS = 3
MAX_HASH_LINES = 20   # `####` lines looked at, from the end
MAX_SEGMENT = 2000    # characters read after a marker: longer answers are refused by the pre-filter anyway
_TAIL_CHARS = 4000  # the last-number rule reads the final sentences only

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_VALUE = (rf"(?P<sign>[-−]\s?)?(?P<cur>\\\$|\$|€|£)?\s?(?P<sign2>[-−])?(?P<num>{_NUM})"
          r"(?P<pct>\s?(?:\\%|%|percent\b))?")
_VALUE_RE = re.compile(_VALUE, re.ASCII)
_ANY_VALUE = re.sub(r"\(\?P<\w+>", "(?:", _VALUE)  # the same, without group names, to repeat in runs
_OP = r"\s*(?:[-−+*/×÷=]|\\times|\\cdot|\\div|(?<=\s)[xX](?=\s))\s*"
_RUN_RE = re.compile(rf"{_ANY_VALUE}(?:{_OP}(?:{_ANY_VALUE}))*", re.ASCII)
_TUPLE_RE = re.compile(rf"[(\[]\s*(?:{_ANY_VALUE})(?:\s*,\s*(?:{_ANY_VALUE}))+\s*[)\]]", re.ASCII)
_OP_TEXT = {"×": "\\times", "÷": "\\div", "x": "\\times", "X": "\\times", "−": "-", "=": "="}

_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "</s>")
_NEXT_TURN = re.compile(r"\n[ \t]*(?:Q|Question|Problem)[ \t]*:", re.IGNORECASE)
_HASH = re.compile(r"####[ \t]*")
_HASH_TAIL = re.compile(r"[ \t]*(?:[A-Za-z%][\w/.^-]*(?:[ \t]+[A-Za-z][\w/.^-]*){0,2})?[ \t]*[.!]?[ \t]*\**[ \t]*",
                        re.ASCII)
_EMPH = r"[*_`]*"
_PHRASE = re.compile(
    rf"(?:\b(?:the\s+)?(?:final\s+|correct\s+)?answer{_EMPH}\s*(?:(?:is|will\s+be|would\s+be|should\s+be)\b"
    rf"{_EMPH}\s*:?|:|=)|(?m:^[ \t>]*{_EMPH}(?-i:A){_EMPH}[ \t]*:))",
    re.IGNORECASE,
)
_FILLER = re.compile(r"(?:[\s*_`:=]|\\quad|\\qquad|\b(?:therefore|thus|then|just|simply|exactly|approximately"
                     r"|about|indeed|clearly|obviously|so)\b)*", re.IGNORECASE)
_CLOCK = re.compile(r":(\d\d)")
_SENTENCE_END = re.compile(r"[ \t*_]*(?:[.!?](?=\s|$)|\n|$)")
_ALTERNATIVE = re.compile(r"[ \t]*(?:,[ \t]*(?:or\b)?|\bor\b|/)[ \t]*", re.IGNORECASE)
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_COMMAND_ARG = re.compile(r"\\[A-Za-z]+(?:\s*\{[^{}]*\})?")
_BOUNDARY = re.compile(r"\n|[.!?](?=\s|$)")
_CLOSING = re.compile(r"[.!?)\]}$*_`'\"]\s*$")


@dataclass(frozen=True)
class Found:
    answer: str   # what the judge compares
    rule: str     # hash | phrase | last_number
    raw: str      # the text it was read from


def read_free_form(completion: str) -> Found | None:
    """The answer by the first rule that finds one (see the module docstring), or None."""
    body = prose(completion)
    if body is None:
        return None
    for reader in (read_hash, read_phrase, read_last_number):
        found = reader(body)
        if found is not None:
            return found
    return None


def prose(completion: str) -> str | None:
    """The part of a completion that states its answer; None when it ends inside an unclosed `<think>`."""
    close = completion.rfind("</think>")
    if close >= 0:
        completion = completion[close + len("</think>"):]
    elif "<think>" in completion:
        return None
    for token in _END_TOKENS:
        cut = completion.find(token)
        if cut >= 0:
            completion = completion[:cut]
    for m in _NEXT_TURN.finditer(completion):
        if completion[: m.start()].strip():
            return completion[: m.start()]
    return completion


# ------------------------------------------------------------------------------------------------- rules
def read_hash(text: str) -> Found | None:
    """The last `#### value` whose value ends its line (optionally with a unit); headings after it are
    skipped, up to `MAX_HASH_LINES` of them."""
    pos = len(text)
    for _ in range(MAX_HASH_LINES):
        start = text.rfind("####", 0, pos)
        if start < 0:
            return None
        pos = start
        after = _HASH.match(text, start).end()  # type: ignore[union-attr]
        line_end = _line_end(text, after)
        if line_end - after > MAX_SEGMENT:
            continue  # no answer line is that long
        value = read_value(text[after:line_end])
        if value is not None and _HASH_TAIL.fullmatch(text, after + value[1], line_end):
            return Found(value[0], HASH, text[start:after + value[1]])
    return None


def read_phrase(text: str) -> Found | None:
    """The value right after the last answer phrase, or None (also when that phrase has no value)."""
    last = None
    for m in _PHRASE.finditer(text):
        last = m
    if last is None:
        return None
    start = _FILLER.match(text, last.end()).end()  # type: ignore[union-attr]
    line_end = _line_end(text, start)
    if not text[start:line_end].strip(" \t*_`"):
        start = _next_line_start(text, line_end)
        line_end = _line_end(text, start)
    segment = text[start:min(line_end, start + MAX_SEGMENT)]
    value = read_value(segment)
    if value is None:
        return None
    answers, used = [value[0]], value[1]
    while (join := _ALTERNATIVE.match(segment, used)) is not None:  # `17 or 18`: a list, which matches neither
        more = read_value(segment[join.end():])
        if more is None:
            break
        answers.append(more[0])
        used = join.end() + more[1]
    return Found(", ".join(answers), PHRASE, text[last.start():start + used].strip())


def read_last_number(text: str) -> Found | None:
    """The last value of the final sentence (closing remarks skipped; a truncated fragment gives nothing)."""
    tail = _tail(text.rstrip())
    tokens = value_tokens(tail)
    starts = [t.start for t in tokens]
    masked = _mask(tail, tokens)
    ends = [m.end() for m in _BOUNDARY.finditer(masked)]
    end = len(tail)
    skipped = 0
    for start in [*reversed(ends), 0]:
        if start >= end:
            continue
        sentence = tokens[bisect_left(starts, start) : bisect_left(starts, end)]
        if sentence:  # the last computation's result, else the last value: `2.5*6=15 minutes to go 6 times`
            best = ([t for t in sentence if t.result] or sentence)[-1]
            return Found(best.answer, LAST_NUMBER, tail[best.start:best.end])
        piece = tail[start:end].strip()
        if piece and (end == len(tail) and not _CLOSING.search(piece) or skipped >= MAX_SKIPPED_REMARKS):
            return None  # cut off mid-sentence, or too far from the end to be the answer
        skipped += bool(piece)
        end = start
    return None


def read_sole_value(text: str) -> Found | None:
    """The value of a sentence that holds exactly one (`Janet makes $18 a day.`), else None."""
    tokens = value_tokens(text)
    if len(tokens) != 1:
        return None
    return Found(tokens[0].answer, LAST_NUMBER, text[tokens[0].start:tokens[0].end])


# ------------------------------------------------------------------------------------------------- values
@dataclass(frozen=True)
class Token:
    start: int
    end: int
    answer: str
    result: bool = False  # the result of a computation: it follows an `=` (`9 * 2 = $18`, `$x = 5$`)


def read_value(segment: str) -> tuple[str, int] | None:
    """(answer, characters consumed) for the value at the start of `segment` (emphasis skipped), or None."""
    lead = len(segment) - len(segment.lstrip(" \t*_`"))
    rest = segment[lead:]
    box = _box_at(rest, 0)
    if box is not None:
        return box[0], lead + box[1]
    span = _math_span_at(rest, 0)
    if span is not None:
        answer = math_value(span[2])
        return (answer, lead + span[1]) if answer else None
    run = _RUN_RE.match(rest)
    if run is None:
        return None
    return run_value(run.group(0)), lead + run.end()


def value_tokens(text: str) -> list[Token]:
    """Every value in `text`, left to right: formulas, bracketed tuples, plain-text numbers and runs."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        found = _token_at(text, i)
        if found is None:
            i += 1
            continue
        token, i = found
        if token is not None:
            tokens.append(token)
    return tokens


def _token_at(text: str, i: int) -> tuple[Token | None, int] | None:
    """The value starting at `i` and where to read on; (None, j) for text to skip whole (a formula that holds
    no value, a clock time); None when no value starts here."""
    ch = text[i]
    if ch in "$\\":
        found = _formula_token(text, i)
        if found is not None:
            return found
    if ch in "([":
        group = _TUPLE_RE.match(text, i)
        if group is not None:
            return Token(i, group.end(), tuple_value(group)), group.end()
    if ch.isdigit() or ch in "$\\.-−€£":
        return _number_token(text, i)
    return None


def _formula_token(text: str, i: int) -> tuple[Token | None, int] | None:
    """A box, or a math span that holds a number or ends its sentence (`the correct graph is \\(A\\).`)."""
    box = _box_at(text, i)
    if box is not None:
        return Token(i, i + box[1], box[0]), i + box[1]
    span = _math_span_at(text, i)
    if span is None:
        return None
    end = i + span[1]
    answer = math_value(span[2])
    if answer and (any(c.isdigit() for c in answer) or _SENTENCE_END.match(text, end)):
        return Token(i, end, answer, "=" in span[2] or _after_equals(text, i)), end
    return None, end


def _number_token(text: str, i: int) -> tuple[Token | None, int] | None:
    """A number or arithmetic run in prose (not glued to a word: `x2`, `COVID19`)."""
    run = _RUN_RE.match(text, i)
    if run is None or (i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_:")):
        return None
    clock = _CLOCK.match(text, run.end())
    if clock is not None and clock.group(1) != "00":  # `7:30` is a time, not the number 7
        return None, clock.end()
    raw = run.group(0)
    if "=" in raw:  # a computation: its result
        return Token(i, run.end(), run_value(raw), True), run.end()
    last = list(_VALUE_RE.finditer(raw))[-1]  # numbers without a result (`48+24`, `$16 + $20`): the last one
    return Token(i + last.start(), run.end(), run_value(last.group(0)), _after_equals(text, i)), run.end()


def run_value(run: str) -> str:
    """A plain-text number or arithmetic run as the judge reads it: the part after the last `=`, currency and
    thousands commas gone, `×`/`÷`/`x` as `\\times`/`\\div`, a percent sign kept (`18\\%`)."""
    parts: list[str] = []
    pos = 0
    for m in _VALUE_RE.finditer(run):
        op = run[pos:m.start()].strip()
        if op:
            parts.append(_OP_TEXT.get(op, op))
        sign = "-" if m.group("sign") or m.group("sign2") else ""
        parts.append(sign + m.group("num").replace(",", "") + ("\\%" if m.group("pct") else ""))
        pos = m.end()
    if "=" in parts:
        parts = parts[len(parts) - parts[::-1].index("=") :]
    return " ".join(parts)


def tuple_value(group: re.Match[str]) -> str:
    """`(3, 4)` / `[1, 2)` in prose: the numbers inside, brackets kept (a point or interval is one answer)."""
    text = group.group(0)
    items = [run_value(m.group(0)) for m in _VALUE_RE.finditer(text)]
    return text[0] + ", ".join(items) + text[-1]


def math_value(content: str) -> str:
    """What a math span states: its last box, else the part after its last top-level `=` (or `\\approx`)."""
    box = last_boxed(content)
    if box is not None:
        return box
    depth, cut = 0, -1
    for i, ch in enumerate(content):
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        elif depth == 0 and ch == "=" and content[i - 1 : i] not in ("<", ">", "!", "\\"):
            cut = i + 1
        elif depth == 0 and content.startswith("\\approx", i):
            cut = i + len("\\approx")
    value = content[cut:] if cut >= 0 else content
    return value.strip().rstrip(".,;").strip()


def _box_at(text: str, i: int) -> tuple[str, int] | None:
    for cmd in ("\\boxed", "\\fbox"):
        if text.startswith(cmd, i) and text[i + len(cmd) : i + len(cmd) + 1] == "{":
            end = matching_brace(text, i + len(cmd), i + len(cmd) + MAX_SEGMENT)
            if end < 0:
                return None
            content = text[i + len(cmd) + 1 : end].strip()
            return (content, end + 1 - i) if content else None
    return None


def _math_span_at(text: str, i: int) -> tuple[int, int, str] | None:
    """(start, length, content) of a math span opening at `i`; a `$` enclosing words is currency, not math."""
    for left, right in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")):
        if not text.startswith(left, i):
            continue
        if left == "$" and i > 0 and text[i - 1] == "\\":
            return None  # `\$`: an escaped dollar sign
        close = text.find(right, i + len(left))
        if left == "$":
            line = text.find("\n", i)
            if line >= 0 and 0 <= line < close:
                close = -1  # inline math does not cross lines
        if close < 0:
            return None
        content = text[i + len(left) : close]
        if left == "$" and (not content.strip() or _WORD.search(_COMMAND_ARG.sub(" ", content))
                            or text[close + 1 : close + 2].isdigit()):
            return None  # words inside, or `$16 + $20`: the second `$` opens an amount, so both are currency
        return i, close + len(right) - i, content
    return None


def _after_equals(text: str, i: int) -> bool:
    """Whether the value at `i` follows an `=` (units and words between would break a run: `= 2,160`)."""
    return text[max(0, i - 12) : i].rstrip(" \t*_").endswith("=")


def _mask(text: str, tokens: list[Token]) -> str:
    """`text` with every value token blanked, so that sentence boundaries are never found inside one."""
    if not tokens:
        return text
    pieces, pos = [], 0
    for t in tokens:
        pieces.append(text[pos:t.start])
        pieces.append("0" * (t.end - t.start))
        pos = t.end
    pieces.append(text[pos:])
    return "".join(pieces)


def _tail(text: str) -> str:
    if len(text) <= _TAIL_CHARS:
        return text
    cut = text.find("\n", len(text) - _TAIL_CHARS)
    return text[cut + 1 :] if cut >= 0 else text[-_TAIL_CHARS:]


def _line_end(text: str, pos: int) -> int:
    """The end of the line at `pos`, looking at most MAX_SEGMENT + 1 characters ahead (keeps loops linear)."""
    limit = min(len(text), pos + MAX_SEGMENT + 1)
    end = text.find("\n", pos, limit)
    return limit if end < 0 else end


def _next_line_start(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in "\n \t":
        pos += 1
    return pos
