"""Evaluation: sample n completions per problem, grade them with the training verifiers, aggregate pass@k."""
from reasoner.evaluation.core import EvalSummary, SampleRecord, evaluate_prompts, summarize

__all__ = ["EvalSummary", "SampleRecord", "evaluate_prompts", "summarize"]
