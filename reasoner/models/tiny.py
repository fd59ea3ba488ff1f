"""A tiny Qwen3-config causal LM with a tokenizer trained offline: for the demo and tests.

Nothing is downloaded: the tokenizer is a byte-level BPE trained with `tokenizers` on text the caller supplies
(digits are split one per token, as Qwen's and Llama-3's tokenizers do, so arithmetic stays learnable), the model
is built from a `Qwen3Config`, and both are written with `save_pretrained` so every later stage loads them through
the same `from_pretrained` code that real models use. A Qwen3 (not Qwen2) config is used on purpose: with a Qwen2
config `AutoTokenizer` substitutes its own tokenizer class and tokenizes differently from the saved file.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

R1_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"

# ChatML, as Qwen models use; `add_generation_prompt` opens the assistant turn.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class TinyModelSpec:
    vocab_size: int = 512
    hidden_size: int = 192
    num_layers: int = 6
    num_heads: int = 6
    num_kv_heads: int = 2
    head_dim: int = 32
    intermediate_size: int = 512
    max_position_embeddings: int = 1024
    seed: int = 0


def train_tokenizer(corpus: Iterable[str], vocab_size: int):
    """Byte-level BPE with single-digit pre-tokenization, ChatML specials and the R1 tags as added tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, IM_START, IM_END],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=PAD, padding_side="left")
    # Non-special so that `skip_special_tokens=True` keeps them in decoded completions.
    fast.add_tokens(list(R1_TAGS))
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(out_dir: str | Path, corpus: Iterable[str], spec: TinyModelSpec | None = None) -> Path:
    """Train a tokenizer on `corpus`, build a randomly initialised Qwen3 model, save both to `out_dir`."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    spec = spec or TinyModelSpec()
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(corpus, spec.vocab_size)
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_kv_heads, head_dim=spec.head_dim,
        intermediate_size=spec.intermediate_size, max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
