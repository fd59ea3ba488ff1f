"""Load policy / reference models and tokenizers with `from_pretrained` (a hub id or a local path).

This is the code path real users run (e.g. `model.path: Qwen/Qwen2.5-Math-1.5B`); the tests and the demo go
through it too, with tiny models saved locally by `reasoner.models.tiny`. Tokenizers are configured for
decoder-only batched generation: left padding, and a pad token (the EOS token when the model has none).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from reasoner.errors import ReasonerError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


class ModelLoadError(ReasonerError, OSError):
    """A model or tokenizer could not be loaded; the message names the path or hub id and why."""


def check_source(source: str, what: str = "model") -> None:
    """Fail early, in one line, on a source that cannot load: an empty value, a local path that does not exist
    or has no `config.json`. Anything shaped like a hub id (`org/name`) is left to `from_pretrained`."""
    if not source:
        raise ModelLoadError(f"{what} path is empty: give a hub id or a local model directory (model.path=...)")
    path = Path(source).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").is_file() and not (path / "tokenizer_config.json").is_file():
            raise ModelLoadError(f"{what} {source}: the folder holds no config.json (not a saved model)")
        return
    if source.startswith(("/", ".", "~")) or not _HUB_ID.fullmatch(source):
        raise ModelLoadError(f"{what} {source}: no such file or directory")


def _load_error(source: str, what: str, e: OSError) -> ModelLoadError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    if offline and not Path(source).expanduser().exists():
        return ModelLoadError(f"{what} {source}: not a local folder, and the hub is offline (HF_HUB_OFFLINE=1): "
                              f"download it first or give a local path")
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ModelLoadError(f"{what} {source}: could not load it: {first}")


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


def load_model(cfg: ModelConfig, *, path: str | None = None, trainable: bool = True, auto_class=None,
               **extra):
    """`AutoModelForCausalLM.from_pretrained` with our dtype/device/attention settings (`auto_class` another
    Auto class, e.g. for value and reward models; `extra` further `from_pretrained` keywords)."""
    from transformers import AutoModelForCausalLM

    source = path or cfg.path
    check_source(source)
    if cfg.dtype not in _DTYPES:
        raise ModelLoadError(f"model.dtype must be one of {', '.join(_DTYPES)}; got {cfg.dtype!r}")
    kwargs = {"dtype": _DTYPES[cfg.dtype], "trust_remote_code": cfg.trust_remote_code, **extra}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    try:
        model = (auto_class or AutoModelForCausalLM).from_pretrained(source, **kwargs)
    except OSError as e:
        raise _load_error(source, "model", e) from e
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


def tokenizer_for(cfg: ModelConfig):
    """The tokenizer of model section `cfg`: `cfg.tokenizer`, else the model's own (`cfg.path`); an error names
    whichever was used."""
    return load_tokenizer(cfg.tokenizer or cfg.path, trust_remote_code=cfg.trust_remote_code,
                          what="tokenizer" if cfg.tokenizer else "model")


def load_tokenizer(source: str, *, trust_remote_code: bool = False, what: str = "tokenizer"):
    """`AutoTokenizer.from_pretrained`, set up for batched generation (left padding, a pad token)."""
    from transformers import AutoTokenizer

    check_source(source, what)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise _load_error(source, what, e) from e
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
