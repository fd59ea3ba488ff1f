"""Code reward: run a completion's code block against the example's tests in the `sandbox` package.

`sandbox` is imported only when the first batch is scored, so the rest of `verifiers` works without it (and
tests can pass any object with `run_batch([(code, tests), ...]) -> [ExecResult]`). The code is the last fenced
block (```python … ``` or plain ```) inside the `<answer>` tag when there is one, else in the whole completion.

Value: the fraction of tests passed (`reward="fraction"`) or 1.0 only when all pass (`reward="all"`).
Status mapping from the sandbox's `ExecResult.status`:
  passed → correct; failed / memory / output_limit / crashed → wrong (the program's fault);
  timeout → timeout (value still the fraction that passed before it);
  sandbox_error, an unknown status, or an exception raised by the sandbox → error, value 0: an
  infrastructure fault is counted, never scored as a wrong program.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from . import types as T
from .math.extract import answer_tag_content
from .types import Score, Verifier, check_batch

_FENCE = re.compile(r"```[ \t]*(?P<lang>[A-Za-z0-9_+-]*)[ \t]*\n(?P<body>.*?)```", re.DOTALL)
_PROGRAM_FAULTS = ("failed", "memory", "output_limit", "crashed")


@dataclass(frozen=True)
class CodeOptions:
    reward: Literal["fraction", "all"] = "fraction"
    tests_key: str = "tests"
    language: str = "python"
    answer_tag: str = "answer"
    allow_unfenced: bool = False       # no fence: take the whole answer-tag content as code
    workers: int = 2
    timeout_s: float = 5.0
    memory_mb: int = 512


def extract_code(completion: str, o: CodeOptions) -> str | None:
    scope = answer_tag_content(completion, o.answer_tag)
    text = scope if scope is not None else completion
    blocks = [m for m in _FENCE.finditer(text) if m.group("lang").lower() in ("", o.language, "py", "python3")]
    if blocks:
        return blocks[-1].group("body")
    if o.allow_unfenced and scope is not None and scope.strip():
        return scope
    return None


class CodeVerifier(Verifier):
    name = "code"

    def __init__(self, options: CodeOptions | None = None, sandbox: Any = None):
        self.options = options or CodeOptions()
        self._sandbox = sandbox
        self._owns_sandbox = sandbox is None

    @property
    def sandbox(self) -> Any:
        if self._sandbox is None:
            try:
                from sandbox import Limits, Sandbox  # lazy: the rest of verifiers works without sandbox
            except ImportError as exc:
                raise RuntimeError("the code verifier needs the `sandbox` package, which is not importable") from exc
            self._sandbox = Sandbox(workers=self.options.workers,
                                    limits=Limits(timeout_s=self.options.timeout_s, memory_mb=self.options.memory_mb))
        return self._sandbox

    def close(self) -> None:
        if self._owns_sandbox and self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def score(self, completion: str, example: Mapping[str, Any]) -> Score:
        return self.score_batch([completion], [example])[0]

    def score_batch(self, completions: Sequence[str], examples: Sequence[Mapping[str, Any]]) -> list[Score]:
        check_batch(completions, examples)
        scores: list[Score | None] = [None] * len(completions)
        jobs: list[tuple[int, str, Any]] = []
        for i, (completion, example) in enumerate(zip(completions, examples)):
            if self.options.tests_key not in example:
                raise ValueError(f"code verifier: example {i} has no {self.options.tests_key!r} field")
            code = extract_code(completion or "", self.options)
            if code is None:
                scores[i] = Score(0.0, T.NO_ANSWER, {"reason": "no code block"})
            else:
                jobs.append((i, code, example[self.options.tests_key]))
        if jobs:
            for (i, _, _), score in zip(jobs, self._run(jobs)):
                scores[i] = score
        return [s for s in scores if s is not None]

    def _run(self, jobs: list[tuple[int, str, Any]]) -> list[Score]:
        try:
            results = self.sandbox.run_batch([(code, tests) for _, code, tests in jobs])
        except Exception as exc:  # the sandbox failing is not the program's fault
            return [Score(0.0, T.ERROR, {"reason": f"sandbox raised {type(exc).__name__}: {exc}"[:300]})] * len(jobs)
        if len(results) != len(jobs):
            reason = f"sandbox returned {len(results)} results for {len(jobs)}"
            return [Score(0.0, T.ERROR, {"reason": reason})] * len(jobs)
        return [self._to_score(r) for r in results]

    def _to_score(self, result: Any) -> Score:
        status = getattr(result, "status", None)
        fraction = float(getattr(result, "fraction", 0.0) or 0.0)
        details = {"sandbox_status": status, "n_passed": getattr(result, "n_passed", None),
                   "n_total": getattr(result, "n_total", None), "duration_s": getattr(result, "duration_s", None)}
        value = fraction if self.options.reward == "fraction" else 0.0
        if status == "passed" and getattr(result, "passed", True):
            return Score(1.0, T.CORRECT, details)
        if status in _PROGRAM_FAULTS or status == "passed":
            return Score(value, T.WRONG, details)
        if status == "timeout":
            return Score(value, T.TIMEOUT, details)
        stderr = str(getattr(result, "stderr", ""))[-300:]
        return Score(0.0, T.ERROR, {**details, "reason": f"sandbox status {status!r}", "stderr": stderr})
