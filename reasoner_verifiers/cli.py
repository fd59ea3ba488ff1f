"""`python -m reasoner_verifiers score IN.jsonl --out OUT.jsonl --kind math [--mode ...] [--deadline S] [--workers N]`.

Reads JSONL rows (`completion`, plus `answer` for math, `tests` for code), writes each row back with every
input field kept and `score` and `status` added (`details` too with `--details`). One bad row never costs the
others: a malformed row (bad JSON, not an object, a missing, null or mistyped field) is reported on stderr as
`FILE:LINE: reason` and left out; a row the verifier fails on is reported the same way (written with status
`error` when the verifier returned one, left out when it raised); the other rows are scored, and the exit
status is then 1. Rows are scored in chunks so the math worker pool runs them in parallel. A summary (rows,
status counts, mean score) goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from .math.extract import EXTRACT_MODES
from .registry import available, get_verifier
from .types import ERROR, Score, Verifier

REQUIRED = {"math": ("answer",), "code": ("tests",)}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        print("\n".join(available()))
        return 0
    try:
        verifier = get_verifier(args.kind, **_options(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with _open_in(args.input) as fin, _open_out(args.out) as fout:
            tally = _score_file(verifier, args, fin, fout)
    finally:
        verifier.close()
    n = sum(tally.counts.values())
    mean = tally.total / n if n else 0.0
    summary = ", ".join(f"{k}={v}" for k, v in sorted(tally.counts.items()))
    print(f"scored {n} rows ({summary}); mean score {mean:.4f}; {tally.bad} malformed or failed", file=sys.stderr)
    return 1 if tally.bad else 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reasoner_verifiers",
                                description="Score JSONL files with the verifiers.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="score a JSONL file")
    s.add_argument("input", help="input JSONL ('-' for stdin)")
    s.add_argument("--out", required=True, help="output JSONL ('-' for stdout)")
    s.add_argument("--kind", default="math", help="verifier name (see `python -m reasoner_verifiers list`)")
    s.add_argument("--mode", choices=("strict", "lenient"), help="math: comparison mode (default strict)")
    s.add_argument("--deadline", type=float, help="math: seconds per symbolic check (default 3); code: per run")
    s.add_argument("--workers", type=int, help="math/code: worker processes (default 2)")
    s.add_argument("--extract", choices=EXTRACT_MODES, help="math: where the answer is (default answer_tag)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other verifier option; VALUE is read as JSON when it parses, else as a string")
    s.add_argument("--batch-size", type=int, default=512, help="rows scored per call (default 512)")
    s.add_argument("--details", action="store_true", help="also write each score's details")
    sub.add_parser("list", help="list verifier names")
    return p


def _options(args: argparse.Namespace) -> dict[str, Any]:
    deadline_key = "timeout_s" if args.kind == "code" else "deadline_s"  # the code verifier's per-run limit
    named = {"mode": args.mode, deadline_key: args.deadline, "workers": args.workers, "extract": args.extract}
    options = {k: v for k, v in named.items() if v is not None}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


@dataclass
class _Tally:
    """What `_score_file` reports: malformed or failed rows, status counts, the sum of scores."""

    source: str
    bad: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    total: float = 0.0

    def report(self, lineno: int, reason: str) -> None:
        self.bad += 1
        print(f"{self.source}:{lineno}: {reason}", file=sys.stderr)


def _score_file(verifier: Verifier, args: argparse.Namespace, fin: TextIO, fout: TextIO) -> _Tally:
    tally = _Tally(args.input)
    gold_key = getattr(getattr(verifier, "options", None), "gold_key", "answer") if args.kind == "math" else None
    required = ("completion",) + ((gold_key,) if gold_key else REQUIRED.get(args.kind, ()))
    chunk: list[tuple[int, dict[str, Any]]] = []
    for lineno, row, error in _rows(fin, required, gold_key):
        if error:
            tally.report(lineno, error)
            continue
        chunk.append((lineno, row))
        if len(chunk) >= args.batch_size:
            _flush(verifier, chunk, fout, tally, args.details)
            chunk = []
    if chunk:
        _flush(verifier, chunk, fout, tally, args.details)
    return tally


def _rows(fin: TextIO, required: tuple[str, ...], gold_key: str | None) -> Iterator[tuple[int, dict[str, Any], str]]:
    for lineno, line in enumerate(fin, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield lineno, {}, f"invalid JSON ({exc.msg} at column {exc.colno})"
            continue
        if not isinstance(row, dict):
            yield lineno, {}, f"expected a JSON object, got {type(row).__name__}"
            continue
        missing = [k for k in required if k not in row]
        if missing:
            yield lineno, {}, f"missing field(s) {', '.join(missing)}"
        elif not isinstance(row["completion"], str):
            yield lineno, {}, f"'completion' must be a string, got {type(row['completion']).__name__}"
        elif gold_key is not None and not _is_gold(row[gold_key]):
            got = "null" if row[gold_key] is None else type(row[gold_key]).__name__
            yield lineno, {}, f"{gold_key!r} must be a string or a number, got {got}"
        else:
            yield lineno, row, ""


def _is_gold(value: Any) -> bool:
    """A JSON null gold would be graded as the string 'None' (and `\\boxed{None}` would pass): refuse it."""
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _flush(verifier: Verifier, chunk: list[tuple[int, dict[str, Any]]], fout: TextIO, tally: _Tally,
           details: bool) -> None:
    """Score a chunk and write it. If the batch call raises, each row is scored alone, so that one bad row
    is reported by its line and the others are still written."""
    rows = [row for _, row in chunk]
    try:
        scores: list[Score | None] = list(verifier.score_batch([r["completion"] for r in rows], rows))
    except Exception:
        scores = [_score_one(verifier, lineno, row, tally) for lineno, row in chunk]
    for (lineno, row), score in zip(chunk, scores):
        if score is None:
            continue
        if score.status == ERROR:
            tally.report(lineno, f"error while scoring: {score.details.get('reason', 'no reason given')}")
        out = dict(row, score=score.value, status=score.status)
        if details:
            out["details"] = dict(score.details)
        fout.write(json.dumps(out, ensure_ascii=False, default=str) + "\n")
        tally.counts[score.status] += 1
        tally.total += score.value
    fout.flush()


def _score_one(verifier: Verifier, lineno: int, row: dict[str, Any], tally: _Tally) -> Score | None:
    try:
        return verifier.score_batch([row["completion"]], [row])[0]
    except Exception as exc:
        tally.report(lineno, f"{type(exc).__name__}: {exc}")
        return None


class _Std:
    def __init__(self, stream: TextIO):
        self.stream = stream

    def __enter__(self) -> TextIO:
        return self.stream

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()


def _open_in(path: str):
    return _Std(sys.stdin) if path == "-" else open(path, encoding="utf-8")


def _open_out(path: str):
    return _Std(sys.stdout) if path == "-" else open(path, "w", encoding="utf-8")
