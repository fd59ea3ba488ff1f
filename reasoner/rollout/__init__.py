"""Rollout engines behind one narrow interface: token ids in; completion ids, sampling log-probs, finish reasons out."""
from reasoner.rollout.base import Completion, EngineError, RolloutEngine, SamplingParams
from reasoner.rollout.config import EngineConfig, SamplingConfig
from reasoner.rollout.factory import make_engine

__all__ = ["Completion", "EngineConfig", "EngineError", "RolloutEngine", "SamplingConfig", "SamplingParams",
           "make_engine"]
