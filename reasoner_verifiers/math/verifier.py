"""The `math` verifier: extract, pre-filter, judge in-process when cheap, in a worker pool when not.

The trainer scores ~128 completions per step against mostly simple golds. Everything that the string and
exact-number tiers can decide is decided here, in the caller's process; only pairs that need sympy are sent,
all at once, to the worker pool, which runs them in parallel with a hard deadline each. The pool starts on the
first such pair, so a run whose answers are all integers never starts a process.

Time: the caller's process cannot be interrupted, so the in-process tiers are bounded by construction (linear
extraction and pre-filters, a work budget in the exact tier) and capped as a whole (`IN_PROCESS_LIMIT_S` per
pair, then the pair goes to a worker). A single `score()` charges that time to its deadline, so it returns
within the deadline plus scheduling noise, from any thread.

Failures stay per row: an exception in the in-process tiers becomes an `error` score for that completion (with
the exception in `details["reason"]`), never a lost batch. A missing or null gold is the caller's data error
and raises a ValueError naming the example and the key.
"""
from __future__ import annotations

import numbers
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .. import types as T
from ..pool import MEMORY, OK, TIMEOUT, Outcome, WorkerPool
from ..types import Score, Verifier, check_batch
from . import prefilter
from .extract import Extraction, extract
from .golds import gold_text
from .judge import TIERS, CompareConfig, NeedsHeavy, judge
from .normalize import TooManyItems, parse_answer

_STATUS_VALUE = {T.CORRECT: 1.0, T.WRONG: 0.0, T.PARSE_ERROR: 0.0}
IN_PROCESS_LIMIT_S = 0.2  # at most this much of the caller's time per pair (or a quarter of the deadline)


@dataclass(frozen=True)
class MathOptions:
    mode: Literal["strict", "lenient"] = "strict"
    extract: Literal["answer_tag", "boxed", "auto", "free_form"] = "answer_tag"
    answer_tag: str = "answer"
    gold_key: str = "answer"
    gold_format: Literal["plain", "gsm8k"] = "plain"
    deadline_s: float = 3.0
    workers: int = 2
    memory_mb: int = 1024
    rel_tol: float | None = None           # None: 1e-6 relative, both modes
    max_answer_chars: int = 2000

    def validate(self, owner: str) -> None:
        if self.deadline_s <= 0 or self.workers < 1 or self.memory_mb < 128:
            raise ValueError(f"{owner}: need deadline_s > 0, workers >= 1 and memory_mb >= 128; got {self}")


