"""Rollout engines behind one narrow interface: token ids in; completion ids, sampling log-probs, finish reasons out."""
from reasoner.rollout.base import Completion, EngineError, RolloutEngine, SamplingParams
from reasoner.rollout.config import EngineConfig, SamplingConfig
from reasoner.rollout.factory import check_engine, make_engine

__all__ = ["Completion", "EngineConfig", "EngineError", "RolloutEngine", "SamplingConfig", "SamplingParams",
           "check_engine", "make_engine"]
