"""Command line: `python -m sandbox run IN.jsonl --out OUT.jsonl [--workers N] [--timeout S]`.

Input rows are `{"id": ..., "code": "...", "tests": {...}}` (see `sandbox.validate_tests`). Each output row is
the input row plus `status, passed, fraction, n_passed, n_total, duration_s, stdout, stderr, details`
(`--slim` drops `code` and `tests`). A malformed row gets an output row with `error` naming its line (and is
reported on stderr); the other rows still run and the exit status is 1. Rows are processed in chunks and
written in input order, so an interrupted run keeps every finished chunk.

`python -m sandbox layers` prints the protection layers active on this host as JSON.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from .config import Limits, validate_tests
from .core import Sandbox
from .layers import layer_summary


def _rows(path: str) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed row or None, error or None) for every non-blank line."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield n, None, f"line {n}: invalid JSON ({exc.msg} at column {exc.colno})"
                continue
            yield n, row, _row_error(n, row)


def _row_error(n: int, row: Any) -> str | None:
    if not isinstance(row, dict):
        return f"line {n}: a row must be a JSON object"
    for key in ("id", "code", "tests"):
        if key not in row:
            return f"line {n}: missing key {key!r}"
    if not isinstance(row["code"], str):
        return f"line {n}: 'code' must be a string"
    try:
        validate_tests(row["tests"])
    except ValueError as exc:
        return f"line {n}: {exc}"
    return None


def _run(args: argparse.Namespace) -> int:
    limits = Limits(timeout_s=args.timeout, memory_mb=args.memory_mb)
    counts: collections.Counter = collections.Counter()
    bad = 0
    t0 = time.monotonic()
    with Sandbox(workers=args.workers, limits=limits, isolation=args.isolation) as sb, \
            open(args.out, "w", encoding="utf-8") as out:
        print(f"sandbox: {layer_summary(sb.layers)}", file=sys.stderr)
        chunk: list[tuple[int, Any, str | None]] = []

        def flush() -> None:
            runnable = [(row["code"], row["tests"]) for _, row, err in chunk if err is None]
            results = iter(sb.run_batch(runnable))
            for n, row, err in chunk:
                if err is not None:
                    rid = row.get("id") if isinstance(row, dict) else None
                    out.write(json.dumps({"id": rid, "line": n, "error": err}) + "\n")
                    continue
                res = next(results).to_dict()
                counts[res["status"]] += 1
                base = {k: v for k, v in row.items() if not (args.slim and k in ("code", "tests"))}
                out.write(json.dumps({**base, **res}) + "\n")
            out.flush()
            chunk.clear()

        for item in _rows(args.input):
            if item[2] is not None:
                bad += 1
                print(f"{args.input}: {item[2]}", file=sys.stderr)
            chunk.append(item)
            if len(chunk) >= args.chunk:
                flush()
        flush()
    total = sum(counts.values())
    print(f"sandbox: {total} rows in {time.monotonic() - t0:.1f}s: {dict(counts)}"
          + (f"; {bad} malformed" if bad else ""), file=sys.stderr)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run programs from a JSONL file against their tests")
    run.add_argument("input", help="JSONL rows {id, code, tests}")
    run.add_argument("--out", required=True, help="JSONL output path")
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--timeout", type=float, default=5.0, help="seconds per execution (per case for stdio)")
    run.add_argument("--memory-mb", type=int, default=512)
    run.add_argument("--isolation", default="auto", choices=["auto", "bwrap", "unshare", "none"])
    run.add_argument("--chunk", type=int, default=256, help="rows per batch (written when done)")
    run.add_argument("--slim", action="store_true", help="omit code and tests from the output rows")
    sub.add_parser("layers", help="print the protection layers active on this host")
    args = parser.parse_args(argv)
    if args.command == "layers":
        with Sandbox(workers=1) as sb:
            print(json.dumps(sb.layers, indent=2))
        return 0
    try:
        return _run(args)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
