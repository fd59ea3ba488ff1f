#!/usr/bin/env python
"""Executions per second: `sandbox` against a harness built the way openai/human-eval's is, in one run.

    python scripts/bench_sandbox.py [--workers 2] [--rounds 3] [--stdio-chunk 16]

The peer ("human-eval style") is our re-implementation of human-eval's `check_correctness`: per sample a
`multiprocessing.Manager` (a server process) plus a `multiprocessing.Process` that applies the memory
`reliability_guard`, `exec`s prompt + completion + test + `check(entry_point)` in its own interpreter, and
reports through the manager's list; samples run on a thread pool of `--workers` threads, as
`evaluate_functional_correctness` does. For stdin/stdout the same harness `exec`s the program with
`sys.stdin`/`sys.stdout` swapped for in-memory buffers, and a second reference starts a fresh `python3 -I`
per test case (`subprocess.run`). Every harness runs the same programs in the same process, rounds
alternate the order, and each harness's best round is reported; all must pass every reference solution.
`sandbox` is started before timing (its pool is meant to live for a whole training run). It sends a program's
stdin/stdout cases to a worker in chunks of up to `--stdio-chunk` (each case still a fresh process); 74 of the
78 sample cases belong to one program, so `--stdio-chunk 1` shows the one-request-per-case rate.

Prints: HumanEval (164 canonical solutions) executions/s for both, then stdin/stdout test cases/s
(CodeContests samples), the stdin/stdout ratio, and last the HumanEval ratio.
"""
from __future__ import annotations

import argparse
import contextlib
import faulthandler
import gzip
import io
import json
import multiprocessing
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox import Limits, Sandbox, specs  # noqa: E402
from sandbox.compare import compare_output  # noqa: E402


# --------------------------------------------------------------------------------- the human-eval peer
class TimeoutException(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    def handler(signum, frame):
        raise TimeoutException("Timed out!")
    signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.signal(signal.SIGALRM, handler)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def reliability_guard(max_bytes: int) -> None:
    """The parts of human-eval's guard that cost time: rlimits and disabling destructive functions."""
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    resource.setrlimit(resource.RLIMIT_DATA, (max_bytes, max_bytes))
    faulthandler.disable()
    import builtins
    import shutil
    builtins.exit = builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
                 "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
                 "chmod", "chown", "chroot", "lchown", "getcwd", "chdir"):
        setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None


def _unsafe_execute(program: str, stdin: str | None, timeout: float, result) -> None:
    import shutil
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)
        rmtree, rmdir, chdir = shutil.rmtree, os.rmdir, os.chdir      # restored for the clean-up, as in human-eval
        reliability_guard(1 << 30)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                old_stdin = sys.stdin
                sys.stdin = io.StringIO(stdin or "")
                try:
                    with time_limit(timeout):
                        exec(program, {"__name__": "__main__"} if stdin is not None else {})
                finally:
                    sys.stdin = old_stdin
            result.append("passed" if stdin is None else "out:" + out.getvalue())
        except TimeoutException:
            result.append("timed out")
        except BaseException as exc:
            result.append(f"failed: {exc}")
        shutil.rmtree, os.rmdir, os.chdir = rmtree, rmdir, chdir
        os.chdir("/")


def check_correctness(program: str, timeout: float, stdin: str | None = None) -> str:
    manager = multiprocessing.Manager()
    result = manager.list()
    p = multiprocessing.Process(target=_unsafe_execute, args=(program, stdin, timeout, result))
    p.start()
    p.join(timeout=timeout + 1)
    if p.is_alive():
        p.kill()
    out = result[0] if result else "timed out"
    manager.shutdown()
    return out


# ------------------------------------------------------------------------------------------- harnesses
def humaneval_peer(problems: list[dict], workers: int) -> int:
    programs = [p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})"
                for p in problems]
    with ThreadPoolExecutor(workers) as pool:
        return sum(r == "passed" for r in pool.map(lambda prog: check_correctness(prog, 3.0), programs))


def humaneval_sandbox(sb: Sandbox, problems: list[dict]) -> int:
    return sum(r.passed for r in sb.run_batch([specs.humaneval(p, p["canonical_solution"]) for p in problems]))


