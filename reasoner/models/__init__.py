"""Model and tokenizer loading (`from_pretrained`, hub id or local path) and the tiny offline model factory."""
from reasoner.models.loading import ModelConfig, ModelLoadError, load_model, load_tokenizer, tokenizer_for
from reasoner.models.tiny import TinyModelSpec, build_tiny_model

__all__ = ["ModelConfig", "ModelLoadError", "TinyModelSpec", "build_tiny_model", "load_model", "load_tokenizer",
           "tokenizer_for"]
