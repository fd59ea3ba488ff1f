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
Both start warm from the same expressions (`reasoner_verifiers.math.worker_task.WARM_UP_PAIRS`: sympy's lazy imports
and ANTLR's prediction cache), and with empty answer caches.
Also printed: what one trainer step of 128 completions with integer golds costs, how often the two graders
disagree, per set, and which tier decided. The last line is the speed ratio.

`--micro` instead times the pieces docs/verifiers.md quotes: the language reward's math removal before (the
regex it replaced) and after, on inputs that made the regex quadratic; the LaTeX parsers (latex2sympy's
ANTLR parser against the direct build from the screen's tree, and the screen itself) on MATH-500 golds;
extraction on megabyte completions; the exact tier's worst case; replacing a killed worker.

`--free-form` prints the agreement on the labelled free-form GSM8K set (tests/verifiers/free_form_set.py).

    python scripts/bench_verifiers.py [--workers 2] [--deadline 3] [--symbolic-only | --micro | --free-form]
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
    from reasoner_verifiers.math.exact import evaluate
    from reasoner_verifiers.math.normalize import Leaf, parse_answer

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

    from reasoner_verifiers.math.worker_task import WARM_UP_PAIRS
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
    from reasoner_verifiers import RewardSpec

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


def _best_ms(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def micro(base: Path) -> None:
    """The small measurements docs/verifiers.md quotes (best of 3 each)."""
    from reasoner_verifiers.language import _WORD, word_counts

    old_math = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[a-zA-Z]+", re.DOTALL)

    def old_counts(text: str) -> int:
        return sum(1 for _ in _WORD.finditer(old_math.sub(" ", text)))

    print("language reward, math removal (ms): unit x n | regex it replaced | now")
    for unit in ("\\( we ", "we go "):
        for n in (2000, 4000, 8000):
            text = unit * n
            before = _best_ms(lambda t=text: old_counts(t))
            after = _best_ms(lambda t=text: word_counts(t))
            print(f"  {unit!r:10s} x {n:5d} | {before:8.1f} | {after:6.1f}")
    _micro_parsers(base)
    _micro_extraction()
    _micro_exact()
    _micro_pool()


def free_form(base: Path) -> None:
    """Agreement on the labelled free-form GSM8K set (tests/verifiers/free_form_set.py), `extract=auto`."""
    from collections import Counter

    from reasoner_verifiers import get_verifier
    from tests.verifiers.free_form_set import build, load_rows

    items = build(load_rows(base))
    labels = Counter(it["label"] for it in items)
    print(f"{len(items)} items ({labels[True]} correct, {labels[False]} wrong-answer controls), "
          f"{len({it['style'] for it in items})} styles")
    for gold_format in ("gsm8k", "plain"):
        for mode in ("strict", "lenient"):
            v = get_verifier("math", extract="auto", gold_format=gold_format, mode=mode)
            try:
                scores = v.score_batch([it["completion"] for it in items], items)
            finally:
                v.close()
            fp = [it for it, sc in zip(items, scores) if sc.correct and not it["label"]]
            fn = [it for it, sc in zip(items, scores) if not sc.correct and it["label"]]
            agree = len(items) - len(fp) - len(fn)
            misses = Counter(it["style"] for it in fn).most_common(3)
            print(f"  gold_format={gold_format:5s} mode={mode:7s} agreement {agree}/{len(items)} = "
                  f"{agree / len(items):.3%}; false positives {len(fp)}, false negatives {len(fn)} {misses}")
    from tests.verifiers.test_vf_labelled import unbox

    rows = [json.loads(line) for line in
            open(base / "math" / "labelled_qwen25math_math_cot_800.jsonl", encoding="utf-8")]
    unboxed = [dict(r, completion=unbox(r["completion"])) for r in rows]
    for mode in ("strict", "lenient"):
        v = get_verifier("math", extract="auto", mode=mode)
        try:
            scores = v.score_batch([r["completion"] for r in unboxed], unboxed)
        finally:
            v.close()
        agree = sum(sc.correct == r["label"] for r, sc in zip(unboxed, scores))
        rules = Counter(sc.details.get("extracted", {}).get("rule") for sc in scores)
        print(f"labelled-800 with every box unwrapped, mode={mode}: agreement {agree}/800 = {agree / 800:.3%}; "
              f"read by {dict(rules)}")


def _micro_parsers(base: Path) -> None:
    from reasoner_verifiers.math import screen
    from reasoner_verifiers.math.normalize import Leaf, parse_answer
    from reasoner_verifiers.math.symbolic import _build, parse_latex

    rows = [json.loads(line) for line in open(base / "math" / "math500.jsonl", encoding="utf-8")]
    leaves = [n.value for n in map(parse_answer, (r["answer"] for r in rows)) if isinstance(n, Leaf) and not n.is_text]
    readable = [t for t in leaves if screen.compile_expr(t) is not None]
    parse_latex(readable[0])  # warm
    t_antlr = _best_ms(lambda: [parse_latex.__wrapped__(t) for t in readable], 1)
    t_build = _best_ms(lambda: [_build(screen.compile_expr.__wrapped__(t), True) for t in readable], 1)
    t_screen = _best_ms(lambda: [screen.clearly_different(t, t + "+1", 1e-20) for t in readable], 1)
    k = len(readable)
    print(f"parsers, {k} MATH-500 golds the screen reads (ms per expression): latex2sympy {t_antlr / k:.2f}, "
          f"direct build from the screen's tree {t_build / k:.3f} (x{t_antlr / t_build:.0f}), "
          f"screen check of a pair {t_screen / k:.3f}")


def _micro_extraction() -> None:
    from reasoner_verifiers.math.extract import EXTRACT_MODES, extract

    bombs = {"#### x 200k": "#### " * 200_000, "'\\( ' x 330k": "\\( " * 330_000,
             "'\\boxed{' x 140k": "\\boxed{" * 140_000, "'1+' x 500k": "1+" * 500_000,
             "prose 1 MB": "She had 3 apples and ate one. " * 33_000}
    worst = {name: max(_best_ms(lambda t=text, m=mode: extract(t, m), 1) for mode in EXTRACT_MODES)
             for name, text in bombs.items()}
    print("extraction of a megabyte completion, slowest mode (ms): "
          + ", ".join(f"{name} {ms:.0f}" for name, ms in worst.items()))


def _micro_exact() -> None:
    from reasoner_verifiers.math import exact

    primes = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29)
    cases = ["+".join(f"\\frac{{{k}^{{99999}}}}{{{k + 1}^{{99998}}}}" for k in range(2, 12)),
             "+".join(f"\\frac{{1}}{{{p}^{{40000}}+1}}" for p in primes),
             "\\cdot".join(f"{p}^{{20000}}" for p in primes), "2^{100000}", "10000!", "\\frac{1}{2004!}"]

    def run(text: str) -> None:
        exact.evaluate.cache_clear()
        exact.evaluate(text)

    print("exact tier, hostile sums/products and the largest legitimate values (ms): "
          + ", ".join(f"{c[:24]}… {_best_ms(lambda c=c: run(c)):.1f}" for c in cases))


def _micro_pool() -> None:
    from reasoner_verifiers.pool import WorkerPool

    with WorkerPool("reasoner_verifiers.pool_probe:run", workers=2) as pool:
        t0 = time.perf_counter()
        pool.start(wait=True)
        start = time.perf_counter() - t0
        pool.map([("echo", 1)] * 2, deadline_s=5)
        replace = []
        for _ in range(3):
            pool.map([("spin", 30)] * 2, deadline_s=0.2)
            t0 = time.perf_counter()
            pool.map([("echo", 1)] * 2, deadline_s=5)
            replace.append(time.perf_counter() - t0)
    print(f"worker pool: fork server start-up {start * 1000:.0f} ms; both workers killed, then a task each: "
          f"{min(replace) * 1000:.0f}-{max(replace) * 1000:.0f} ms (3 runs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--deadline", type=float, default=3.0)
    ap.add_argument("--symbolic-only", action="store_true",
                    help="only pairs that need sympy (symbolic golds against an algebraically equal rewrite)")
    ap.add_argument("--micro", action="store_true", help="the small measurements quoted in docs/verifiers.md")
    ap.add_argument("--free-form", action="store_true", help="agreement on the labelled free-form GSM8K set")
    args = ap.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    base = data_dir()
    if not (base / "math" / "math500.jsonl").is_file():
        sys.exit(f"shared data not found under {base} (set REASONER_SHARED_DATA)")
    if args.micro:
        micro(base)
        return
    if args.free_form:
        free_form(base)
        return
    sets = symbolic_pairs(base) if args.symbolic_only else load_pairs(base)
    if not args.symbolic_only:
        trainer_step(base)

    from reasoner_verifiers import get_verifier
    from reasoner_verifiers.math.normalize import parse_answer

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
