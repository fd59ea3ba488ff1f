"""Evaluation: sample n completions per problem, grade them with the training verifiers, aggregate.

`evaluate_prompts` / `summarize` are the small core (the demo uses them); `run_eval` is `reasoner eval`
(benchmarks, resumable per-sample JSONL, pass@k / maj@k / lengths with confidence intervals, reports, plots).
"""
from reasoner.evaluation.config import BenchmarkConfig, EvalConfig, PromptConfig, SamplingConfig
from reasoner.evaluation.core import EvalSummary, SampleRecord, evaluate_prompts, summarize
from reasoner.evaluation.metrics import BenchmarkMetrics, compute_metrics
from reasoner.evaluation.runner import EvalResult, run_eval, sample_and_grade

__all__ = ["BenchmarkConfig", "EvalConfig", "PromptConfig", "SamplingConfig", "EvalSummary", "SampleRecord",
           "evaluate_prompts", "summarize", "BenchmarkMetrics", "compute_metrics", "EvalResult", "run_eval",
           "sample_and_grade"]
