"""The shared benchmark data: reference solutions pass, empty or exiting solutions fail (HumanEval, MBPP,
CodeContests stdin/stdout samples)."""
from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from sandbox import specs

EXITS = {"sys.exit": "import sys\nsys.exit(0)\n", "os._exit": "import os\nos._exit(0)\n"}


@pytest.fixture(scope="module")
def humaneval(shared_data):
    with gzip.open(shared_data / "code" / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def _statuses(results):
    return Counter(r.status for r in results)


def test_humaneval_canonical_solutions_all_pass(sb, humaneval):
    results = sb.run_batch([specs.humaneval(p, p["canonical_solution"]) for p in humaneval])
    failing = [(p["task_id"], r.status, r.details.get("tests", [])[:2]) for p, r in zip(humaneval, results)
               if not r.passed]
    assert not failing and len(results) == 164


@pytest.mark.parametrize("tail", [""] + list(EXITS.values()), ids=["plain"] + list(EXITS))
def test_humaneval_return_none_all_fail(sb, humaneval, tail):
    # sys.exit / os._exit before the tests: an exit-code harness would score these 164/164.
    results = sb.run_batch([specs.humaneval(p, "    return None\n" + tail) for p in humaneval])
    assert _statuses(results) == {"failed": 164}


def test_humaneval_prompt_helpers_cannot_be_redefined(sb, humaneval):
    # HumanEval/32 checks find_zero through the prompt's `poly`; a completion that redefines poly to return
    # 0 passes a shared-namespace harness. With the prompt's helpers as a trusted prelude it fails.
    p = next(p for p in humaneval if p["task_id"] == "HumanEval/32")
    hack = "    return 0.0\n\ndef poly(xs, x):\n    return 0.0\n"
    assert not sb.run(*specs.humaneval(p, hack)).passed


def test_mbpp_reference_solutions_pass(sb, shared_data):
    problems = json.loads((shared_data / "code" / "sanitized-mbpp.json").read_text())
    # MBPP/123's reference takes ~5 s on one core: the default 5 s deadline would be too tight here.
    results = sb.run_batch([specs.mbpp(p, p["code"]) for p in problems], timeout_s=30)
    failing = [(p["task_id"], r.status, r.details.get("tests", [])[:2]) for p, r in zip(problems, results)
               if not r.passed]
    assert not failing and len(results) == 427
    wrong = sb.run_batch([specs.mbpp(p, "pass\n") for p in problems[:50]])
    assert _statuses(wrong) == {"failed": 50}


def test_stdio_samples_reference_pass_and_pass_statement_fails(sb, shared_data):
    rows = [json.loads(line) for line in (shared_data / "code" / "cp_stdio_sample.jsonl").open()]
    ref = sb.run_batch([specs.stdio(r["tests"]["inputs"], r["tests"]["outputs"], r["reference_solution"])
                        for r in rows])
    assert [(r.status, r.n_passed, r.n_total) for r in ref] == [
        ("passed", len(r["tests"]["inputs"]), len(r["tests"]["inputs"])) for r in rows]
    empty = sb.run_batch([specs.stdio(r["tests"]["inputs"], r["tests"]["outputs"], "pass") for r in rows])
    assert [(r.status, r.n_passed) for r in empty] == [("failed", 0)] * len(rows)
    # printing only the first expected line of a multi-line answer must not pass (no zip-truncation)
    multi = next(r for r in rows if len(r["tests"]["outputs"][0].strip().splitlines()) > 1)
    first_line = multi["tests"]["outputs"][0].strip().splitlines()[0]
    res = sb.run(*specs.stdio(multi["tests"]["inputs"][:1], multi["tests"]["outputs"][:1],
                              f"print({first_line!r})"))
    assert res.status == "failed"
