"""Rollout engines behind one narrow interface: token ids in; completion ids, sampling log-probs, finish reasons out."""
from reasoner.rollout.base import Completion, RolloutConfig, RolloutEngine, SamplingParams, make_engine

__all__ = ["Completion", "RolloutConfig", "RolloutEngine", "SamplingParams", "make_engine"]
