"""Supervised fine-tuning with the loss on response tokens only (cold start, distillation students)."""
from reasoner.sft.config import LoraSettings, SFTConfig
from reasoner.sft.data import SFTExample, load_sft_rows, pack_examples, tokenize_examples
from reasoner.sft.trainer import SFTResult, sft

__all__ = ["LoraSettings", "SFTConfig", "SFTExample", "load_sft_rows", "pack_examples", "tokenize_examples",
           "SFTResult", "sft"]
