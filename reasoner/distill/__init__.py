"""Rejection-sampling distillation: sample from a teacher, keep what the verifiers accept, write SFT data."""
from reasoner.distill.config import DistillConfig
from reasoner.distill.run import DistillResult, distill, format_stats, select_samples
from reasoner.distill.select import Candidate, cap_rows, dedupe, filter_candidates, select_per_prompt

__all__ = ["DistillConfig", "DistillResult", "distill", "format_stats", "select_samples", "Candidate", "cap_rows",
           "dedupe", "filter_candidates", "select_per_prompt"]
