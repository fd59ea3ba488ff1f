"""reasoner: train LLMs to reason with reinforcement learning from verifiable rewards."""

__version__ = "0.2.0"
