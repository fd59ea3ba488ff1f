"""Sample-and-grade: the core every evaluation path shares (`reasoner eval`, the pipeline and demo's eval stage,
distillation).

Grading goes through the same `reasoner_verifiers.RewardSpec` the trainer rewards with, so a training reward, an
evaluation metric and a distillation filter can never disagree about what "correct" means.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from reasoner.data.templates import Prompt
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
