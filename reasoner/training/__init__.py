"""GRPO training: configuration, the loop, the policy update, checkpoints."""
from reasoner.training.config import AlgorithmConfig, LogConfig, OptimConfig, RewardConfig, TrainConfig
from reasoner.training.grpo import TrainResult, train

__all__ = ["AlgorithmConfig", "LogConfig", "OptimConfig", "RewardConfig", "TrainConfig", "TrainResult", "train"]
