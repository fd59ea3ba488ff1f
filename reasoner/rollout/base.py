"""The rollout-engine interface.

An engine turns prompt token ids into `n` sampled completions each, and reports for every sampled token its
log-probability under the policy *at the sampling temperature, before top-p/top-k truncation*:
`log softmax(logits / T)[token]`. That is exactly what the trainer computes for the same tokens, so the two can
be compared directly (importance-sampling correction, verified weight sync). Engines are swapped by name
(`rollout.engine: hf | vllm`); the trainer never sees which one it has.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class SamplingParams:
    n: int = 1                        # samples per prompt (the GRPO group size)
    temperature: float = 1.0          # 0 -> greedy
    top_p: float = 1.0
    top_k: int = 0                    # 0 -> disabled
    max_new_tokens: int = 256
    stop_token_ids: list[int] = field(default_factory=list)  # in addition to the tokenizer's EOS

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class Completion:
    token_ids: list[int]              # sampled tokens, including the stop token when finish_reason == "stop"
    logprobs: list[float]             # one per token: log softmax(logits / T) at the sampled token
    finish_reason: Literal["stop", "length"]


@dataclass
class RolloutConfig:
    engine: str = "hf"                # hf | vllm
    group_size: int = 8               # completions per prompt (G)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    max_batch_size: int = 256         # sequences per generate call (HF engine)
    fast_decode: bool = True          # HF engine: lean decode loop for Llama-family models (else `generate`)
    compact_below: float = 0.5        # lean loop: drop finished rows when <= this share is unfinished (0: never)
    stop_strings: list[str] = field(default_factory=list)  # each must be a single token, e.g. "</answer>"
    vllm: dict = field(default_factory=dict)  # options for the vLLM engine (see reasoner.rollout.vllm_engine)

    def sampling(self, stop_token_ids: list[int] | None = None, **overrides) -> SamplingParams:
        values = dict(n=self.group_size, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                      max_new_tokens=self.max_new_tokens, stop_token_ids=list(stop_token_ids or []))
        values.update(overrides)
        return SamplingParams(**values)


class RolloutEngine(ABC):
    """Generates completions for token-id prompts with the current policy weights."""

    @abstractmethod
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Completion]]:
        """Returns `[len(prompts)][params.n]` completions, prompt order kept."""

    def sync_weights(self, model) -> None:
        """Make the engine sample from `model`'s current weights (no-op when it shares the module)."""

    def close(self) -> None:
        """Release engine resources."""


def make_engine(cfg: RolloutConfig, model, tokenizer) -> RolloutEngine:
    """The engine named by `cfg.engine`."""
    if cfg.engine == "hf":
        from reasoner.rollout.hf_engine import HFEngine
        return HFEngine(model, tokenizer, max_batch_size=cfg.max_batch_size, fast_decode=cfg.fast_decode,
                        compact_below=cfg.compact_below)
    if cfg.engine == "vllm":
        from reasoner.rollout.vllm_engine import VLLMEngine  # optional dependency
        return VLLMEngine.from_model(model, tokenizer, **cfg.vllm)
    raise ValueError(f"unknown rollout engine '{cfg.engine}'; valid engines: hf, vllm")
