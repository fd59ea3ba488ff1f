"""The three sections every sampling stage shares (train, eval, distill; serve reads `engine.vllm`):

    engine:    who samples            name (hf | vllm), batch size, decode-loop switches, vllm options
    sampling:  what is sampled        n (samples per prompt = GRPO's group size), temperature, top_p, top_k,
                                      max_new_tokens, stop_strings, and a protocol that fills unset values
    prompt:    lives in reasoner.data.templates (PromptConfig): how a problem becomes the prompt

One spelling everywhere: `sampling.n` is the group size in training and the samples per problem in evaluation.
Sampling protocols (the values a stage uses for `n`, `temperature`, `top_p` unless set explicitly):
- `r1`: DeepSeek-R1's reporting protocol: temperature 0.6, top-p 0.95, n = 64 samples per problem;
- `greedy`: one sample at temperature 0;
- `none`: plain sampling at temperature 1, n = 1 (set everything yourself; training's default, with n = 8).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from reasoner.config import ConfigError
from reasoner.rollout.base import SamplingParams
from reasoner.rollout.vllm_options import VLLMOptions

ENGINES = ("hf", "vllm")
PROTOCOLS: dict[str, dict[str, float | int]] = {
    "r1": {"n": 64, "temperature": 0.6, "top_p": 0.95},
    "greedy": {"n": 1, "temperature": 0.0, "top_p": 1.0},
    "none": {"n": 1, "temperature": 1.0, "top_p": 1.0},
}


@dataclass
class EngineConfig:
    """Who samples. `engine: vllm` is short for `engine: {name: vllm}`."""

    SHORTHAND: ClassVar[str] = "name"

    name: str = "hf"                  # hf | vllm
    max_batch_size: int = 256         # HF engine: sequences per generate call
    fast_decode: bool = True          # HF engine: lean decode loop for Llama-family models (else `generate`)
    compact_below: float = 0.5        # lean loop: drop finished rows when <= this share is unfinished (0: never)
    vllm: VLLMOptions = field(default_factory=VLLMOptions)

    def __post_init__(self):
        if self.name not in ENGINES:
            raise ConfigError(f"engine.name: unknown engine {self.name!r}; valid engines: {', '.join(ENGINES)}")
        if self.max_batch_size < 1:
            raise ConfigError(f"engine.max_batch_size must be >= 1, got {self.max_batch_size}")

    @property
    def owns_weights(self) -> bool:
        """Whether the engine this section builds keeps its own weights (the trainer must sync it)."""
        return self.name == "vllm"


@dataclass
class SamplingConfig:
    protocol: str = "none"            # r1 | greedy | none: values for n, temperature, top_p left unset (null)
    n: int | None = None              # samples per prompt (GRPO's group size)
    temperature: float | None = None  # 0 -> greedy
    top_p: float | None = None
    top_k: int = 0                    # 0 -> disabled
    max_new_tokens: int = 256
    stop_strings: list[str] = field(default_factory=list)  # each must be one token, e.g. "</answer>"
    ignore_eos: bool = False          # sample to max_new_tokens (only stop_strings end a sample): benchmarks

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"sampling.protocol: unknown protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS)}")
        try:
            self.params()
        except ValueError as e:
            raise ConfigError(f"sampling: {e}") from None

    def resolve(self) -> dict:
        """The protocol's values overridden by the explicitly set ones (what a run uses and records)."""
        values = dict(PROTOCOLS[self.protocol])
        for key in ("n", "temperature", "top_p"):
            if getattr(self, key) is not None:
                values[key] = getattr(self, key)
        values.update(top_k=self.top_k, max_new_tokens=self.max_new_tokens, protocol=self.protocol)
        return values

    @property
    def group_size(self) -> int:
        return int(self.resolve()["n"])

    def params(self, stop_token_ids: Sequence[int] = ()) -> SamplingParams:
        v = self.resolve()
        return SamplingParams(n=int(v["n"]), temperature=float(v["temperature"]), top_p=float(v["top_p"]),
                              top_k=self.top_k, max_new_tokens=self.max_new_tokens,
                              stop_token_ids=list(stop_token_ids), ignore_eos=self.ignore_eos)

    def params_for(self, tokenizer) -> SamplingParams:
        """`params()` with `stop_strings` turned into token ids (each must be exactly one token)."""
        return self.params(stop_token_ids(tokenizer, self.stop_strings))


def stop_token_ids(tokenizer, stop_strings: Sequence[str]) -> list[int]:
    """The single token id of each stop string; a string that is several tokens is an error naming it."""
    ids = []
    for s in stop_strings:
        encoded = tokenizer(s, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ConfigError(f"sampling.stop_strings: {s!r} is {len(encoded)} tokens for this tokenizer; each "
                              f"stop string must be exactly one token")
        ids.append(int(encoded[0]))
    return ids
