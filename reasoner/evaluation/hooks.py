"""Extra per-benchmark metrics from graded samples, chosen by name: `benchmarks: [{name: ..., metrics: [...]}]`.

Each hook maps a benchmark's samples to a few named numbers that `results.json` records beside pass@k (under
`extra`); a task that needs its own measurement registers one here instead of growing an evaluation path of
its own (the demo's split of worked solutions and bare answers is one).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from reasoner.algorithms.registry import Registry
from reasoner.evaluation.core import SampleRecord

MetricHook = Callable[[Sequence[SampleRecord]], dict[str, float | None]]
SAMPLE_METRICS: Registry[MetricHook] = Registry("sample metric")


def is_bare_answer(completion: str) -> bool:
    """An empty `<think>` (whitespace only): the model answered without working it out."""
    head, sep, _ = completion.partition("</think>")
    return bool(sep) and not head.replace("<think>", "").strip()


@SAMPLE_METRICS.register("bare_answers")
def bare_answers(records: Sequence[SampleRecord]) -> dict[str, float | None]:
    """How often the model answered at once (an empty `<think>`), and how accurate each habit is."""
    bare = [r for r in records if is_bare_answer(r.completion)]
    worked = [r for r in records if not is_bare_answer(r.completion)]
    return {"bare_answer_share": len(bare) / max(1, len(records)),
            "accuracy_bare": sum(r.correct for r in bare) / len(bare) if bare else None,
            "accuracy_worked": sum(r.correct for r in worked) / len(worked) if worked else None}


def run_hooks(names: Sequence[str], records: Sequence[SampleRecord]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in names:
        out.update(SAMPLE_METRICS.get(name)(records))
    return out
