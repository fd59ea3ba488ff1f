"""Supervised fine-tuning with the loss on response tokens only (cold start, distillation students)."""
from reasoner.sft.config import SFTConfig
from reasoner.sft.data import SFTExample, tokenize_examples
from reasoner.sft.trainer import SFTResult, sft

__all__ = ["SFTConfig", "SFTExample", "tokenize_examples", "SFTResult", "sft"]