def _cases(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [(r["reference_solution"], i, o) for r in rows for i, o in zip(r["tests"]["inputs"], r["tests"]["outputs"])]


def stdio_peer(rows: list[dict], workers: int) -> int:
    def one(case):
        code, inp, want = case
        got = check_correctness(code, 3.0, stdin=inp)
        return got.startswith("out:") and compare_output(got[4:], want)[0]
    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(one, _cases(rows)))


def stdio_fresh_python(rows: list[dict], workers: int) -> int:
    def one(case):
        code, inp, want = case
        try:
            proc = subprocess.run([sys.executable, "-I", "-c", code], input=inp, capture_output=True, text=True,
                                  timeout=3.0)
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0 and compare_output(proc.stdout, want)[0]
    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(one, _cases(rows)))


def stdio_sandbox(sb: Sandbox, rows: list[dict]) -> int:
    items = [specs.stdio(r["tests"]["inputs"], r["tests"]["outputs"], r["reference_solution"]) for r in rows]
    return sum(r.n_passed for r in sb.run_batch(items))


def best_rate(name: str, fn, n: int, rounds: int, expect: int) -> float:
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        ok = fn()
        dt = time.perf_counter() - t0
        if ok != expect:
            raise SystemExit(f"{name}: {ok}/{expect} passed -- the harness is broken, not comparable")
        best = max(best, n / dt)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stdio-chunk", type=int, default=16,
                    help="Sandbox(stdio_chunk=...): stdin/stdout cases per request; 1 = one request per case")
    ap.add_argument("--data", default=os.environ.get("REASONER_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    args = ap.parse_args()
    code_dir = Path(args.data) / "code"
    with gzip.open(code_dir / "HumanEval.jsonl.gz", "rt") as f:
        problems = [json.loads(line) for line in f]
    rows = [json.loads(line) for line in (code_dir / "cp_stdio_sample.jsonl").open()]
    n_cases = sum(len(r["tests"]["inputs"]) for r in rows)
    print(f"host: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}; "
          f"workers={args.workers}, rounds={args.rounds} (best round kept; other jobs on the host add noise)")
    with Sandbox(workers=args.workers, limits=Limits(timeout_s=3.0), stdio_chunk=args.stdio_chunk) as sb:
        from sandbox import layer_summary
        print(f"sandbox: {layer_summary(sb.layers)}; stdio_chunk={sb.stdio_chunk}")
        rates: dict[str, float] = {}
        for r in range(args.rounds):   # alternate which harness goes first
            order = ["peer", "sandbox"] if r % 2 == 0 else ["sandbox", "peer"]
            for who in order:
                fn = (lambda: humaneval_peer(problems, args.workers)) if who == "peer" else \
                     (lambda: humaneval_sandbox(sb, problems))
                rates[who] = max(rates.get(who, 0.0), best_rate(who, fn, len(problems), 1, len(problems)))
        io_rates: dict[str, float] = {}
        for r in range(args.rounds):
            for who, fn in (("peer", lambda: stdio_peer(rows, args.workers)),
                            ("python3", lambda: stdio_fresh_python(rows, args.workers)),
                            ("sandbox", lambda: stdio_sandbox(sb, rows)))[::1 if r % 2 == 0 else -1]:
                io_rates[who] = max(io_rates.get(who, 0.0), best_rate(who, fn, n_cases, 1, n_cases))
    print(f"HumanEval canonical ({len(problems)} programs): human-eval style {rates['peer']:.1f} exec/s, "
          f"sandbox {rates['sandbox']:.1f} exec/s")
    print(f"stdin/stdout ({n_cases} cases): human-eval style {io_rates['peer']:.1f} cases/s, fresh python3 "
          f"{io_rates['python3']:.1f} cases/s, sandbox {io_rates['sandbox']:.1f} cases/s")
    print(f"stdin/stdout ratio sandbox / fresh python3: {io_rates['sandbox'] / io_rates['python3']:.2f}x")
    print(f"stdin/stdout ratio sandbox / human-eval style: {io_rates['sandbox'] / io_rates['peer']:.2f}x")
    print(f"HumanEval ratio sandbox / human-eval style: {rates['sandbox'] / rates['peer']:.2f}x")


if __name__ == "__main__":
    main()
