"""Sample-and-grade: the core every evaluation path shares (demo, `reasoner eval`, distillation).

Grading goes through the same `verifiers.RewardSpec` the trainer rewards with, so a training reward, an
evaluation metric and a distillation filter can never disagree about what "correct" means.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from statistics import fmean
from typing import Any

from reasoner.data.templates import Prompt
from reasoner.metrics.passk import pass_at_k
from reasoner.rollout.base import RolloutEngine, SamplingParams


@dataclass
class SampleRecord:
    prompt_id: str
    sample_index: int
    completion: str
    num_tokens: int
    finish_reason: str                  # stop | length (truncated)
    correct: bool                       # the primary verifier's verdict (what pass@k counts)
    reward: float                       # the spec's weighted total (what training would have rewarded)
    statuses: dict[str, str] = field(default_factory=dict)  # verifier label -> status
    answer: str | None = None           # the gold answer
    pred: str | None = None             # the answer the primary verifier extracted (majority voting)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> SampleRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


@dataclass
class EvalSummary:
    num_problems: int
    samples_per_problem: int
    pass_at: dict[int, float]           # k -> mean unbiased pass@k over problems
    mean_length: float
    mean_length_correct: float | None
    mean_length_incorrect: float | None
    truncation_rate: float

    def as_dict(self) -> dict:
        d = {f"pass@{k}": v for k, v in self.pass_at.items()}
        d.update(num_problems=self.num_problems, samples_per_problem=self.samples_per_problem,
                 mean_length=self.mean_length, mean_length_correct=self.mean_length_correct,
                 mean_length_incorrect=self.mean_length_incorrect, truncation_rate=self.truncation_rate)
        return d


def evaluate_prompts(engine: RolloutEngine, tokenizer, prompts: Sequence[Prompt], reward_spec,
                     params: SamplingParams, *, batch_prompts: int = 64) -> list[SampleRecord]:
    """`params.n` samples for each prompt, graded; records in prompt order, `n` contiguous per prompt."""
    records: list[SampleRecord] = []
    for start in range(0, len(prompts), batch_prompts):
        chunk = prompts[start:start + batch_prompts]
        groups = engine.generate([p.token_ids for p in chunk], params)
        flat = [(p, j, c) for p, group in zip(chunk, groups) for j, c in enumerate(group)]
        texts = tokenizer.batch_decode([c.token_ids for _, _, c in flat], skip_special_tokens=True)
        scored = reward_spec.score_batch(texts, [p.example for p, _, _ in flat])
        primary = scored.scores.get(scored.primary, []) if scored.primary else []
        for i, ((p, j, c), text) in enumerate(zip(flat, texts)):
            pred = primary[i].details.get("answer") if primary else None
            records.append(SampleRecord(
                prompt_id=p.id, sample_index=j, completion=text, num_tokens=len(c.token_ids),
                finish_reason=c.finish_reason, correct=bool(scored.correct[i]), reward=float(scored.totals[i]),
                statuses={k: v[i].status for k, v in scored.scores.items()}, answer=p.example.get("answer"),
                pred=None if pred is None else str(pred)))
    return records


def summarize(records: Sequence[SampleRecord], ks: Sequence[int] = (1,)) -> EvalSummary:
    by_problem: dict[str, list[SampleRecord]] = {}
    for r in records:
        by_problem.setdefault(r.prompt_id, []).append(r)
    n = min(len(v) for v in by_problem.values())
    pass_at = {k: fmean(pass_at_k(len(v), sum(r.correct for r in v), k) for v in by_problem.values())
               for k in ks if k <= n}
    lengths = [r.num_tokens for r in records]
    correct = [r.num_tokens for r in records if r.correct]
    incorrect = [r.num_tokens for r in records if not r.correct]
    return EvalSummary(
        num_problems=len(by_problem), samples_per_problem=n, pass_at=pass_at, mean_length=fmean(lengths),
        mean_length_correct=fmean(correct) if correct else None,
        mean_length_incorrect=fmean(incorrect) if incorrect else None,
        truncation_rate=sum(r.finish_reason == "length" for r in records) / len(records))
