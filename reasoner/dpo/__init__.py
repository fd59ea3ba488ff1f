"""Preference optimisation: offline DPO / IPO / DPO-Positive from pairs (`reasoner dpo`), on SFT's backends."""
from reasoner.dpo.config import DPOConfig, PreferenceLossConfig
from reasoner.dpo.data import PairExample, collate_pairs, load_preference_rows, tokenize_pairs
from reasoner.dpo.trainer import DPOResult, dpo

__all__ = ["DPOConfig", "DPOResult", "PairExample", "PreferenceLossConfig", "collate_pairs", "dpo",
           "load_preference_rows", "tokenize_pairs"]
