"""`reasoner eval` configuration: a model x benchmarks x n samples per problem x sampling settings.

The `engine`, `sampling` and `prompt` sections are the ones training and distillation use
(`reasoner.rollout.config`, `reasoner.data.templates`). Sampling defaults to DeepSeek-R1's reporting protocol
(`sampling.protocol: r1`: temperature 0.6, top-p 0.95, n = 64 samples per problem; pass@1 is the mean
correctness over those samples, cons@k a majority vote over k of them); any value set explicitly wins, and
`SamplingConfig.resolve()` gives the values a run actually uses, which `results.json` records.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from reasoner.data.templates import PromptConfig
from reasoner.models.loading import ModelConfig
from reasoner.rollout.config import EngineConfig, SamplingConfig

# Keys renamed when every stage got one vocabulary; old name -> new.
ENGINE_RENAMES = {"max_batch_size": "engine.max_batch_size", "vllm": "engine.vllm", "sampling.seed": "seed"}

@dataclass
class BenchmarkConfig:
    """One benchmark: a preset (`name` only) or any source `reasoner.data.load_examples` reads."""

    RENAMED: ClassVar[dict[str, str]] = {k: f"prompt.{k}" for k in ("template", "system_prompt", "instruction")}

    name: str = ""                        # preset name, or the label of a custom source
    source: str = ""                      # file / "hf:<name>" / built-in task; empty -> the preset called `name`
    split: str = "test"                   # hub datasets and built-in tasks
    prompt_field: str = "problem"
    answer_field: str = "answer"
    id_field: str = "id"
    limit: int | None = None              # only the first N problems
    num_examples: int = 200               # built-in tasks: how many problems
    seed: int = 0                         # built-in tasks: generator seed
    task_options: dict[str, Any] = field(default_factory=dict)  # built-in tasks: their options (e.g. terms)
    prompt: dict[str, Any] = field(default_factory=dict)  # overrides of the run's `prompt` section (keys of it)
    verifiers: dict[str, dict] | None = None  # None -> eval.verifiers
    # options added to the graders where they are not set (presets: GSM8K's `#### N` golds)
    verifier_defaults: dict[str, dict] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=list)     # extra metric hooks (reasoner.evaluation.hooks)


def _eval_sampling() -> SamplingConfig:
    return SamplingConfig(protocol="r1", max_new_tokens=1024)


@dataclass
class EvalConfig:
    RENAMED: ClassVar[dict[str, str]] = ENGINE_RENAMES

    model: ModelConfig = field(default_factory=ModelConfig)
    # Each item: a preset name (aime24, aime25, amc23, math500, gsm8k_test, arithmetic, ...), a file path, or a
    # BenchmarkConfig mapping. Typed `Any` so that a bad mapping is reported with its own key (benchmarks.py).
    benchmarks: list[Any] = field(default_factory=lambda: ["aime24"])
    engine: EngineConfig = field(default_factory=EngineConfig)
    sampling: SamplingConfig = field(default_factory=_eval_sampling)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    # Graded by the training verifiers. `extract: auto` reads the R1 <answer> tag, else the last \boxed{}.
    verifiers: dict[str, dict] = field(default_factory=lambda: {"math": {"extract": "auto"}})
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])  # pass@k / maj@k; k > n skipped
    seed: int = 0                         # sampling seed (per chunk of problems, see runner.py) and bootstrap seed
    chunk_problems: int = 16              # problems sampled and written together: the unit an interruption loses
    bootstrap: int = 2000                 # resamples for non-binary confidence intervals
    out_dir: str = "runs/eval"
    resume: bool = True                   # continue an interrupted eval in out_dir; false -> start over
    plots: bool = True
    progress: bool = True
    threads: int = 0
