"""`reasoner eval` configuration: a model x benchmarks x n samples per problem x sampling settings.

Sampling settings come from a named protocol, and any value set explicitly wins over the protocol's:
- `r1`: DeepSeek-R1's reporting protocol: temperature 0.6, top-p 0.95, n = 64 samples per problem, pass@1 the
  mean correctness over those samples, cons@k a majority vote over k of them;
- `greedy`: one sample at temperature 0;
- `none`: plain sampling at temperature 1 (set everything yourself).
The protocol fields are `None` by default for that reason ("not set here"); `SamplingConfig.resolve()` gives the
values a run actually uses, and those are what `results.json` records.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reasoner.config import ConfigError
from reasoner.models.loading import ModelConfig
from reasoner.rollout.base import SamplingParams

PROTOCOLS: dict[str, dict[str, float | int]] = {
    "r1": {"n": 64, "temperature": 0.6, "top_p": 0.95},
    "greedy": {"n": 1, "temperature": 0.0, "top_p": 1.0},
    "none": {"n": 1, "temperature": 1.0, "top_p": 1.0},
}


@dataclass
class SamplingConfig:
    protocol: str = "r1"                  # r1 | greedy | none: defaults for n, temperature, top_p
    n: int | None = None                  # samples per problem
    temperature: float | None = None
    top_p: float | None = None
    top_k: int = 0
    max_new_tokens: int = 1024
    stop_strings: list[str] = field(default_factory=list)  # each must be one token, e.g. "</answer>"
    seed: int = 0

    def resolve(self) -> dict:
        """The protocol's values overridden by the explicitly set ones."""
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"unknown sampling.protocol '{self.protocol}'; valid: {', '.join(PROTOCOLS)}")
        values = dict(PROTOCOLS[self.protocol])
        for key in ("n", "temperature", "top_p"):
            if getattr(self, key) is not None:
                values[key] = getattr(self, key)
        values.update(top_k=self.top_k, max_new_tokens=self.max_new_tokens, protocol=self.protocol)
        return values

    def params(self, stop_token_ids: list[int] | None = None) -> SamplingParams:
        v = self.resolve()
        try:
            return SamplingParams(n=int(v["n"]), temperature=float(v["temperature"]), top_p=float(v["top_p"]),
                                  top_k=self.top_k, max_new_tokens=self.max_new_tokens,
                                  stop_token_ids=list(stop_token_ids or []))
        except ValueError as e:
            raise ConfigError(f"sampling: {e}") from None


@dataclass
class PromptConfig:
    """How a problem becomes a prompt (see reasoner.data.templates); per-benchmark values override these."""

    template: str = "chat"                # chat | r1 | raw
    system_prompt: str | None = None
    instruction: str = ""                 # appended to each problem, e.g. a request to box the answer
    max_prompt_tokens: int | None = None  # longer prompts are an error naming the problem; None -> no limit


@dataclass
class BenchmarkConfig:
    """One benchmark: a preset (`name` only) or any source `reasoner.data.load_examples` reads."""

    name: str = ""                        # preset name, or the label of a custom source
    source: str = ""                      # file / "hf:<name>" / built-in task; empty -> the preset called `name`
    split: str = "test"                   # hub datasets and built-in tasks
    prompt_field: str = "problem"
    answer_field: str = "answer"
    id_field: str = "id"
    limit: int | None = None              # only the first N problems
    num_examples: int = 200               # built-in tasks: how many problems
    seed: int = 0                         # built-in tasks: generator seed
    template: str | None = None           # None -> eval.prompt's
    system_prompt: str | None = None
    instruction: str | None = None
    verifiers: dict[str, dict] | None = None  # None -> eval.verifiers


@dataclass
class EvalConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    # Each item: a preset name (aime24, aime25, amc23, math500, gsm8k_test, arithmetic, ...), a file path, or a
    # BenchmarkConfig mapping. Typed `Any` so that a bad mapping is reported with its own key (benchmarks.py).
    benchmarks: list[Any] = field(default_factory=lambda: ["aime24"])
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    # Graded by the training verifiers. `extract: auto` reads the R1 <answer> tag, else the last \boxed{}.
    verifiers: dict[str, dict] = field(default_factory=lambda: {"math": {"extract": "auto"}})
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])  # pass@k / maj@k; k > n skipped
    engine: str = "hf"                    # hf | vllm (reasoner.rollout)
    max_batch_size: int = 256             # sequences per generate call (HF engine)
    vllm: dict = field(default_factory=dict)
    chunk_problems: int = 16              # problems sampled and written together: the unit an interruption loses
    bootstrap: int = 2000                 # resamples for non-binary confidence intervals
    out_dir: str = "runs/eval"
    resume: bool = True                   # continue an interrupted eval in out_dir; false -> start over
    plots: bool = True
    progress: bool = True
    threads: int = 0
