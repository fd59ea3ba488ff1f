"""The `math` verifier: extract, pre-filter, judge in-process when cheap, in a worker pool when not.

The trainer scores ~128 completions per step against mostly simple golds. Everything that the string and
exact-number tiers can decide is decided here, in the caller's process, in microseconds; only pairs that need
sympy are sent, all at once, to the worker pool, which runs them in parallel with a hard deadline each. The
pool starts on the first such pair, so a run whose answers are all integers never starts a process.
"""
from __future__ import annotations

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
from .extract import extract_answer
from .judge import CompareConfig, NeedsHeavy, judge
from .normalize import TooManyItems, parse_answer

_STATUS_VALUE = {T.CORRECT: 1.0, T.WRONG: 0.0, T.PARSE_ERROR: 0.0}


@dataclass(frozen=True)
class MathOptions:
    mode: Literal["strict", "lenient"] = "strict"
    extract: Literal["answer_tag", "boxed", "auto"] = "answer_tag"
    answer_tag: str = "answer"
    gold_key: str = "answer"
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
    answer: str


class MathVerifier(Verifier):
    name = "math"

    def __init__(self, options: MathOptions | None = None):
        self.options = options or MathOptions()
        self.compare = CompareConfig(self.options.mode, self.options.rel_tol)
        self.limits = prefilter.Limits(max_chars=self.options.max_answer_chars)
        self._pool: WorkerPool | None = None
        self._verdicts = _LRU(10_000)

    @property
    def pool(self) -> WorkerPool:
        if self._pool is None:
            self._pool = WorkerPool("verifiers.math.worker_task:run", workers=self.options.workers,
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
        # A single call is bounded as a whole: waiting for a busy or restarting pool counts too.
        return self._score(["" if completion is None else completion], [example], budget_s=self.options.deadline_s)[0]

    def score_batch(self, completions: Sequence[str], examples: Sequence[Mapping[str, Any]]) -> list[Score]:
        check_batch(completions, examples)
        return self._score(completions, examples, budget_s=None)

    def _score(self, completions: Sequence[str], examples: Sequence[Mapping[str, Any]],
               budget_s: float | None) -> list[Score]:
        scores: list[Score | None] = [None] * len(completions)
        pending: list[_Pending] = []
        for i, (completion, example) in enumerate(zip(completions, examples)):
            gold = self._gold(example, i)
            result = self._fast(completion, gold)
            if isinstance(result, str):
                pending.append(_Pending(i, gold, result))
            else:
                scores[i] = result
        if pending:
            self._run_heavy(pending, scores, budget_s)
        return [s for s in scores if s is not None]

    def _run_heavy(self, pending: list[_Pending], scores: list[Score | None], budget_s: float | None) -> None:
        """Send the pairs the cheap tiers could not decide to the pool: each distinct pair once (a policy that
        found a slow answer repeats it across a group), and settled verdicts from earlier batches not at all."""
        todo: dict[tuple[str, str], list[_Pending]] = {}
        for item in pending:
            cached = self._verdicts.get((item.gold, item.answer))
            if cached is not None:
                scores[item.index] = Score(cached.value, cached.status, {**cached.details, "cached": True})
            else:
                todo.setdefault((item.gold, item.answer), []).append(item)
        if not todo:
            return
        keys = list(todo)
        if budget_s is not None:
            self.pool.start(wait=True)  # the pool's one-time start-up is not charged to this call's budget
        payloads = [(gold, answer, self.compare.mode, self.compare.rel_tol) for gold, answer in keys]
        outcomes = self.pool.map(payloads, self.options.deadline_s, budget_s=budget_s)
        for key, outcome in zip(keys, outcomes):
            score = self._from_worker(key[1], outcome)
            if outcome.kind == OK:  # timeouts depend on load: never remembered
                self._verdicts.put(key, score)
            for item in todo[key]:
                scores[item.index] = score

    def _gold(self, example: Mapping[str, Any], index: int) -> str:
        try:
            gold = example[self.options.gold_key]
        except (KeyError, TypeError):
            keys = sorted(example) if isinstance(example, Mapping) else type(example).__name__
            raise ValueError(f"math verifier: example {index} has no {self.options.gold_key!r} field "
                             f"(keys: {keys})") from None
        return str(gold)

    def _fast(self, completion: str, gold: str) -> Score | str:
        """A final Score from the in-process tiers, or the extracted answer when a worker must decide."""
        t0 = time.perf_counter()
        answer = extract_answer(completion, self.options.extract, self.options.answer_tag)
        if answer is None:
            return Score(0.0, T.NO_ANSWER, {"extract": self.options.extract})
        details: dict[str, Any] = {"answer": answer[:200]}
        for side, text in (("gold", gold), ("answer", answer)):
            reason = prefilter.check(text, self.limits)
            if reason:
                return Score(0.0, T.REJECTED, {**details, "reason": f"{side}: {reason}"})
        try:
            verdict = judge(parse_answer(gold), parse_answer(answer), self.compare)
        except NeedsHeavy:
            return answer
        except TooManyItems as exc:
            return Score(0.0, T.REJECTED, {**details, "reason": str(exc)})
        details.update(tier=verdict.tier, elapsed_s=time.perf_counter() - t0)
        if verdict.reason:
            details["reason"] = verdict.reason
        return Score(_STATUS_VALUE[verdict.status], verdict.status, details)

    def _from_worker(self, answer: str, outcome: Outcome) -> Score:
        details: dict[str, Any] = {"answer": answer[:200], "elapsed_s": outcome.elapsed_s}
        if outcome.kind == OK:
            status, tier, reason = outcome.value
            details["tier"] = tier
            if reason:
                details["reason"] = reason
            return Score(_STATUS_VALUE[status], status, details)
        if outcome.kind == TIMEOUT:
            return Score(0.0, T.TIMEOUT, {**details, "deadline_s": self.options.deadline_s})
        if outcome.kind == MEMORY:
            return Score(0.0, T.REJECTED, {**details, "reason": str(outcome.value)})
        # a crash or an exception inside the symbolic tier: the answer could not be processed
        return Score(0.0, T.PARSE_ERROR, {**details, "reason": f"{outcome.kind}: {outcome.value}"})
