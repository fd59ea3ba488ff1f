"""Reward models: Bradley-Terry training on preference pairs (`reasoner rm`) and the `reward_model` reward."""
from reasoner.rm.config import RMConfig
from reasoner.rm.trainer import RMResult, train_rm

__all__ = ["RMConfig", "RMResult", "train_rm"]
