"""The rollout-engine interface.

An engine turns prompt token ids into `n` sampled completions each, and reports for every sampled token its
log-probability under the policy *at the sampling temperature, before top-p/top-k truncation*:
`log softmax(logits / T)[token]`. That is exactly what the trainer computes for the same tokens, so the two can
be compared directly (importance-sampling correction, verified weight sync). Engines are swapped by name
(`engine.name: hf | vllm`, made by `reasoner.rollout.factory.make_engine`); the trainer never sees which
one it has.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from reasoner.errors import ReasonerError


@dataclass
class SamplingParams:
    n: int = 1                        # samples per prompt (the GRPO group size)
    temperature: float = 1.0          # 0 -> greedy
    top_p: float = 1.0
    top_k: int = 0                    # 0 -> disabled
    max_new_tokens: int = 256
    stop_token_ids: list[int] = field(default_factory=list)  # in addition to the tokenizer's EOS
    ignore_eos: bool = False          # run to max_new_tokens unless a stop_token_id comes (benchmarks, vLLM's name)

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


class EngineError(ReasonerError, RuntimeError):
    """The engine failed, timed out or is unusable; the message says which call and why."""


class RolloutEngine(ABC):
    """Generates completions for token-id prompts with the current policy weights.

    What the trainer needs to know about an engine is declared here, not probed:
    - `owns_weights`: the engine keeps its own copy of the weights (vLLM, a rollout server), so the trainer must
      push its weights after every update (`sync_weights`) and verifies each sync with a probe; an engine that
      samples from the trainer's own module (the HF engine) needs neither, but ZeRO-3 must gather the module's
      parameters around `generate`;
    - `dtype`: the precision the engine computes in when it may differ from the trainer's (sets the probe's
      thresholds); None when it is the trainer's own;
    - `release_memory()`: hand accelerator memory back to training between rollouts (vLLM sleep mode).
    """

    owns_weights: bool = False
    dtype: str | None = None

    @abstractmethod
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Completion]]:
        """Returns `[len(prompts)][params.n]` completions, prompt order kept."""

    def sync_weights(self, model) -> None:
        """Make the engine sample from `model`'s current weights (no-op when it shares the module)."""

    def release_memory(self) -> None:
        """Give memory back to training until the next sync or generate call (no-op by default)."""

    def close(self) -> None:
        """Release engine resources."""


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a completion: the model's generation config's EOS id(s), then the tokenizer's."""
    ids: list[int] = []
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for tok in ([eos] if isinstance(eos, int) else list(eos or [])) + [tokenizer.eos_token_id]:
        if tok is not None and int(tok) not in ids:
            ids.append(int(tok))
    return ids
