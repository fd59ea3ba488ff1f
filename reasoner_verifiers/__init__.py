"""Graders for RL rewards and evaluation metrics: math, format, language consistency, code.

Public API (docs/ARCHITECTURE.md):

    from reasoner_verifiers import Score, get_verifier, RewardSpec, RewardBatch, normalize_answer
    spec = RewardSpec.from_config({"math": {"weight": 1.0, "mode": "strict"}, "format": {"weight": 0.1}})
    batch = spec.score_batch(completions, examples)   # batch.totals, .scores, .correct, .means(), .status_counts()
    spec.close()
    normalize_answer("\\dfrac{1}{2}\\text{ cm}")   # "\\frac{1}{2}": the math verifier's string normaliser
                                                   # (majority voting keys on it)

This package never imports torch; its worker processes are fresh interpreters that import only what grading
needs. Adapters for TRL and verl live in `reasoner_verifiers.adapters`; the command line is
`python -m reasoner_verifiers`.
"""
from .math.normalize import normalize_text as normalize_answer
from .registry import available, get_verifier, register
from .spec import RewardBatch, RewardSpec
from .types import STATUSES, Score, Verifier

__all__ = ["Score", "Verifier", "STATUSES", "get_verifier", "register", "available", "RewardSpec", "RewardBatch",
           "normalize_answer"]
