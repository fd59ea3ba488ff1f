"""Evaluation: sample n completions per problem, grade them with the training verifiers, aggregate.

`evaluate_prompts` is the small core (sample and grade); `run_eval` is `reasoner eval` (benchmarks, resumable
per-sample JSONL, pass@k / maj@k / lengths with confidence intervals and metric hooks, reports, plots), which the
pipeline's and the demo's eval stages run too.
"""
from reasoner.evaluation.aggregate import BenchmarkMetrics, compute_metrics
from reasoner.evaluation.config import BenchmarkConfig, EvalConfig
from reasoner.evaluation.core import SampleRecord, evaluate_prompts
from reasoner.evaluation.runner import EvalResult, run_eval, sample_and_grade

__all__ = ["BenchmarkConfig", "BenchmarkMetrics", "EvalConfig", "EvalResult", "SampleRecord", "compute_metrics",
           "evaluate_prompts", "run_eval", "sample_and_grade"]
