"""Load policy / reference models and tokenizers with `from_pretrained` (a hub id or a local path).

This is the code path real users run (e.g. `model.path: Qwen/Qwen2.5-Math-1.5B`); the tests and the demo go
through it too, with tiny models saved locally by `reasoner.models.tiny`. Tokenizers are configured for
decoder-only batched generation: left padding, and a pad token (the EOS token when the model has none).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ModelConfig:
    path: str = ""                       # hub id or local directory
    tokenizer: str | None = None         # defaults to `path`
    dtype: str = "float32"               # float32 | bfloat16 | float16
    device: str = "auto"                 # auto -> cuda if available else cpu
    attn_implementation: str | None = None  # e.g. "sdpa", "flash_attention_2"; None lets transformers choose
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(cfg: ModelConfig, *, path: str | None = None, trainable: bool = True):
    """`AutoModelForCausalLM.from_pretrained` with our dtype/device/attention settings."""
    from transformers import AutoModelForCausalLM

    source = path or cfg.path
    if not source:
        raise ValueError("model.path is empty: give a hub id or a local model directory")
    if cfg.dtype not in _DTYPES:
        raise ValueError(f"model.dtype must be one of {', '.join(_DTYPES)}; got {cfg.dtype!r}")
    kwargs = {"dtype": _DTYPES[cfg.dtype], "trust_remote_code": cfg.trust_remote_code}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        hint = " (HF_HUB_OFFLINE is set: only local paths and cached hub models load)" \
            if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise OSError(f"could not load model '{source}'{hint}: {e}") from e
    model.to(resolve_device(cfg.device))
    if trainable:
        model.train()
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
    else:
        model.eval()
        model.requires_grad_(False)
    return model


def load_tokenizer(source: str, *, trust_remote_code: bool = False):
    """`AutoTokenizer.from_pretrained`, set up for batched generation (left padding, a pad token)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
