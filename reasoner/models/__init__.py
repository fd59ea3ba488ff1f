"""Model and tokenizer loading (`from_pretrained`, hub id or local path) and the tiny offline model factory."""
from reasoner.models.loading import ModelConfig, load_model, load_tokenizer
from reasoner.models.tiny import TinyModelSpec, build_tiny_model

__all__ = ["ModelConfig", "load_model", "load_tokenizer", "TinyModelSpec", "build_tiny_model"]
