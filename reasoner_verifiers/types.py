"""The one verifier signature: `score(completion, example) -> Score`.

Every verifier (math, format, language, code) returns a frozen `Score` with a value, a status from a small
closed vocabulary, and free-form details for logs. Statuses are what make failures visible: a timeout or a parse
failure scores 0 like a wrong answer, but it is counted under its own name, never folded into `wrong`.

Options are typed dataclasses; `parse_options` turns a mapping into one and rejects unknown keys with a single
error that lists the valid ones (configs are written by hand, and a misspelt key must not be silently ignored).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

# Outcome vocabulary shared by all verifiers. The first six are the math statuses of docs/ARCHITECTURE.md.
CORRECT = "correct"          # value is the full reward (1.0 for binary verifiers)
WRONG = "wrong"              # a well-formed answer that does not match (value 0, or partial credit)
NO_ANSWER = "no_answer"      # nothing to grade: no <answer>/\boxed{}, no code block, no <think> words
TIMEOUT = "timeout"          # the check ran out of its deadline (the worker was killed)
PARSE_ERROR = "parse_error"  # the answer could not be parsed into mathematics
REJECTED = "rejected"        # refused before grading: size / depth / exponent bombs, worker memory cap
SCORED = "scored"            # continuous rewards (language consistency): value is the measurement
ERROR = "error"              # infrastructure fault (sandbox failure): not the completion's fault, not "wrong"

STATUSES = (CORRECT, WRONG, NO_ANSWER, TIMEOUT, PARSE_ERROR, REJECTED, SCORED, ERROR)


@dataclass(frozen=True)
class Score:
    """One verifier's verdict on one completion."""

    value: float
    status: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown Score status {self.status!r}; valid: {', '.join(STATUSES)}")

    @property
    def correct(self) -> bool:
        return self.status == CORRECT


class Verifier:
    """Base class: subclasses set `name`, `Options` and implement `score`.

    `score_batch` defaults to a loop; verifiers that can run work in parallel (math's worker pool, the code
    sandbox) override it. `close` releases processes; verifiers are context managers.
    """

    name: str = ""

    def score(self, completion: str, example: Mapping[str, Any]) -> Score:
        raise NotImplementedError

    def score_batch(self, completions: Sequence[str], examples: Sequence[Mapping[str, Any]]) -> list[Score]:
        check_batch(completions, examples)
        return [self.score(c, e) for c, e in zip(completions, examples)]

    def close(self) -> None:
        """Release any processes or pools; the default has none."""

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_batch(completions: Sequence[str], examples: Sequence[Mapping[str, Any]]) -> None:
    if len(completions) != len(examples):
        raise ValueError(f"score_batch got {len(completions)} completions but {len(examples)} examples")


T = TypeVar("T")


def parse_options(cls: type[T], options: Mapping[str, Any], owner: str) -> T:
    """Build the options dataclass `cls` from a mapping; unknown keys and ill-typed values fail clearly."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(
            f"{owner}: unknown option(s) {', '.join(map(repr, unknown))}; valid options: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    for key, value in options.items():
        if not _type_ok(value, hints[key]):
            raise ValueError(f"{owner}: option {key!r} expects {hints[key]}, got {value!r}")
    obj = cls(**options)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(owner)
    return obj


def _type_ok(value: Any, hint: Any) -> bool:
    """A small runtime check for the option types we use (scalars, Literal, Optional, tuples)."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (tuple, list):
        return isinstance(value, (tuple, list))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True
