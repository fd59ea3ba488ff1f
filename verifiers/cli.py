"""`python -m verifiers score IN.jsonl --out OUT.jsonl --kind math [--mode ...] [--deadline S] [--workers N]`.

Reads JSONL rows (`completion`, plus `answer` for math, `tests` for code), writes each row back with every
input field kept and `score` and `status` added (`details` too with `--details`). A malformed row (bad JSON,
not an object, a missing or mistyped field) is reported on stderr as `FILE:LINE: reason`, left out of the
output, and the other rows are still scored; the exit status is then 1. Rows are scored in chunks so the math
worker pool runs them in parallel. A summary (rows, status counts, mean score) goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any, TextIO

from .registry import available, get_verifier
from .types import Verifier

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
            bad, counts, total = _score_file(verifier, args, fin, fout)
    finally:
        verifier.close()
    n = sum(counts.values())
    mean = total / n if n else 0.0
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"scored {n} rows ({summary}); mean score {mean:.4f}; {bad} malformed", file=sys.stderr)
    return 1 if bad else 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verifiers", description="Score JSONL files with the verifiers.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="score a JSONL file")
    s.add_argument("input", help="input JSONL ('-' for stdin)")
    s.add_argument("--out", required=True, help="output JSONL ('-' for stdout)")
    s.add_argument("--kind", default="math", help="verifier name (see `python -m verifiers list`)")
    s.add_argument("--mode", choices=("strict", "lenient"), help="math: comparison mode (default strict)")
    s.add_argument("--deadline", type=float, help="math: seconds per symbolic check (default 3); code: per run")
    s.add_argument("--workers", type=int, help="math/code: worker processes (default 2)")
    s.add_argument("--extract", choices=("answer_tag", "boxed", "auto"), help="math: where the answer is")
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


def _score_file(verifier: Verifier, args: argparse.Namespace, fin: TextIO, fout: TextIO):
    bad = 0
    counts: Counter[str] = Counter()
    total = 0.0
    required = ("completion",) + REQUIRED.get(args.kind, ())
    chunk: list[dict[str, Any]] = []
    for lineno, row, error in _rows(fin, required):
        if error:
            bad += 1
            print(f"{args.input}:{lineno}: {error}", file=sys.stderr)
            continue
        chunk.append(row)
        if len(chunk) >= args.batch_size:
            total += _flush(verifier, chunk, fout, counts, args.details)
            chunk = []
    if chunk:
        total += _flush(verifier, chunk, fout, counts, args.details)
    return bad, counts, total


def _rows(fin: TextIO, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any], str]]:
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
        else:
            yield lineno, row, ""


def _flush(verifier: Verifier, rows: list[dict[str, Any]], fout: TextIO, counts: Counter, details: bool) -> float:
    scores = verifier.score_batch([r["completion"] for r in rows], rows)
    total = 0.0
    for row, score in zip(rows, scores):
        out = dict(row, score=score.value, status=score.status)
        if details:
            out["details"] = dict(score.details)
        fout.write(json.dumps(out, ensure_ascii=False, default=str) + "\n")
        counts[score.status] += 1
        total += score.value
    fout.flush()
    return total


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