class _LRU:
    """A small thread-safe LRU map for settled symbolic verdicts."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[Any, Score] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Score | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Any, value: Score) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


@dataclass
class _Pending:
    index: int
    gold: str
    found: Extraction


class MathVerifier(Verifier):
    name = "math"

    def __init__(self, options: MathOptions | None = None):
        self.options = options or MathOptions()
        self.compare = CompareConfig(self.options.mode, self.options.rel_tol,
                                     bare_gold=self.options.gold_format == "gsm8k")
        self.limits = prefilter.Limits(max_chars=self.options.max_answer_chars)
        self.in_process_limit_s = min(IN_PROCESS_LIMIT_S, self.options.deadline_s / 4)
        self._pool: WorkerPool | None = None
        self._verdicts = _LRU(10_000)

    @property
    def pool(self) -> WorkerPool:
        if self._pool is None:
            self._pool = WorkerPool("reasoner_verifiers.math.worker_task:run", workers=self.options.workers,
                                    memory_mb=self.options.memory_mb)
        return self._pool

    def warm_up(self) -> None:
        """Start the worker pool now (otherwise it starts on the first pair that needs it)."""
        self.pool.start(wait=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def score(self, completion: str, example: Mapping[str, Any]) -> Score:
        # A single call is bounded as a whole: in-process time and waiting for a busy pool count too.
        t0 = time.monotonic()
        return self._score(["" if completion is None else completion], [example], call_start=t0)[0]

    def score_batch(self, completions: Sequence[str], examples: Sequence[Mapping[str, Any]]) -> list[Score]:
        check_batch(completions, examples)
        return self._score(completions, examples, call_start=None)

    def _score(self, completions: Sequence[str], examples: Sequence[Mapping[str, Any]],
               call_start: float | None) -> list[Score]:
        golds = [self._gold(example, i) for i, example in enumerate(examples)]  # data errors first, loudly
        scores: list[Score | None] = [None] * len(completions)
        pending: list[_Pending] = []
        for i, (completion, gold) in enumerate(zip(completions, golds)):
            result = self._fast_guarded(completion, gold)
            if isinstance(result, Extraction):
                pending.append(_Pending(i, gold, result))
            else:
                scores[i] = result
        if pending:
            budget = None
            if call_start is not None:
                budget = max(0.05, self.options.deadline_s - (time.monotonic() - call_start))
            self._run_heavy(pending, scores, budget)
        return [s for s in scores if s is not None]

    def _run_heavy(self, pending: list[_Pending], scores: list[Score | None], budget_s: float | None) -> None:
        """Send the pairs the cheap tiers could not decide to the pool: each distinct pair once (a policy that
        found a slow answer repeats it across a group), and settled verdicts from earlier batches not at all."""
        todo: dict[tuple[str, str], list[_Pending]] = {}
        for item in pending:
            cached = self._verdicts.get((item.gold, item.found.answer))
            if cached is not None:
                details = {**cached.details, **_extraction_details(item.found), "cached": True}
                scores[item.index] = Score(cached.value, cached.status, details)
            else:
                todo.setdefault((item.gold, item.found.answer), []).append(item)
        if not todo:
            return
        keys = list(todo)
        if budget_s is not None:
            self.pool.start(wait=True)  # the pool's one-time start-up is not charged to this call's budget
        payloads = [[gold, answer, self.compare.to_wire()] for gold, answer in keys]
        outcomes = self.pool.map(payloads, self.options.deadline_s, budget_s=budget_s)
        for key, outcome in zip(keys, outcomes):
            score = self._from_worker(key[1], outcome)
            if outcome.kind == OK and score.status != T.ERROR:  # timeouts depend on load: never remembered
                self._verdicts.put(key, score)
            for item in todo[key]:
                scores[item.index] = Score(score.value, score.status,
                                           {**score.details, **_extraction_details(item.found)})

    def _gold(self, example: Mapping[str, Any], index: int) -> str:
        key = self.options.gold_key
        try:
            gold = example[key]
        except (KeyError, TypeError):
            keys = sorted(example) if isinstance(example, Mapping) else type(example).__name__
            raise ValueError(f"math verifier: example {index} has no {key!r} field (keys: {keys})") from None
        if gold is None:
            raise ValueError(f"math verifier: example {index} has a null {key!r} (no gold answer to grade against)")
        if isinstance(gold, bool) or not isinstance(gold, (str, numbers.Real)):
            raise ValueError(f"math verifier: example {index}: {key!r} must be a string or a number, "
                             f"got {type(gold).__name__}")
        return gold_text(str(gold), self.options.gold_format)

    def _fast_guarded(self, completion: str, gold: str) -> Score | Extraction:
        """`_fast`, with any exception turned into an `error` score for this completion alone."""
        try:
            return self._fast(completion, gold)
        except Exception as exc:  # a grader bug on one odd answer must not lose the batch
            return Score(0.0, T.ERROR, {"reason": f"internal error: {type(exc).__name__}: {exc}"[:300]})

    def _fast(self, completion: str, gold: str) -> Score | Extraction:
        """A final Score from the in-process tiers, or the extraction when a worker must decide."""
        t0 = time.perf_counter()
        found = extract(completion, self.options.extract, self.options.answer_tag)
        if found is None:
            return Score(0.0, T.NO_ANSWER, {"extract": self.options.extract})
        details = _extraction_details(found)
        for side, text in (("gold", gold), ("answer", found.answer)):
            reason = prefilter.check(text, self.limits)
            if reason:
                return Score(0.0, T.REJECTED, {**details, "reason": f"{side}: {reason}"})
        try:
            verdict = judge(parse_answer(gold), parse_answer(found.answer), self.compare,
                            time_limit_s=self.in_process_limit_s)
        except NeedsHeavy:
            return found
        except TooManyItems as exc:
            return Score(0.0, T.REJECTED, {**details, "reason": str(exc)})
        details.update(tier=verdict.tier, elapsed_s=time.perf_counter() - t0)
        if verdict.reason:
            details["reason"] = verdict.reason
        return Score(_STATUS_VALUE[verdict.status], verdict.status, details)

    def _from_worker(self, answer: str, outcome: Outcome) -> Score:
        details: dict[str, Any] = {"answer": answer[:200], "elapsed_s": outcome.elapsed_s}
        if outcome.kind == OK:
            reply = _verdict_reply(outcome.value)
            if reply is None:  # not what our handler returns: a worker that misbehaved
                return Score(0.0, T.ERROR, {**details, "reason": f"malformed worker reply {str(outcome.value)[:80]!r}"})
            status, tier, reason = reply
            details["tier"] = tier
            if reason:
                details["reason"] = reason
            return Score(_STATUS_VALUE[status], status, details)
        if outcome.kind == TIMEOUT:
            return Score(0.0, T.TIMEOUT, {**details, "deadline_s": self.options.deadline_s})
        if outcome.kind == MEMORY:
            return Score(0.0, T.REJECTED, {**details, "reason": str(outcome.value)[:300]})
        # a crash or an exception inside the symbolic tier: the answer could not be processed
        return Score(0.0, T.PARSE_ERROR, {**details, "reason": f"{outcome.kind}: {outcome.value}"[:300]})


def _verdict_reply(value: Any) -> tuple[str, str, str] | None:
    """A worker's `[status, tier, reason]`, checked against the vocabulary; None when it is anything else."""
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)):
        return None
    status, tier, reason = value
    if status not in _STATUS_VALUE or tier not in TIERS:
        return None
    return status, tier, reason[:500]


def _extraction_details(found: Extraction) -> dict[str, Any]:
    return {"answer": found.answer[:200], "extracted": {"rule": found.rule, "text": found.raw[:200]}}
