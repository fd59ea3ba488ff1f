#!/usr/bin/env python
"""Throughput of the `math` verifier against math-verify's own `parse` + `verify`, on the same pairs, one run.

Pairs (all from ../shared/data, or $REASONER_SHARED_DATA):
  - MATH-500 golds against three or four answers each, built deterministically from the gold: the gold itself
    in a sentence, an equivalent re-typesetting (`\\dfrac`, `\\left(`, spaces, `$…$`), a perturbed answer (an
    integer + 1, a tuple's items reversed, or `+1` appended) and, for single-expression golds, the algebraically
    equal `\\frac{2 \\cdot (gold)}{2}` (no string rule matches it: exact arithmetic or sympy must prove it);
  - the 800 labelled Qwen2.5-Math completions against their golds.
The peer is math-verify 0.9 used as TRL's accuracy reward uses it: `verify(parse(gold), parse(completion))`,
in this process, main thread, its default signal-based timeouts. Ours is `get_verifier("math", extract="boxed",
workers=N)`, scored with `score_batch` after the worker pool has started (start-up is reported separately).
Both start warm from the same expressions (`verifiers.math.worker_task.WARM_UP_PAIRS`: sympy's lazy imports
and ANTLR's prediction cache), and with empty answer caches.
Also printed: what one trainer step of 128 completions with integer golds costs, how often the two graders
disagree, per set, and which tier decided. The last line is the speed ratio.

    python scripts/bench_verifiers.py [--workers 2] [--deadline 3] [--symbolic-only]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def data_dir() -> Path:
    env = os.environ.get("REASONER_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def perturbations(gold: str) -> list[str]:
    same = f"Thus the final answer is $\\boxed{{{gold}}}$."
    retyped = gold.replace("\\frac", "\\dfrac").replace(",", ", ")
    retyped = re.sub(r"(?<!\\left)\(", r"\\left(", retyped)
    retyped = re.sub(r"(?<!\\right)\)", r"\\right)", retyped)
    equivalent = f"So we get $\\boxed{{ {retyped} }}$"
    if re.fullmatch(r"-?\d+", gold):
        wrong = str(int(gold) + 1)
    elif "," in gold:
        wrong = ",".join(reversed(gold.split(",")))
    else:
        wrong = gold + "+1"
    answers = [same, equivalent, f"The answer is \\boxed{{{wrong}}}."]
    if not re.search(r",|=|\\text|\\mbox|\\begin|\\cup|\\pm|\\circ|\\%|\\\$|\\in|_", gold):
        # algebraically equal, textually different: needs exact arithmetic or sympy, not string matching
        answers.append(f"Therefore $\\boxed{{\\frac{{2 \\cdot \\left({gold}\\right)}}{{2}}}}$.")
    return answers


def symbolic_pairs(base: Path) -> dict[str, list[tuple[str, str]]]:
    """The worst case for the cheap tiers: symbolic MATH-500 golds against `\\frac{2 \\cdot (gold)}{2}`, which
    only sympy can prove equal (no string, exact-number or screen decision is possible)."""
    from verifiers.math.exact import evaluate
    from verifiers.math.normalize import Leaf, parse_answer

    math500 = [json.loads(line) for line in open(base / "math" / "math500.jsonl", encoding="utf-8")]
    pairs = []
    for row in math500:
        gold = row["answer"]
        node = parse_answer(gold)
        answers = perturbations(gold)
        if len(answers) == 4 and isinstance(node, Leaf) and evaluate(node.value) is None:
            pairs.append((gold, answers[3]))
    return {"math500_symbolic": pairs}


def load_pairs(base: Path) -> dict[str, list[tuple[str, str]]]:
    math500 = [json.loads(line) for line in open(base / "math" / "math500.jsonl", encoding="utf-8")]
    labelled = [json.loads(line) for line in
                open(base / "math" / "labelled_qwen25math_math_cot_800.jsonl", encoding="utf-8")]
    return {
        "math500_perturbed": [(r["answer"], c) for r in math500 for c in perturbations(r["answer"])],
        "labelled_800": [(r["answer"], r["completion"]) for r in labelled],
    }


def warm_peer() -> None:
    """Give math-verify the same warm start our workers get (sympy's lazy imports, ANTLR's prediction cache)."""
    from math_verify import parse, verify

    from verifiers.math.worker_task import WARM_UP_PAIRS
    for gold, pred in WARM_UP_PAIRS:
        verify(parse(f"${gold}$"), parse(f"$\\boxed{{{pred}}}$"))


def run_peer(pairs: list[tuple[str, str]]) -> tuple[float, list[bool]]:
    from math_verify import parse, verify
    t0 = time.perf_counter()
    verdicts = [bool(verify(parse(f"${gold}$"), parse(completion))) for gold, completion in pairs]
    return time.perf_counter() - t0, verdicts


def run_ours(verifier, pairs: list[tuple[str, str]]) -> tuple[float, list[bool], dict[str, int], dict[str, int]]:
    from collections import Counter
    t0 = time.perf_counter()
    scores = verifier.score_batch([c for _, c in pairs], [{"answer": g} for g, _ in pairs])
    elapsed = time.perf_counter() - t0
    tiers = Counter(s.details.get("tier", s.status) for s in scores)
    return elapsed, [s.correct for s in scores], dict(Counter(s.status for s in scores)), dict(tiers)


def trainer_step(base: Path) -> None:
    """What one GRPO step costs the trainer: 128 R1-format completions, GSM8K integer golds, math + format +
    language in one RewardSpec. Prints milliseconds per batch and whether any worker process was needed."""
    from verifiers import RewardSpec

    rows = [json.loads(line) for line in open(base / "math" / "gsm8k_test.jsonl", encoding="utf-8")][:128]
    completions = [f"<think>{r['problem']}</think><answer>{r['answer'] if i % 2 else r['answer'] + '1'}</answer>"
                   for i, r in enumerate(rows)]
    with RewardSpec.from_config({"math": {}, "format": {"weight": 0.1}, "language": {"weight": 0.1}}) as spec:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            batch = spec.score_batch(completions, rows)
            times.append(time.perf_counter() - t0)
        pool = spec.verifiers["math"]._pool
    print(f"trainer step (128 completions, integer golds, math+format+language): "
          f"median {sorted(times)[2] * 1000:.1f} ms per batch; worker pool started: {pool is not None}; "
          f"math statuses {batch.status_counts()['math']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--deadline", type=float, default=3.0)
    ap.add_argument("--symbolic-only", action="store_true",
                    help="only pairs that need sympy (symbolic golds against an algebraically equal rewrite)")
    args = ap.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    base = data_dir()
    if not (base / "math" / "math500.jsonl").is_file():
        sys.exit(f"shared data not found under {base} (set REASONER_SHARED_DATA)")
    sets = symbolic_pairs(base) if args.symbolic_only else load_pairs(base)
    if not args.symbolic_only:
        trainer_step(base)

    from verifiers import get_verifier
    from verifiers.math.normalize import parse_answer

    t0 = time.perf_counter()
    ours = get_verifier("math", extract="boxed", workers=args.workers, deadline_s=args.deadline)
    ours.warm_up()
    print(f"worker pool start-up ({args.workers} workers): {time.perf_counter() - t0:.2f} s (once per process)")
    warm_peer()
    total_peer = total_ours = 0.0
    n_total = 0
    try:
        for name, pairs in sets.items():
            parse_answer.cache_clear()
            peer_s, peer_v = run_peer(pairs)
            ours_s, ours_v, statuses, tiers = run_ours(ours, pairs)
            differ = sum(a != b for a, b in zip(peer_v, ours_v))
            print(f"{name:18s} {len(pairs):5d} pairs | math-verify {peer_s:7.2f} s ({len(pairs) / peer_s:7.0f}/s)"
                  f" | verifiers {ours_s:6.2f} s ({len(pairs) / ours_s:7.0f}/s) | x{peer_s / ours_s:5.2f}"
                  f" | verdicts differ on {differ}\n{'':18s} ours: {statuses}; deciding tier: {tiers}")
            total_peer += peer_s
            total_ours += ours_s
            n_total += len(pairs)
    finally:
        ours.close()
    print(f"all {n_total} pairs: math-verify {total_peer:.2f} s, verifiers {total_ours:.2f} s "
          f"(cpu count {os.cpu_count()}, workers {args.workers}; shared machine: timings are noisy)")
    print(f"throughput ratio verifiers / math-verify: {total_peer / total_ours:.2f}x")


if __name__ == "__main__":
    main()
